"""Step 3 continued, the split: the box cut at its seams, recursively (XY-cut), chrome dropped, grids found."""

from __future__ import annotations

from indexer.layout.chrome import fill_of, is_chrome
from indexer.layout.frames import Frames, region_stats
from indexer.layout.params import LayoutParams
from indexer.layout.seams import find_seams


def cut_pieces(F: Frames, box, direction: str, seams: list, p: LayoutParams):
    """Cut box at seams; drop cuts that leave a thin non-chrome piece. Returns (pieces, seams)."""
    x0, y0, x1, y1 = box
    lo, hi = (y0, y1) if direction == "rows" else (x0, x1)
    extent = hi - lo
    seams = list(seams)
    while True:
        cuts = [lo] + [q for q, _, _ in seams] + [hi]
        pieces = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            sub = (x0, a, x1, b) if direction == "rows" else (a, y0, b, y1)
            st = region_stats(F, sub) if b - a >= 2 else {"flat": 1.0, "motion": 0.0, "change": 0.0,
                                                          "texture": 0.0}
            pieces.append([sub, is_chrome(st, (b - a) / extent, p) or b - a < 2, st, (b - a) / extent])
        thin = [i for i, pc in enumerate(pieces) if not pc[1] and pc[3] < p.min_feed]
        if not thin or not seams:
            return pieces, seams
        i = thin[0]
        # remove the weaker seam next to the thin piece (piece i lies between seams i-1 and i)
        nb = [j for j in (i - 1, i) if 0 <= j < len(seams)]
        j = min(nb, key=lambda j: seams[j][1])
        seams.pop(j)



def split_box(F: Frames, box, p: LayoutParams, moving: bool, depth: int, log: list,
           need: float | None = None) -> tuple:
    """Recursive XY-cut. A tree: ('leaf', box) or (direction, [children]), direction 'rows'|'cols'."""
    if depth > p.max_depth:
        return ("leaf", box)
    def look(crossing: dict[str, tuple[int, ...]]) -> tuple[dict, dict]:
        found = {d: find_seams(F, box, 1 if d == "rows" else 2, p, moving, need, crossing=crossing.get(d, ()))
                 for d in ("rows", "cols")}
        return found, {d: [c for c in v if "rejected" not in c[2]] for d, v in found.items()}

    found, good = look({})
    if not good["rows"] and not good["cols"] and moving:
        # A grid's two dividers cross: where they meet, each puts one huge step on both sides of the
        # other, and that alone makes the pictures look continuous. Where one of them is exactly
        # straight and strong, and the other straight enough for a seam, judge each again without the
        # other's neighbourhood (only an exactly straight line is judged without its crossings).
        exact = {d: tuple(q for q, sc, info in v if info.get("rejected") == "continuous"
                          and info["straight"] >= p.exact_straight and sc >= p.grid_cross_seam)
                 for d, v in found.items()}
        lines = {d: tuple(q for q, sc, info in v if info.get("rejected") == "continuous"
                          and info["straight"] >= p.min_straight and sc >= p.seam_ratio)
                 for d, v in found.items()}
        if (exact["rows"] and lines["cols"]) or (exact["cols"] and lines["rows"]):
            found, good = look({"rows": lines["cols"], "cols": lines["rows"]})
    entry = {"box": list(box), "depth": depth,
             "candidates": {d: [[q, round(sc, 2), info] for q, sc, info in v] for d, v in found.items() if v}}
    # The direction with the strongest seam first; if its cuts all leave thin pieces (a strong line
    # near an edge), the other direction's seams still get their turn.
    order = sorted((d for d in good if good[d]), key=lambda d: -max(c[1] for c in good[d]))
    if not order:
        if entry["candidates"]:
            log.append(entry)
        return ("leaf", box)
    # A feed over an enlarged copy of itself is one feed: the bands are its fill, like bars.
    for direction in order:
        for q, _, _ in good[direction]:
            fill = fill_of(F, box, direction, q)
            if fill is not None and fill[1] >= p.fill_copy:
                entry.update(dir=direction, fill={"feed": list(fill[0]), "alike": round(fill[1], 2)})
                log.append(entry)
                return split_box(F, fill[0], p, moving, depth, log, need)
    for direction in order:
        pieces, seams = cut_pieces(F, box, direction, good[direction], p)
        if seams:
            break
    content = [pc[0] for pc in pieces if not pc[1]]
    entry.update(dir=direction, seams=[[q, round(sc, 2)] for q, sc, _ in seams],
                 pieces=[{"box": list(pc[0]), "chrome": bool(pc[1]),
                          **{k: round(v, 2) for k, v in pc[2].items()}} for pc in pieces])
    log.append(entry)
    if not content:
        return ("leaf", box)
    if len(content) == 1:
        if content[0] == box:
            return ("leaf", box)
        # Only chrome was cut away (caption band, bar): the rest is analysed as the box, same level.
        return split_box(F, content[0], p, moving, depth, log, need)
    if depth >= p.max_depth:
        return (direction, [("leaf", c) for c in content])
    # Feeds found. A grid: every feed is cut across at the same place (within a few px).
    cross = "cols" if direction == "rows" else "rows"
    axis = 1 if cross == "rows" else 2
    per = []
    for c in content:
        # (cand: position, score, accepted as a seam, found in grey)
        per.append([(q, sc, "rejected" not in info, "plane" not in info)
                    for q, sc, info in find_seams(F, c, axis, p, moving, need=p.grid_seam_low,
                                                   crossing=tuple(q for q, _, _ in seams))])
    accepted: list[int] = []
    for q, sc, clean, grey in sorted((c for cands in per for c in cands), key=lambda c: -c[1]):
        if not clean or any(abs(q - a) <= 4 for a in accepted):
            continue
        aligned = [[c for c in cands if abs(q - c[0]) <= p.grid_align] for cands in per]
        # A clear grey cut in one feed with any candidate lined up in every other (continuity is only
        # asked of the clearest one). A colour seam is no such anchor: a coloured object's edge in one
        # feed lined up with a weak step in another made a stack look like a grid. Cuts accepted in
        # every feed, however weak, agree on their own.
        anchored = grey and sc >= p.seam_ratio and all(aligned)
        agreed = all(any(c[2] for c in al) for al in aligned)
        if anchored or agreed:
            accepted.append(q)
    if not accepted:
        return (direction, [("leaf", c) for c in content])
    accepted.sort()
    children = []
    for c, cands in zip(content, per):
        cuts = sorted({min(cands, key=lambda qc: abs(qc[0] - a))[0] for a in accepted})
        x0c, y0c, x1c, y1c = c
        edges = ([y0c] if cross == "rows" else [x0c]) + cuts + ([y1c] if cross == "rows" else [x1c])
        kids = []
        for a, b in zip(edges[:-1], edges[1:]):
            sub = (x0c, a, x1c, b) if cross == "rows" else (a, y0c, b, y1c)
            if b - a >= 2 and not is_chrome(region_stats(F, sub), 1.0, p):
                kids.append(("leaf", sub))
        children.append((cross, kids) if len(kids) > 1 else (kids[0] if kids else ("leaf", c)))
    log.append({"box": list(box), "grid_cuts": accepted, "dir": cross})
    return (direction, children)


def tree_leaves(tree) -> list[tuple[int, int, int, int]]:
    if tree[0] == "leaf":
        return [tree[1]]
    out = []
    for c in tree[1]:
        out += tree_leaves(c)
    return out

"""What the layout detector answers with, and every threshold it uses (one place to tune)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LAYOUTS = ("single_scene", "vertical", "horizontal", "picture-in-picture", "grid")
MULTI_FEED = frozenset(LAYOUTS[1:])


@dataclass(frozen=True)
class LayoutParams:
    """Every tunable of the detector. Insets are sought anywhere in the frame; the learned scorer
    (``use_scorer``) decides which candidate rectangles are insets, the rules which lines are seams.
    The scorer is trained on candidates gathered with wider limits (indexer.layout.train.COLLECT_PARAMS)."""

    long_side: int = 224  # analysis size (long side, px)
    n_runs: int = 6  # sampled points over the video
    run_len: int = 3  # consecutive frames per point (motion)
    max_lead: int = 20  # at most this many frames decoded forward from a keyframe
    short_video_s: float = 12.0  # up to this long: one decoding pass; longer ones seek
    bar_std: float = 6.0  # a bar row/column: spatial std below this (grey levels) ...
    bar_tstd: float = 4.0  # ... and its mean varies less than this over time
    bar_flat: float = 1.5  # ... and the median line of a bar is flatter than this
    seam_ratio: float = 3.5  # boundary step / neighbouring steps, in most frames
    seam_quantile: float = 0.3  # "most frames": this low quantile over frames must pass
    seam_min_step: float = 7.0  # grey levels (median across the box), same quantile
    static_seam_ratio: float = 5.0  # stricter when nothing moves anywhere
    min_region: float = 0.08  # a piece narrower than this fraction of its box is not a feed
    chrome_flat: float = 0.55  # fraction of pixels near the piece's median colour: flat
    static_motion: float = 1.2  # mean abs grey change below this: static
    pip_edge: float = 7.0  # persistent edge strength (grey levels) for pip sides
    pip_edge_ratio: float = 3.5  # ... standing out this much from the steps 4-10 px across it
    pip_cover: float = 0.7  # fraction of each side that must be a persistent edge
    pip_near: float = 0.06  # a pip side this close to the box border (fraction) ...
    pip_cover_near: float = 0.3  # ... needs only this edge coverage
    pip_min_side: float = 0.15  # pip box sides, fraction of the active box
    pip_max_area: float = 0.5
    pip_weak_side: float = 1.8  # a side near the border allowed to be unclear must still be a step
    pip_min_area: float = 0.02
    pip_tries: int = 500  # the best-covered rectangles whose sides are judged as seams (per pass)
    pip_scored: int = 40  # with the scorer: this many rectangles with two or more step sides are measured
    pip_min_clear: int = 2  # ... and the scorer's pick has at least this many clear sides
    # the rules' inset (every side a seam), when the scorer picked none, is taken if the scorer gives it this
    # much (it may rank behind the 40 measured: the demo's corner inset ranks 125th, p 0.76); None: never
    rules_inset_p: float | None = 0.5
    pip_cover_faint: float = 0.3  # an inset may have one inner side covered this little ...
    pip_faint_side: float = 2.4  # ... if its step is this clear and nothing continues across any faint side
    max_depth: int = 1
    grid_cross_seam: float = 8.0  # crossing exact lines this strong are judged again without each other
    grid_seam_low: float = 2.0  # a grid cut may be weak in some cells ...
    grid_align: int = 4  # ... if it lines up (px) with a clear cut in another
    # a line this straight is an exact cut: crossings are left out, co-motion alone does not join it
    exact_straight: float = 0.9
    max_comotion: float = 0.3  # motion correlated across a boundary: one picture
    max_comotion_strong: float = 0.6
    # mean |horizontal grey step| of a feed: a still band below it is chrome. A bar with noise is near
    # 0.15; a still, low-detail picture (a far-away car park at the analysis size) is 0.6-0.8
    min_texture: float = 0.3
    max_structure: float = 0.25  # edge profiles correlated across a boundary: one picture
    max_structure_strong: float = 0.55  # ... for very strong seams
    max_joint_strong: float = 0.8  # ... if their structure and co-motion together stay under this
    no_structure: float = 0.15  # below this, co-motion alone does not join an exactly straight line
    strong_seam: float = 15.0
    min_feed: float = 0.15  # a feed spans at least this fraction of the box it was cut from
    chrome_change: float = 2.5  # chrome (caption band, bar) changes less than this between samples
    # ... for very strong seams, stricter: a strong natural edge (a panel's side, a wall-floor line) is
    # the usual false seam, a cut between feeds is exactly straight, and a divider's two edges are
    # taken as one line (_divider)
    min_straight_strong: float = 0.85
    min_straight_static: float = 0.8  # ... when nothing moves
    min_straight: float = 0.68  # fraction of the line on which the step sits exactly on the seam
    min_straight_apart: float = 0.6  # ... when nothing continues across the line
    min_straight_apart_strong: float = 0.75  # ... but no lower than this for very strong seams (a horizon, 0.66)
    chroma: bool = True  # also seek seams in the colour-difference planes (equal brightness, other colour)
    fill_copy: float = 0.8  # bands this like a magnified copy of the feed between them are its fill
    weak_seam_ratio: float = 2.0  # weaker seams (feeds of one setting side by side), while things move, ...
    weak_min_step: float = 4.0  # ... with at least this step ...
    weak_straight: float = 0.75  # ... if this straight, and nothing continues across them
    use_scorer: bool = True  # the learned scorer decides which inset candidates are real (when its file exists)
    # ... and which seams: off, the rules decide seams. Held out by family, the seam trees did worse than
    # the rules on stacks inside bars and bands (0.62-0.74 against 0.94); see README, layout analysis.
    seam_scorer: bool = False
    scorer_path: str | None = None  # another scorer file (default: indexer/layout/scorer.json)


DEFAULT_PARAMS = LayoutParams()


@dataclass
class LayoutResult:
    layout: str
    confidence: float
    regions: list[tuple[int, int, int, int]]  # x, y, w, h in displayed-frame pixels
    evidence: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    width: int = 0
    height: int = 0
    seconds: float = 0.0

    @property
    def multi_feed(self) -> bool:
        return self.layout in MULTI_FEED

    @property
    def n_feeds(self) -> int:
        return len(self.regions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "layout": self.layout,
            "confidence": round(float(self.confidence), 4),
            "regions": [list(map(int, r)) for r in self.regions],
            "n_feeds": self.n_feeds,
            "multi_feed": self.multi_feed,
            "width": self.width,
            "height": self.height,
            "evidence": self.evidence,
            "seconds": round(self.seconds, 4),
        }

    def detail(self) -> dict[str, Any]:
        """What VideoRecord.layout_detail stores: confidence, regions, evidence (+ n_feeds, multi_feed)."""
        return {
            "confidence": round(float(self.confidence), 4),
            "n_feeds": self.n_feeds,
            "multi_feed": self.multi_feed,
            "regions": [list(map(int, r)) for r in self.regions],
            "evidence": self.evidence,
        }

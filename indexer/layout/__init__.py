"""Layout analysis: is a video one feed, or several feeds stacked on one screen?

No learned weights: pixels and motion only. Cheap enough to run on every
upload (a few short runs of frames, decoded near keyframes, analysed at about
224 px on the long side).

The algorithm, in short:

1. **Sampling.** ``n_runs`` points spread over the video; at each, keep
   ``run_len`` consecutive frames. Short videos are decoded in one pass; longer
   ones seek to the keyframe before each point (decoding at most ``max_lead``
   frames forward where an earlier point took that keyframe). Frames are scaled
   to the analysis size by the decoder's scaler.
2. **Bars.** Rows and columns at the edges that are uniform in space and
   constant in time (letterbox, pillarbox, borders) are trimmed: they never
   count as feeds or seams.
3. **Seams (recursive XY-cut).** In the active box, a row (column) boundary
   scores the median over the box's width (height) of the step across it,
   divided by the same statistic on nearby rows. A *seam* is a boundary whose
   score stays high in most sampled frames: a straight cut spanning the box
   that persists across time. While things move, weaker steps (two clips of
   one room side by side) are candidates too, held to stricter straightness.
   The box is split at its seams and each piece is analysed again (so grids
   and feeds with bars inside their cells are found).
4. **Chrome.** A piece that is static over time and mostly one colour (caption
   or title band, a bar between feeds) or static and thin is not a feed: it is
   dropped, and a seam that only separated it from the video does not count.
5. **Picture-in-picture.** If no seams split the active box, persistent
   straight edges are searched for a rectangle (four sides, or fewer where it
   touches the box) covering 2–50 % of the area whose inside moves, lying in a
   corner of the box (where insets sit; a rectangle elsewhere is a thing in the
   picture); the best ``pip_tries`` rectangles by edge coverage are judged side
   by side.
6. **Independence.** For each pair of feeds, the motion inside runs and the
   change between sampled times (scene cuts) are compared; cuts in one feed
   and not in the other, or motion in one while the other is still, are
   reported as evidence and raise the confidence. A whole-frame cut or a pan
   moves every region together and adds nothing.

One module per step: :mod:`.sampling` (1), :mod:`.chrome` (2, 4: bars, chrome, blur fill),
:mod:`.seams` and :mod:`.split` (3), :mod:`.insets` (5), :mod:`.independence` (6), and
:mod:`.classify`, which runs them in order; :mod:`.frames` holds the measurements they share and
:mod:`.params` every threshold.

Public API: :func:`analyze_layout` → :class:`LayoutResult` and :data:`LAYOUTS`.
"""

from __future__ import annotations

from indexer.layout.classify import analyze_layout, classify_runs
from indexer.layout.params import DEFAULT_PARAMS, LAYOUTS, MULTI_FEED, LayoutParams, LayoutResult
from indexer.layout.sampling import analysis_size, sample_runs

__all__ = ["DEFAULT_PARAMS", "LAYOUTS", "MULTI_FEED", "LayoutParams", "LayoutResult", "analysis_size",
           "analyze_layout", "classify_runs", "sample_runs"]

"""Pins of what the CLI prints with --json: the keys, their order and their value types.

The application layer (``ops/usecases``) took the assembly of recall and screening out of the front
ends; these pins (taken before that move) say the records reaching users kept their shape. Scores differ
between machines and seeds, so values are not pinned. The API's job view, recall answer and webhook body
are pinned in ``tests/test_hooks.py``.
"""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner
from shapes import pinned

from ops.cli.main import cli

RECALL = (
    '[{"video_id": "str", "path": "str", "score": "number", "timestamps": ["number"], "frame_scores": '
    '["number"], "snippet": "str", "duration": "number", "uploaded_at": "number", "layout": "str", '
    '"source": "null", "score_kind": "str", "model_id": "str", "random_weights": "bool", "engine": "str"}]'
)
CHECK = (
    '{"path": "str", "verdict": "str", "policies": [{"policy": "str", "verdict": "str", "score": "number", '
    '"threshold": "number", "rule": "str", "frames_over": "number", "frames": "number", "matches": [{"ts": '
    '"number", "exemplar_id": "str", "kind": "str", "source": "str", "score": "number", "signal": "str"}]}], '
    '"frames": ["number"], "layout": {"path": "str", "layout": "str", "confidence": "number", "regions": '
    '[["number"]], "n_feeds": "number", "multi_feed": "bool", "width": "number", "height": "number", '
    '"evidence": {}, "seconds": "number"}, "model_id": "str", "random_weights": "bool", "warnings": [], '
    '"seconds": "number"}'
)
SWEEP = (
    '{"policy": "str", "run_id": "str", "resumed": "bool", "frames_matched": "number", "pages": "number", '
    '"candidates_new": "number", "candidates_seen": "number", "complete": "bool", "seconds": "number", '
    '"webhooks_queued": "number"}'
)
SWEEP_LIST = (
    '[{"policy": "str", "video_id": "str", "path": "str", "score": "number", "timestamps": ["number"], '
    '"frame_scores": ["number"], "snippet": "str", "query": "str", "run_id": "str", "found_at": "number", '
    '"updated_at": "number", "layout": "str", "source": "null", "uploaded_at": "number"}]'
)


def run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, (r.output, r.stderr)
    return r.stdout


def run_json(*args: str) -> object:
    return json.loads(run(*args))


def test_cli_json_shapes(cli_env, clip_a, clip_b):
    videos = cli_env / "videos"
    videos.mkdir()
    shutil.copy(clip_a, videos / "a.mp4")
    shutil.copy(clip_b, videos / "b.mkv")
    run("index", str(videos), "--json", "--no-transcribe")
    assert pinned(run_json("recall", "--query", "split-screen gameplay", "--format", "json")) == RECALL
    run("bank", "add", "--policy", "sludge", "--text", "split-screen gameplay")
    checked = run_json("check", str(videos / "b.mkv"), "--json")
    # the layout evidence is the detector's own and varies with the video
    assert pinned({**checked, "layout": {**checked["layout"], "evidence": {}}}) == CHECK
    swept = run_json("sweep", "--policy", "sludge", "--query", "split-screen", "--min-score", "-1", "--json")
    assert pinned(swept) == SWEEP
    assert pinned(run_json("sweep", "list", "--policy", "sludge", "--format", "json")) == SWEEP_LIST

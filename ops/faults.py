"""Fault injection at named points between the steps of a job, for the crash tests.

A crash "at a random moment" rarely lands between the two writes that
matter, so the tests name the moment instead: ``SLUDGE_FAULTS`` lists points,
each ``NAME`` (the process kills itself there with SIGKILL, as the OOM killer
would) or ``NAME=hold`` (the process creates ``$SLUDGE_FAULT_DIR/NAME.held``
and waits there until the test deletes the file, so the test can stop a
server at exactly that point) or ``NAME=raise`` (an unexpected exception,
as a bug would raise). Each point fires once per process. Unset, as
in production, a point costs one dictionary lookup.

Points: ``api.after_upload`` (the upload is on disk, the job not yet made),
``jobs.after_submit`` (the job is queued, the client not yet answered),
``worker.after_start`` (a job marked processing), ``worker.before_decide``
(the video indexed and matched, the decision not yet stored),
``worker.after_decide`` (the decision stored, webhooks not yet made nor the
job acknowledged), ``migrate.after_store`` (a batch of re-embedded videos stored in the new
generation, the migration's cursor not yet moved past it), ``migrate.before_switch`` (the bank
rebuilt for the new model, the history's registry not yet switched).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_fired: set[str] = set()


class InjectedFault(RuntimeError):
    """An unexpected error on purpose (``NAME=raise``): what a bug would raise."""


def _points() -> dict[str, str]:
    spec = os.environ.get("SLUDGE_FAULTS", "")
    out = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, _, action = item.partition("=")
        out[name] = action or "kill"
    return out


def fault_point(name: str) -> None:
    """Kill or hold this process here when ``SLUDGE_FAULTS`` names this point."""
    if "SLUDGE_FAULTS" not in os.environ or name in _fired:
        return
    action = _points().get(name)
    if action is None:
        return
    _fired.add(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise InjectedFault(f"fault injected at {name}")
    elif action == "hold":
        held = Path(os.environ.get("SLUDGE_FAULT_DIR", ".")) / f"{name}.held"
        held.write_text(str(os.getpid()))
        while held.exists():
            time.sleep(0.05)

"""Stops a server's process group when the process that started it dies (``python -m ops.services.watchdog PGID``).

Started with PR_SET_PDEATHSIG by a launcher asked for ``die_with_parent``: the
kernel sends this process SIGTERM when the launcher's process dies, however it
dies, and this process then stops the server's group (SIGTERM, then SIGKILL
after 30 s). It exits by itself once the server is gone.
"""

from __future__ import annotations

import signal
import sys
import threading


def main() -> None:
    from ops.services.base import group_alive, kill_group

    pgid = int(sys.argv[1])
    fired = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: fired.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is for the parent, not for us
    while group_alive(pgid):
        if fired.wait(1.0):
            kill_group(pgid)
            return


if __name__ == "__main__":
    main()

"""A Faust worker's stop is bounded: ``exit_after`` ends the process even while a
non-daemon thread (as Faust's consumer thread can be) would keep it alive."""

from __future__ import annotations

import subprocess
import sys
import time

HANGS = """
import threading, time
from streams._faust import exit_after
threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon: exit would wait
exit_after(0.2)
"""


def test_a_process_held_by_a_thread_exits_after_the_grace() -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", HANGS], capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert time.monotonic() - started >= 0.2
    assert b"stop took longer than 0.2 s" in proc.stderr

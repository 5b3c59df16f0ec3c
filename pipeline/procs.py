"""Worker processes that cannot outlive the stage that started them.

A pool's workers block on their task queue; when the driver is killed (kill -9, OOM) nothing tells them, and they
kept running (~265 MB each) with the multiprocessing resource tracker. `die_with_parent`, run first in each
worker, asks the kernel to kill the worker when its parent dies (Linux PR_SET_PDEATHSIG) and, where that is not
available, watches the parent pid from a daemon thread.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Exit now if `parent` (the pid that started this worker) is gone, else as soon as it goes."""
    if os.getppid() != parent:  # it died while this worker was still starting (imports take seconds)
        os._exit(1)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no prctl: fall back to polling

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()

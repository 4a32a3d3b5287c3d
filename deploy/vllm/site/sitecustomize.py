"""Loaded by every Python process of a vLLM worker (on PYTHONPATH via shared/cli/vllm_env.py).

vLLM's engine core and its workers are child processes; when the worker is killed outright
(SIGKILL, OOM) nothing in it can stop them, so each asks the kernel to kill it with its parent
(PR_SET_PDEATHSIG). Only where LORASERVE_DIE_WITH_PARENT=1, and only on Linux.
"""
import os
import signal
import sys

if os.environ.get("LORASERVE_DIE_WITH_PARENT") == "1" and sys.platform.startswith("linux"):
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() == 1:  # the parent died before the call above: nobody would kill us
        os._exit(1)

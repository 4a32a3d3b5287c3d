"""`loraserve worker --engine vllm` runs in the vLLM environment: re-execute there when vLLM is not here.

vLLM pins its own versions, so it lives in its own virtualenv (deploy/ensure-vllm.sh builds it,
outside the clone); the GPU image installs it in the image's environment instead, where this
process imports it and nothing is re-executed. The clone's code goes first on the path, whatever
clone the cached environment was last installed from.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from shared.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# vLLM spawns its engine-core and worker processes: this sitecustomize makes each die with its parent
SITE_DIR = PROJECT_ROOT / "deploy" / "vllm" / "site"


def default_python() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "loraserve" / "vllm-current" / "bin" / "python"


def vllm_here() -> bool:
    return importlib.util.find_spec("vllm") is not None


def child_environment(base: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), str(SITE_DIR), base.get("PYTHONPATH", "")) if p)
    return {**base, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "LORASERVE_DIE_WITH_PARENT": "1",
            "LORASERVE_WORKER_ENGINE": "vllm"}


def ensure_vllm_process(settings: Settings, argv: list[str]) -> None:
    """Return when vLLM imports here; else replace this process with the same command in the vLLM env."""
    if vllm_here():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return
    python = settings.vllm_python or default_python()
    if not python.exists():
        raise SystemExit(f"the vLLM environment is missing ({python}): build it with deploy/ensure-vllm.sh "
                         "(make vllm) or point LORASERVE_VLLM_PYTHON at an interpreter that imports vllm")
    os.execve(str(python), [str(python), "-m", "shared.cli.main", *argv], child_environment(dict(os.environ)))

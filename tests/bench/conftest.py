"""Benchmarks live in bench_*.py: collected only when asked for (`pytest -m bench`, or a path under tests/bench,
as `make bench` does), so a plain `pytest` never spends minutes on them. They print figures, never assert timings."""
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "bench: a benchmark that prints its figures")


def _asked_for(config) -> bool:
    if "bench" in (config.option.markexpr or ""):
        return True
    return any(BENCH_DIR in (Path(arg.split("::")[0]).resolve(), *Path(arg.split("::")[0]).resolve().parents)
               for arg in config.args)


def pytest_collect_file(file_path, parent):
    if parent.session.isinitpath(file_path):
        return None  # a file named on the command line is collected by pytest itself
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and _asked_for(parent.config):
        return pytest.Module.from_parent(parent, path=file_path)
    return None

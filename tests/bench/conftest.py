"""Benchmarks live in bench_*.py (run by `make bench` or `pytest -m bench tests/bench`); they print, never assert timings."""
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "bench: a benchmark that prints its figures")


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None

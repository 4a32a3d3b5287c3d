"""The README is what a newcomer reads: its commands and settings must match the code."""
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_variable():
    missing = [f"LORASERVE_{name.upper()}" for name in Settings.model_fields
               if f"LORASERVE_{name.upper()}" not in README]
    assert not missing, f"README's Configuration table lacks {missing}"


def test_the_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    top = README[:1200]
    assert "make dev" in top and "make test" in top
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("setup:", "dev: setup", "test: setup", "bench:", "reliability:", "lint:", "demo:"):
        assert target in makefile

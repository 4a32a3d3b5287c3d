"""The images, checked by reading their Dockerfiles (no Docker engine runs where the tests do)."""
from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field

import pytest

from shared.settings import Settings
from tests.deploy.manifests import DEPLOY, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TORCH_PIN = next(d.split("==")[1] for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch=="))


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == op]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.args.get(m.group(1), m.group(0)), text)


def parse(name: str) -> Dockerfile:
    """Instructions with continuation lines joined; global ARG defaults collected."""
    text = re.sub(r"\\\n", " ", (DEPLOY / name).read_text())
    args, stages = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), " ".join(rest.split())
        if op == "ARG" and "=" in rest and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif op == "FROM":
            base, _, alias = rest.partition(" AS ")
            stages.append(Stage(base, alias or None))
        elif stages:
            stages[-1].instructions.append((op, rest))
    return Dockerfile(args, stages)


def dockerignore_allows(name: str, path: str) -> bool:
    allowed = True
    for pattern in (DEPLOY / f"{name}.dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_the_image_is_multi_stage_and_runs_loraserve_as_a_non_root_user(name):
    dockerfile = parse(name)
    assert len(dockerfile.stages) >= 2 and all(s.name for s in dockerfile.stages)
    final = dockerfile.final
    user = final.all("USER")[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["loraserve"]
    assert final.all("EXPOSE") == [str(Settings.model_fields["port"].default)]
    copied = [c for c in final.all("COPY") if c.startswith("--from=")]
    assert copied, "the runtime stage copies the built environment, it does not build"
    assert not [r for r in final.all("RUN") if "pip install" in r], "no build tools in the runtime stage"
    env = " ".join(final.all("ENV"))
    assert "LORASERVE_ENV=production" in env and "HF_HUB_OFFLINE=1" in env


@pytest.mark.parametrize("name, index", [("Dockerfile", "https://download.pytorch.org/whl/cpu"),
                                         ("Dockerfile.gpu", "https://download.pytorch.org/whl/cu")])
def test_torch_is_pinned_like_pyproject_and_installed_first_from_its_index(name, index):
    dockerfile = parse(name)
    build = next(s for s in dockerfile.stages if s.name == "build")
    runs = [dockerfile.expand(r) for r in build.all("RUN")]
    torch_step = next(i for i, r in enumerate(runs) if "torch==" in r)
    assert f'"torch=={TORCH_PIN}"' in runs[torch_step]
    assert f'--index-url "{index}' in runs[torch_step]
    project_step = next(i for i, r in enumerate(runs) if re.search(r"pip install( --no-deps)?( --no-cache(-dir)?)? \.", r))
    assert torch_step < project_step, "an unpinned torch from PyPI would pull CUDA wheels"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_every_copied_source_exists_and_passes_the_dockerignore(name):
    dockerfile = parse(name)
    sources = [c.split()[0] for s in dockerfile.stages for c in s.all("COPY") if not c.startswith("--from=")]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert dockerignore_allows(name, source), source
    for excluded in (".venv", "tests", ".git", ".loraserve"):
        assert not dockerignore_allows(name, excluded)


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_base_images_are_pinned(name):
    dockerfile = parse(name)
    for stage in dockerfile.stages:
        base = dockerfile.expand(stage.base)
        if base in {s.name for s in dockerfile.stages}:
            continue
        assert ":" in base and not base.endswith(":latest"), base


def test_the_gpu_image_has_a_cuda_base():
    dockerfile = parse("Dockerfile.gpu")
    assert dockerfile.expand(dockerfile.final.base).startswith("nvidia/cuda:")

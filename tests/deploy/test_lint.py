"""yamllint over every YAML file in k8s/ and deploy/ (rules: tests/deploy/yamllint.yaml)."""
from __future__ import annotations

from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.deploy.manifests import DEPLOY, K8S

CONFIG = YamlLintConfig(file=str(K8S.parent / "tests" / "deploy" / "yamllint.yaml"))


def _yaml_files() -> list:
    return sorted(p for root in (K8S, DEPLOY) for pattern in ("*.yaml", "*.yml") for p in root.rglob(pattern))


def test_every_yaml_file_passes_yamllint():
    files = _yaml_files()
    assert len(files) > 30
    problems = [f"{path.relative_to(K8S.parent)}:{p.line}:{p.column}: {p.message} ({p.rule})"
                for path in files for p in linter.run(path.read_text(), CONFIG, str(path))]
    assert problems == []


def test_the_lint_rules_reject_a_broken_file():
    problems = list(linter.run("a: 1\na: 2\nb:   [1,2]\n", CONFIG))
    assert {p.rule for p in problems} >= {"key-duplicates"}

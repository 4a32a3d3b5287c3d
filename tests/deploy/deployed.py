"""Which models an environment runs a worker pool for, as its validator reads it: the catalogue's `deployed`
flag under the LORASERVE_DEPLOYED_MODELS setting of the validator's rendered environment."""
from __future__ import annotations

import os

from shared.catalogue.catalogue import load_catalogue
from shared.settings import Settings
from tests.deploy.manifests import named, pod_environment

CATALOGUE = load_catalogue()


def settings_from(monkeypatch, variables: dict[str, str]) -> Settings:
    """Settings parsed from exactly these variables, as a process started with them parses them."""
    for name in [n for n in os.environ if n.startswith("LORASERVE_")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings()


def deployed_models(monkeypatch, docs: list[dict]) -> set[str]:
    """Ids of the models the rendered validator treats as deployed."""
    variables, _ = pod_environment(docs, named(docs, "Deployment", "validator"))
    overrides = settings_from(monkeypatch, variables).deployed_models
    return {model.id for model in CATALOGUE.models if CATALOGUE.is_deployed(model.id, overrides)}

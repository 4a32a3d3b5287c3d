"""One adapter against one model, statically: config rules, header rules, architecture rules.

Pure: takes the config's bytes and the parsed weights header, returns every problem found.
"""
from __future__ import annotations

from services.validator.architecture_rules import check_weights
from services.validator.codes import Problem, Problems
from services.validator.config_rules import read_config
from shared.catalogue.catalogue import ModelEntry
from shared.safetensors_header import SafetensorsHeader


def validate_adapter(config_bytes: bytes, header: SafetensorsHeader, model: ModelEntry) -> Problems:
    problems = Problems()
    config = read_config(config_bytes, model, problems)
    problems.extend_counted([Problem(p.code, p.message) for p in header.problems], header.problems_omitted)
    # a header that could not be read at all names no tensors; checking them would only add noise
    if header.tensors or header.ok:
        check_weights(header, config, model, problems)
    return problems

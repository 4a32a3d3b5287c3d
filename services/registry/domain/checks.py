"""What is wrong with a create or patch request: every problem at once, each naming its param."""
from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from services.registry.domain.names import name_problems
from shared.contracts.files import InternalFile

LORA_PURPOSE = "lora"


@dataclass(frozen=True)
class Problem:
    param: str
    message: str
    code: str


def name_check(name: str) -> list[Problem]:
    return [Problem("name", f"name {name!r} {problem}", "invalid_name") for problem in name_problems(name)]


def model_check(models: list[str], known: Container[str]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for model in models:
        if model in seen:
            problems.append(Problem("supported_models", f"supported_models lists {model!r} twice",
                                    "duplicate_model"))
        elif model not in known:
            message = f"supported_models: {model!r} is not a known model id"
            problems.append(Problem("supported_models", message, "model_not_found"))
        seen.add(model)
    return problems


def file_check(param: str, file_id: str, found: InternalFile | None) -> list[Problem]:
    """A file must exist in the caller's org (another org's file is simply not found) with purpose `lora`."""
    if found is None:
        message = f"{param}: no file with id {file_id!r} in your organization"
        return [Problem(param, message, "file_not_found")]
    problems = []
    if found.purpose != LORA_PURPOSE:
        problems.append(Problem(param, f"{param}: file {file_id!r} has purpose {found.purpose!r}, "
                                       f"upload it with purpose {LORA_PURPOSE!r}", "invalid_file_purpose"))
    if found.status == "error":
        problems.append(Problem(param, f"{param}: file {file_id!r} failed to upload", "invalid_file"))
    return problems


def same_files_check(config_file_id: str, weights_file_id: str) -> list[Problem]:
    if config_file_id != weights_file_id:
        return []
    return [Problem("weights_file_id", "config_file_id and weights_file_id must be two different files",
                    "invalid_file")]

"""The model catalogue: every served base model, loaded from `models.json` into typed objects.

Plain Python (no torch): every HTTP service loads it. `ModelEntry.shapes` derives the
`[out, in]` of every LoRA-targetable module from the architecture (see `shapes.py`).
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.catalogue.engines import EngineSpec, capabilities
from shared.catalogue.shapes import ModuleShapes

DEFAULT_PATH = Path(__file__).with_name("models.json")
CATALOGUE_FILE_ENV = "LORASERVE_CATALOGUE_FILE"
MAX_CATALOGUE_BYTES = 4 * 1024 * 1024
# PEFT saves keys as "base_model.model." + the module's name inside the PEFT-wrapped model
PEFT_KEY_ROOT = "base_model.model."


class Architecture(BaseModel):
    """The HF `config.json` fields of a DeepseekV3 text stack; other fields are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model_type: str
    architectures: list[str] = Field(default_factory=list)
    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    moe_intermediate_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    n_shared_experts: int = Field(ge=0)
    n_routed_experts: int = Field(ge=0)
    num_experts_per_tok: int = Field(ge=0)
    n_group: int = Field(gt=0)
    topk_group: int = Field(gt=0)
    first_k_dense_replace: int = Field(ge=0)
    q_lora_rank: int = Field(gt=0)
    kv_lora_rank: int = Field(gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    tie_word_embeddings: bool = False

    def hf_config(self) -> dict:
        """The fields as a dict for `transformers.DeepseekV3Config(**...)`."""
        return self.model_dump()


class ModelEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    slug: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    display_name: str
    owned_by: str
    max_rank: int = Field(gt=0)
    target_policy: Literal["all", "attention"] = "all"
    engine: EngineSpec
    # whether an environment runs a worker pool for it (settings' deployed_models overrides per environment);
    # without one, validation ends `unverified` right after the static checks instead of waiting for a worker
    deployed: bool = True
    key_prefixes: list[str] = Field(min_length=1)
    architecture: Architecture
    seed: int | None = None

    @field_validator("key_prefixes")
    @classmethod
    def _prefixes_are_peft_keys(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            if not prefix.startswith(PEFT_KEY_ROOT) or not prefix.endswith("."):
                raise ValueError(f"key prefix {prefix!r} must start with {PEFT_KEY_ROOT!r} and end with '.'")
        return prefixes

    @cached_property
    def shapes(self) -> ModuleShapes:
        return ModuleShapes(self.architecture)

    @property
    def module_prefixes(self) -> list[str]:
        """Each key prefix as the module-name prefix PEFT matches `target_modules` against."""
        return [prefix.removeprefix(PEFT_KEY_ROOT) for prefix in self.key_prefixes]


class Catalogue(BaseModel):
    model_config = ConfigDict(frozen=True)

    models: list[ModelEntry]

    @field_validator("models")
    @classmethod
    def _unique(cls, models: list[ModelEntry]) -> list[ModelEntry]:
        for attr in ("id", "slug"):
            values = [getattr(model, attr) for model in models]
            if len(values) != len(set(values)):
                raise ValueError(f"duplicate model {attr} in the catalogue")
        return models

    def get(self, model_id: str) -> ModelEntry:
        """The entry for `model_id`; raises KeyError for a model that is not served."""
        for model in self.models:
            if model.id == model_id:
                return model
        raise KeyError(model_id)

    def by_slug(self, slug: str) -> ModelEntry:
        for model in self.models:
            if model.slug == slug:
                return model
        raise KeyError(slug)

    def engine_fingerprints(self) -> dict[str, str]:
        """Model id -> what its engine applies, as a fingerprint that changes when that does."""
        return {model.id: capabilities(model.engine).fingerprint for model in self.models}

    def is_deployed(self, model_id: str, overrides: dict[str, bool]) -> bool:
        """Whether this environment runs a worker pool for the model (`overrides`: settings.deployed_models)."""
        return overrides.get(model_id, self.get(model_id).deployed)

    def ids(self) -> list[str]:
        return [model.id for model in self.models]

    def slugs(self) -> list[str]:
        return [model.slug for model in self.models]

    def __contains__(self, model_id: object) -> bool:
        return any(model.id == model_id for model in self.models)


def catalogue_path(path: str | Path | None = None) -> Path:
    """`path`, else LORASERVE_CATALOGUE_FILE (the setting `catalogue_file`, read here too because the
    model builders and generators have no Settings), else the packaged `models.json`."""
    chosen = path or os.environ.get(CATALOGUE_FILE_ENV)
    return Path(chosen) if chosen else DEFAULT_PATH


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read and validate the catalogue file (see `catalogue_path`)."""
    source = catalogue_path(path)
    with source.open("rb") as handle:
        raw = handle.read(MAX_CATALOGUE_BYTES + 1)
    if len(raw) > MAX_CATALOGUE_BYTES:
        raise ValueError(f"catalogue {source} exceeds {MAX_CATALOGUE_BYTES} bytes")
    return Catalogue.model_validate_json(raw)

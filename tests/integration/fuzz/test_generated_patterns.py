"""Pathological regular expressions, generated, in every pattern field of adapter_config.json (issue 15, "Also"):
nested and alternated quantifiers that make a backtracking engine take exponential time. The validator's public
function (in-process, both catalogue models, a header naming real modules) must end each in documented result
codes within a few seconds; an interval timer turns a runaway match into a failure instead of a hang."""
from __future__ import annotations

import contextlib
import json
import signal
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.validator.codes import DESCRIPTIONS
from services.validator.validate import validate_adapter
from tests.integration.fuzz.test_validator_fuzz import MODELS, header_of

SECONDS_PER_CONFIG = 5.0  # bench_validate's goal is 2 s; the margin is for two busy shared cores
ATOMS = [".", "a", "x", r"\w", r"\.", "[a-z_]", "(?:.+)", "(.*)", "proj", r"\d", "(.|.)", r"[^.]"]
PREFIXES = ["", "^", r"model\.layers\.", r".*\.", "base_model.model."]
SUFFIXES = ["x", "!", "$", r"\.weight", "(?!a)", "", r"\1"]


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pairs = st.tuples(inner, inner)
    return st.one_of(inner.map(lambda r: f"({r})+"), inner.map(lambda r: f"(?:{r})*"),
                     inner.map(lambda r: f"({r}){{1,64}}"), pairs.map(lambda p: f"({p[0]}|{p[1]})+"),
                     pairs.map("".join))


patterns = st.builds("{}{}{}".format, st.sampled_from(PREFIXES),
                     st.recursive(st.sampled_from(ATOMS), _grow, max_leaves=6), st.sampled_from(SUFFIXES))
# every field the validator reads a regex from, with the pattern where that field takes one
FIELDS = {
    "target_modules": lambda p: {"target_modules": p},
    "exclude_modules": lambda p: {"target_modules": "all-linear", "exclude_modules": p},
    "rank_pattern": lambda p: {"rank_pattern": {p: 8, r"model\.layers\.0\..*": 4}},
    "alpha_pattern": lambda p: {"alpha_pattern": {p: 16.0}},
    "target_modules list": lambda p: {"target_modules": [p, "q_a_proj"]},
    "layers_pattern": lambda p: {"layers_pattern": p, "layers_to_transform": [0]},
}
HEADER = header_of({f"base_model.model.model.layers.{layer}.self_attn.{module}.lora_{ab}.weight": ([4, 4], "F32")
                    for layer in (0, 1) for module in ("q_a_proj", "o_proj") for ab in ("A", "B")})


def config(pattern: str, field: str, model) -> bytes:
    base = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": model.id, "r": 4,
            "lora_alpha": 8, "target_modules": ["q_a_proj", "o_proj"]}
    return json.dumps({**base, **FIELDS[field](pattern)}).encode()


class TookTooLong(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float, what: str):
    """SIGALRM in the main thread: `re` checks for signals while it backtracks, so a runaway match is stopped."""
    def expire(signum, frame):
        raise TookTooLong(f"{what} took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pattern=patterns, field=st.sampled_from(sorted(FIELDS)), model=st.sampled_from(MODELS))
def test_no_generated_pattern_runs_away_in_any_pattern_field(pattern, field, model):
    started = time.monotonic()
    with time_limit(SECONDS_PER_CONFIG, f"{field}={pattern!r} on {model.id}"):
        problems = validate_adapter(config(pattern, field, model), HEADER, model)
    assert set(problems.codes()) <= set(DESCRIPTIONS)
    assert time.monotonic() - started < SECONDS_PER_CONFIG


def test_the_known_runaways_end_quickly():
    for pattern in [r"((.+))+x", r"(?:(?:.+))+x", r"(.|.)+x", r"((.+)|(.+))+x", r"model\.layers\.((.+))+x"]:
        for field in FIELDS:
            with time_limit(SECONDS_PER_CONFIG, f"{field}={pattern!r}"):
                problems = validate_adapter(config(pattern, field, MODELS[1]), HEADER, MODELS[1])
            assert set(problems.codes()) <= set(DESCRIPTIONS)

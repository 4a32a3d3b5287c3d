"""Property-based fuzzing of every public operation in the OpenAPI document against `loraserve dev`:
schema-valid and schema-invalid inputs alike get a non-5xx answer in the right envelope, and every
answer the document declares matches it."""
from __future__ import annotations

from tests.integration.fuzz.checks import exercise, load_schema

# bounded for `make test`; tests/reliability runs the same with many more, random examples
schema = load_schema(max_examples=20, deterministic=True)


@schema.parametrize()
def test_no_input_breaks_an_endpoint(case, seeds):
    exercise(case, seeds)

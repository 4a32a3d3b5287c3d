"""The public API fuzzed at length (`make reliability`): many random examples per operation, then random
sequences of calls that pass ids from one answer to the next. Same checks as the quick run in make test:
never a 5xx, every 4xx in the API's envelope, every declared answer matching the OpenAPI document."""
from __future__ import annotations

import hypothesis

from tests.integration.fuzz.checks import CHECKS, ENDLESS, exercise, load_schema
from tests.integration.fuzz.steering import Seeds  # `seeds` and `dev_server` come from conftest.py

EXAMPLES_PER_OPERATION = 300
SEQUENCES, STEPS_PER_SEQUENCE = 100, 10

schema = load_schema(max_examples=EXAMPLES_PER_OPERATION, deterministic=False)


@schema.parametrize()
def test_no_input_breaks_an_endpoint_at_length(case, seeds):
    exercise(case, seeds)


def test_no_sequence_of_calls_breaks_the_api(seeds: Seeds):
    stateful = load_schema(max_examples=SEQUENCES, deterministic=False)
    for path in ENDLESS:
        stateful = stateful.exclude(path=path)
    server = seeds.server

    class Workflow(stateful.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": server.url, "headers": server.auth(), "timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)
            assert server.alive(), server.log_tail()

    Workflow.run(settings=hypothesis.settings(max_examples=SEQUENCES, stateful_step_count=STEPS_PER_SEQUENCE,
                                              deadline=None, suppress_health_check=list(hypothesis.HealthCheck)))

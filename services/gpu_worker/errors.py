"""Why an adapter or a request was refused, as the result codes the registry stores."""
from __future__ import annotations

LOAD_FAILED = "load_failed"
WEIGHTS_NONFINITE = "weights_nonfinite"
RANK_TOO_LARGE = "rank_too_large"
OUTPUT_NONFINITE = "output_nonfinite"
OUTPUT_MALFORMED = "output_malformed"
CONTEXT_TOO_LONG = "context_length_exceeded"
INVALID_REQUEST = "invalid_request"
DEADLINE_EXCEEDED = "deadline_exceeded"
WORKER_LOST = "stream_interrupted"
INTERNAL = "internal_error"


class Problem(tuple):
    """(code, message): one thing wrong with an adapter."""

    def __new__(cls, code: str, message: str):
        return super().__new__(cls, (code, message))

    @property
    def code(self) -> str:
        return self[0]

    @property
    def message(self) -> str:
        return self[1]


class AdapterRejected(Exception):
    """The adapter cannot be served; every problem found is listed, the first one's code leads."""

    def __init__(self, problems: list[Problem]):
        if not problems:
            raise ValueError("AdapterRejected needs at least one problem")
        self.problems = list(problems)
        super().__init__(self.message)

    @property
    def code(self) -> str:
        return self.problems[0].code

    @property
    def message(self) -> str:
        return "; ".join(p.message for p in self.problems)


class RequestFailed(Exception):
    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

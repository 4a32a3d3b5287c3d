"""SIGKILL `loraserve dev` during a stream of uploads and LoRA creates: no write answered 200 is lost,
and nothing answers 500 afterwards (issue 15, finding 4). The longer run: tests/reliability."""
from __future__ import annotations

from tests.e2e.faults.dev_kills import measure

KILLS, WRITES, WRITERS = 3, 60, 4


def test_sigkill_of_loraserve_dev_loses_no_acknowledged_write(tmp_path, figures):
    measured = measure(tmp_path / "data", kills=KILLS, writes=WRITES, writers=WRITERS)

    figures["dev SIGKILL: acknowledged writes lost"] = measured.summary()
    assert measured.acked >= KILLS * WRITES
    assert measured.lost == []
    assert measured.errors == []
    assert measured.orphans == []

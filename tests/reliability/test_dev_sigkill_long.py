"""The long run of tests/e2e/faults/test_faults_dev_sigkill.py: more kills, more writers, more writes
(`make reliability`); prints the figure for the README's Reliability section."""
from __future__ import annotations

from tests.e2e.faults.dev_kills import measure

KILLS, WRITES, WRITERS = 10, 150, 8


def test_ten_sigkills_of_loraserve_dev_lose_no_acknowledged_write(tmp_path, capsys):
    measured = measure(tmp_path / "data", kills=KILLS, writes=WRITES, writers=WRITERS)

    with capsys.disabled():
        print(f"\ndev SIGKILL (long): {measured.summary()}")
    assert measured.acked >= KILLS * WRITES
    assert measured.lost == []
    assert measured.errors == []
    assert measured.orphans == []

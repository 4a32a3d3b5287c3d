"""Pausing the cyclic garbage collector during a validation: overlapping pauses (validations in
threads) keep it paused until the last ends, and a collector that was off stays off."""
import contextlib
import gc

import pytest

from services.validator.gc_pause import cyclic_gc_paused


@pytest.fixture(autouse=True)
def collector_restored():
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


def test_overlapping_pauses_resume_the_collector_when_the_last_ends():
    gc.enable()
    first, second = contextlib.ExitStack(), contextlib.ExitStack()
    first.enter_context(cyclic_gc_paused())
    second.enter_context(cyclic_gc_paused())
    assert not gc.isenabled()
    first.close()  # ends before the second, as a thread finishing first would
    assert not gc.isenabled()
    second.close()
    assert gc.isenabled()


def test_the_collector_resumes_after_an_error():
    gc.enable()
    with pytest.raises(ValueError), cyclic_gc_paused():
        raise ValueError("a validation that fails")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()

"""The timing primitive."""

import pytest

from edgeldm.benchmarks.timing import alternate, measure, summarize


def test_summarize_orders_and_picks_percentiles():
    t = summarize([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0], warmup=2)
    assert (t.median, t.min, t.max, t.p90, t.repeat, t.warmup) == (5.5, 1.0, 10.0, 9.0, 10, 2)


def test_measure_runs_warmup_untimed_then_repeats():
    calls = []
    t = measure(lambda: calls.append(1), repeat=4, warmup=2)
    assert len(calls) == 6 and t.repeat == 4 and t.min >= 0
    with pytest.raises(ValueError):
        measure(lambda: None, repeat=0)


def test_alternate_interleaves_a_and_b():
    order = []
    a, b = alternate(lambda: order.append("a"), lambda: order.append("b"), repeat=3, warmup=1)
    assert order == ["a", "b"] * 4 and len(a) == len(b) == 3


def test_synchronizer_waits_only_on_asynchronous_devices():
    import torch

    from edgeldm.benchmarks.timing import synchronizer

    assert synchronizer("cpu")() is None
    assert synchronizer(torch.device("cuda:0")) is torch.cuda.synchronize  # returned, not called: no GPU needed


def test_component_timer_counts_the_wait_for_queued_work():
    import time

    from edgeldm.benchmarks.targets import ComponentTimer

    timer, waits = ComponentTimer(), []

    def sync():  # a device whose queued work finishes 30 ms after the call returned
        waits.append(1)
        if len(waits) % 2 == 0:
            time.sleep(0.03)

    timer.sync = sync
    timed = timer.wrap("unet", lambda x: x + 1)
    assert timed(1) == 2 and len(waits) == 2
    assert timer.calls["unet"][0] >= 0.03

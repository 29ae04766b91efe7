"""The outage breaker, with time passed in: no sleeping."""

from __future__ import annotations

from backfill.breaker import Breaker


def open_breaker(now: float = 0.0, **given: float) -> Breaker:
    breaker = Breaker(threshold=3, limit_s=60.0, **given)
    for n in range(3):
        breaker.failed(now + n * 0.1)
    return breaker


def test_failures_below_the_threshold_leave_it_closed_and_an_answer_resets_the_streak():
    breaker = Breaker(threshold=3)
    breaker.failed(0.0)
    breaker.failed(1.0)
    breaker.answered(2.0)
    breaker.failed(3.0)
    breaker.failed(4.0)
    assert not breaker.is_open
    assert breaker.permit(4.0) == (0.0, False)
    assert breaker.outages == 0


def test_a_streak_opens_it_and_only_one_probe_goes_out_per_interval():
    breaker = open_breaker(first_probe_s=1.0)
    assert breaker.is_open and breaker.outages == 1
    wait, probe = breaker.permit(0.5)
    assert not probe and abs(wait - 0.7) < 1e-9  # opened at 0.2, first probe at 1.2
    assert breaker.permit(1.2) == (0.0, True)
    # While the probe is out, nobody else goes.
    wait, probe = breaker.permit(1.3)
    assert wait > 0 and not probe


def test_failed_probes_grow_the_interval_up_to_the_cap():
    breaker = open_breaker(first_probe_s=1.0, max_probe_s=4.0)
    now = 0.2
    intervals = []
    for _ in range(5):
        wait, _ = breaker.permit(now)
        now += wait
        assert breaker.permit(now) == (0.0, True)
        breaker.failed(now, probe=True)
        next_wait, _ = breaker.permit(now)
        intervals.append(next_wait)
    assert [round(i, 6) for i in intervals] == [2.0, 4.0, 4.0, 4.0, 4.0]


def test_failures_of_requests_sent_before_the_outage_do_not_push_the_probe_back():
    breaker = open_breaker(first_probe_s=1.0)
    breaker.failed(0.5)  # a request that was already in flight
    assert breaker.permit(1.2) == (0.0, True)


def test_any_answer_closes_it():
    breaker = open_breaker()
    assert breaker.permit(5.0) == (0.0, True)
    breaker.answered(5.1)
    assert not breaker.is_open and breaker.streak == 0
    assert breaker.permit(5.1) == (0.0, False)
    assert breaker.down_for(5.1) == 0.0


def test_the_outage_limit_counts_from_the_first_failure_of_the_streak():
    breaker = open_breaker(now=100.0)
    assert not breaker.expired(159.9)
    assert breaker.down_for(150.0) == 50.0
    assert breaker.expired(160.0)


def test_a_closed_breaker_never_expires_however_old_its_last_failure():
    breaker = Breaker(threshold=3, limit_s=1.0)
    breaker.failed(0.0)
    assert not breaker.expired(100.0)


def test_a_second_outage_is_counted_and_starts_its_own_clock():
    breaker = open_breaker(now=0.0)
    breaker.answered(10.0)
    for n in range(3):
        breaker.failed(20.0 + n)
    assert breaker.outages == 2
    assert not breaker.expired(79.0) and breaker.expired(80.0)

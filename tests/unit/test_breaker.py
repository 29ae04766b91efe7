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
    breaker.answered()
    breaker.failed(3.0)
    breaker.failed(4.0)
    assert not breaker.is_open
    assert breaker.permit(4.0) == ("send", 0.0)
    assert breaker.outages == 0


def test_a_streak_opens_it_and_only_one_probe_goes_out_per_interval():
    breaker = open_breaker(first_probe_s=1.0)
    assert breaker.is_open and breaker.outages == 1
    permit, wait = breaker.permit(0.5)
    assert permit == "wait" and abs(wait - 0.7) < 1e-9  # opened at 0.2, first probe at 1.2
    assert breaker.permit(1.2) == ("probe", 0.0)
    # While the probe is out, nobody else goes.
    permit, wait = breaker.permit(1.3)
    assert permit == "wait" and wait > 0


def test_failed_probes_grow_the_interval_up_to_the_cap():
    breaker = open_breaker(first_probe_s=1.0, max_probe_s=4.0)
    now = 0.2
    intervals = []
    for _ in range(5):
        _, wait = breaker.permit(now)
        now += wait
        assert breaker.permit(now) == ("probe", 0.0)
        breaker.failed(now, probe=True)
        intervals.append(breaker.permit(now)[1])
    assert [round(i, 6) for i in intervals] == [2.0, 4.0, 4.0, 4.0, 4.0]


def test_failures_of_requests_sent_before_the_outage_do_not_push_the_probe_back():
    breaker = open_breaker(first_probe_s=1.0)
    breaker.failed(0.5)  # a request that was already in flight
    assert breaker.permit(1.2) == ("probe", 0.0)


def test_an_answered_probe_lets_one_trial_through_and_only_its_answer_closes_it():
    breaker = open_breaker()
    assert breaker.permit(5.0) == ("probe", 0.0)
    breaker.probe_answered()
    assert breaker.is_open
    assert breaker.permit(5.1) == ("trial", 0.0)
    assert breaker.permit(5.1)[0] == "wait"  # one trial at a time
    breaker.answered()
    assert not breaker.is_open and breaker.streak == 0
    assert breaker.permit(5.2) == ("send", 0.0)
    assert breaker.down_for(5.2) == 0.0


def test_a_failed_trial_keeps_it_open_and_the_outage_clock_running():
    # Plain answers queries while every write fails: still an outage.
    breaker = open_breaker(now=100.0, first_probe_s=1.0)
    for step in range(30):
        now = 101.2 + step * 2.5
        permit, wait = breaker.permit(now)
        if permit == "probe":
            breaker.probe_answered()
            assert breaker.permit(now)[0] == "trial"
            breaker.failed(now, probe=True)
    assert breaker.is_open and breaker.outages == 1
    assert breaker.expired(160.0)


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
    breaker.answered()
    for n in range(3):
        breaker.failed(20.0 + n)
    assert breaker.outages == 2
    assert not breaker.expired(79.0) and breaker.expired(80.0)

"""`--rate auto`: the learner and the pacer, with time passed in (no sleeping)."""

from __future__ import annotations

import pytest

from backfill.plain import Budget
from backfill.ratelimit import AutoRate, Pacer


def simulate(auto: AutoRate, *, limit: int, window: float, others: float, seconds: float):
    """Fixed windows of `limit` shared with another client sending `others` per second.

    Requests go out as the learner paces them; returns (ours, theirs, refused) per window.
    """
    pacer = Pacer(rate=1.0)
    now, used, windows = 0.0, 0, []
    ours = theirs = refused = 0
    index = 0
    their_next = 0.0
    ours_at: float | None = None
    while now < seconds:
        if ours_at is None:
            ours_at = now + pacer.reserve(now)
        if their_next <= ours_at and others:
            now, who = their_next, "them"
            their_next += 1 / others
        else:
            now, who, ours_at = ours_at, "us", None
        if int(now // window) != index:
            windows.append((ours, theirs, refused))
            index, used, ours, theirs, refused = int(now // window), 0, 0, 0, 0
        if used >= limit:
            refused += 1
            continue
        used += 1
        if who == "them":
            theirs += 1
            continue
        ours += 1
        reset_in = (index + 1) * window - now
        rate, hold = auto.observe(Budget(limit, limit - used, reset_in), now)
        pacer.set_rate(rate)
        if hold > now:
            pacer.pause_until(hold + 0.001)
    return windows


def test_it_converges_within_one_window_and_then_uses_the_whole_budget():
    windows = simulate(AutoRate(headroom=0.0), limit=100, window=2.0, others=0, seconds=12)
    assert windows[0][0] > 0
    # From the second window on: the whole budget, no refusal.
    for ours, _, refused in windows[1:]:
        assert ours >= 98 and refused == 0


def test_it_learns_the_window_length_from_successive_resets():
    auto = AutoRate(headroom=0.0)
    simulate(auto, limit=100, window=2.0, others=0, seconds=7)
    assert auto.window_s == pytest.approx(2.0, abs=0.05) and auto.limit == 100


def test_headroom_leaves_its_share_of_every_window_unused():
    windows = simulate(AutoRate(headroom=0.2), limit=100, window=2.0, others=0, seconds=12)
    for ours, _, refused in windows[1:]:
        assert 75 <= ours <= 81 and refused == 0


def test_other_traffic_eating_the_window_slows_it_down_and_keeps_its_requests():
    # Another integration sends 15/s (30 of each window of 100); headroom 10%.
    windows = simulate(AutoRate(headroom=0.1), limit=100, window=2.0, others=15, seconds=20)
    for ours, theirs, refused in windows[1:]:
        assert refused == 0
        assert theirs >= 29
        assert 55 <= ours <= 71


def test_a_window_whose_share_is_spent_holds_until_the_reset():
    auto = AutoRate(headroom=0.1)
    rate, hold = auto.observe(Budget(limit=100, remaining=10, reset_in_s=1.5), now=10.0)
    assert hold == pytest.approx(11.5)
    # In flight requests count as spent too.
    auto = AutoRate(headroom=0.0)
    _, hold = auto.observe(Budget(limit=100, remaining=3, reset_in_s=1.0), now=0.0, in_flight=3)
    assert hold == pytest.approx(1.0)


def test_answers_from_an_earlier_window_arriving_late_change_nothing():
    auto = AutoRate(headroom=0.0)
    auto.observe(Budget(limit=100, remaining=50, reset_in_s=1.0), now=0.0)
    first = auto.observe(Budget(limit=100, remaining=99, reset_in_s=2.0), now=1.0)
    late = auto.observe(Budget(limit=100, remaining=40, reset_in_s=0.0), now=1.01)
    assert late[0] == pytest.approx(first[0], rel=0.05)


def test_the_pacer_follows_a_new_rate_from_its_last_slot():
    pacer = Pacer(rate=1.0)
    assert pacer.reserve(0.0) == 0.0
    pacer.set_rate(10.0)
    assert pacer.reserve(0.0) == pytest.approx(0.1)
    pacer.pause_until(5.0)
    pacer.set_rate(20.0)
    assert pacer.reserve(0.2) == pytest.approx(4.8)


def test_a_slot_too_far_ahead_is_not_claimed_so_a_faster_rate_applies_at_once():
    pacer = Pacer(rate=1.0)
    assert pacer.claim(0.0, horizon=0.25) == 0.0
    # At one a second the next slot is 1 s away: not claimed, nothing reserved.
    assert pacer.claim(0.1, horizon=0.25) is None
    pacer.set_rate(20.0)  # a new window under --rate auto
    assert pacer.claim(0.1, horizon=0.25) == pytest.approx(0.0)

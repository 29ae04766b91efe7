import random

import pytest

from backfill.config import parse_rate
from backfill.ratelimit import Backoff, Pacer


@pytest.mark.parametrize(
    ("text", "per_s"),
    [("450/min", 7.5), ("7.5/s", 7.5), ("600 / minute", 10.0), ("3600/h", 1.0)],
)
def test_parse_rate(text, per_s):
    assert parse_rate(text) == per_s


@pytest.mark.parametrize("text", ["fast", "0/min", "10", "-1/s", "5/day"])
def test_parse_rate_refuses(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_pacer_spaces_requests_evenly_for_all_callers():
    pacer = Pacer(rate=10.0)
    sends = []
    now = 0.0
    for _ in range(50):
        now += pacer.reserve(now)
        sends.append(now)
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    assert all(g == pytest.approx(0.1) for g in gaps)
    # In any 1 s window no more than the rate.
    assert max(sum(1 for s in sends if t <= s < t + 1.0 - 1e-9) for t in sends) <= 10


def test_pacer_does_not_bank_idle_time():
    pacer = Pacer(rate=1.0)
    assert pacer.reserve(0.0) == 0.0
    assert pacer.reserve(100.0) == 0.0
    assert pacer.reserve(100.0) == pytest.approx(1.0)


def test_pause_holds_every_slot():
    pacer = Pacer(rate=100.0)
    pacer.reserve(0.0)
    pacer.pause_until(5.0)
    assert pacer.reserve(1.0) == pytest.approx(4.0)
    assert pacer.reserve(1.0) == pytest.approx(4.01)


def test_backoff_grows_with_jitter_and_is_capped():
    backoff = Backoff(base_s=1.0, cap_s=8.0)
    rand = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        delays = [backoff.delay(attempt, rand) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered

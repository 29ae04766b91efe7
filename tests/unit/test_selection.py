"""Shards and time windows: which rows a run takes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backfill.config import Shard, Window
from backfill.models import LedgerEntry, RowProblem, SourceRow, Status
from backfill.plain import Budget
from backfill.planner import Decision, Resend, plan
from backfill.ratelimit import AutoRate
from backfill.selection import Selection, query_bounds, shard_of


@pytest.mark.parametrize("text, index, count", [("0/1", 0, 1), ("3/4", 3, 4), (" 2 / 8 ", 2, 8)])
def test_a_shard_is_i_of_n(text, index, count):
    assert Shard.parse(text) == Shard(index, count)


@pytest.mark.parametrize(
    "text", ["4/4", "1/0", "0/0", "-1/4", "a/b", "1-4", "", "1/4/2", "1", "0/10001", "1.0/4"]
)
def test_any_other_form_of_shard_is_refused(text):
    with pytest.raises(ValueError, match="not a shard"):
        Shard.parse(text)


def test_the_shard_of_a_key_never_changes():
    # A task and its retry, on another worker or a later version, must take the same rows.
    # Pinned: a new hash would move rows between the shards of a job half done.
    assert [shard_of(f"evt_{n}", 7) for n in range(8)] == [3, 3, 3, 1, 2, 6, 1, 2]


def _row(n: int, problem: RowProblem | None = None, when: str = "") -> SourceRow:
    return SourceRow("a.csv", str(n + 2), {"occurred_at": when}, problem)


@given(
    keys=st.lists(st.text(min_size=1, max_size=40), max_size=200),
    bad=st.sets(st.integers(0, 199)),
    count=st.integers(1, 16),
)
def test_the_shards_partition_any_input_exactly(keys, bad, count):
    pairs = [
        (_row(n), RowProblem("bad_key", "x") if n in bad else key) for n, key in enumerate(keys)
    ]
    taken = [Selection(shard=Shard(i, count)).keep(pairs) for i in range(count)]
    places = [(row.position, ident) for shard in taken for row, ident in shard]
    # Every row, invalid ones included, is in exactly one shard.
    assert sorted(places, key=str) == sorted(
        [(row.position, ident) for row, ident in pairs], key=str
    )
    assert sum(len(shard) for shard in taken) == len(pairs)
    # All repeats of an id are in one shard, so duplicate detection works per shard.
    for shard in taken:
        for _, ident in shard:
            if isinstance(ident, str):
                assert all(i != ident for other in taken if other is not shard for _, i in other)


def test_shards_split_rows_roughly_evenly():
    keys = [f"acme_{n}" for n in range(10_000)]
    sizes = [sum(shard_of(k, 4) == i for k in keys) for i in range(4)]
    assert all(2300 < size < 2700 for size in sizes), sizes


def test_a_window_is_half_open():
    window = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    assert window.holds(datetime(2024, 1, 1, tzinfo=UTC))
    assert not window.holds(datetime(2024, 1, 2, tzinfo=UTC))
    assert not window.holds(datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert Window(since=datetime(2024, 1, 1, tzinfo=UTC)).holds(datetime(9999, 1, 1, tzinfo=UTC))


def test_bounds_without_offset_are_in_the_mappings_zone():
    plus2 = timezone(timedelta(hours=2))
    assert Window.parse("2024-01-01 00:00").in_zone(plus2).since == datetime(
        2023, 12, 31, 22, tzinfo=UTC
    )
    assert Window.parse("2024-01-01T00:00:00+00:00").in_zone(plus2).since == datetime(
        2024, 1, 1, tzinfo=UTC
    )
    assert Window.parse("", "") == Window() and not Window.parse()
    with pytest.raises(ValueError, match="--until"):
        Window.parse(until="yesterday")


def test_a_window_takes_rows_by_their_timestamp_and_keeps_unreadable_ones():
    selection = Selection(
        window=Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),
        timestamp_column="occurred_at",
        tz=timezone(timedelta(hours=-5)),
    )
    pairs = [
        (_row(0, when="2024-01-15T10:00:00Z"), "in"),
        (_row(1, when="2024-02-01T00:00:00Z"), "at-until"),
        (_row(2, when="2023-12-31 20:00:00"), "local-in"),  # 01:00 UTC on Jan 1st
        (_row(3, when="2023-12-31 18:00:00"), "local-out"),
        (_row(4, when="not a time"), "unreadable"),
        (_row(5, RowProblem("bad_csv", "x")), RowProblem("bad_csv", "x")),
    ]
    taken = [ident for _, ident in selection.keep(pairs)]
    assert taken[:3] == ["in", "local-in", "unreadable"] and len(taken) == 4


def test_an_empty_selection_takes_everything():
    pairs = [(_row(n), f"id{n}") for n in range(5)]
    assert not Selection() and Selection().keep(pairs) == pairs


def _entry(code: str) -> LedgerEntry:
    return LedgerEntry("x", Status.REJECTED, "h", "m", "r", "a.csv", "2", code=code)


def test_rejected_rows_are_kept_unless_picked_for_resending():
    rows = [(_row(0), "a"), (_row(1), "b")]
    entries = {"a": _entry("not_found"), "b": _entry("validation_error")}
    kept = plan(rows, entries, {})
    assert [p.decision for p in kept] == [Decision.KEEP_REJECTED] * 2
    every = plan(rows, entries, {}, resend=Resend(codes=None))
    assert [p.decision for p in every] == [Decision.SEND] * 2
    one = plan(rows, entries, {}, resend=Resend(codes=frozenset({"not_found"})))
    assert [p.decision for p in one] == [Decision.SEND, Decision.KEEP_REJECTED]


def test_a_shards_auto_rate_is_its_share_of_the_budget_after_the_headroom():
    budget = Budget(limit=100, remaining=100, reset_in_s=10.0)
    whole, _ = AutoRate(headroom=0.1).observe(budget, now=0.0)
    halves = [AutoRate(headroom=0.1, share=0.5).observe(budget, now=0.0)[0] for _ in range(2)]
    # The headroom is taken once, off the workspace's budget: the shards sum to the whole.
    assert sum(halves) == pytest.approx(whole)
    assert whole == pytest.approx(9.0)


@pytest.mark.parametrize(
    "options, resent",
    [
        ({}, set()),
        ({"retry_rejected": True}, {"not_found", "validation_error", "forbidden"}),
        ({"retry_rejected": True, "retry_code": "forbidden"}, {"forbidden"}),
        ({"upsert_customers": True}, {"not_found"}),
        (
            {"retry_rejected": True, "retry_code": "forbidden", "upsert_customers": True},
            {"forbidden", "not_found"},
        ),
    ],
)
def test_which_rejected_rows_a_run_sends_again(options, resent):
    from backfill.config import resolve
    from backfill.planner import Resend

    resend = Resend.of(resolve(sources=("a.csv",), mapping="m.toml", trust_env=False, **options))
    codes = {"not_found", "validation_error", "forbidden"}
    assert {code for code in codes if resend(_entry(code))} == resent


def test_query_bounds_reach_whole_days_beyond_the_window():
    window = Window(datetime(2024, 5, 1, 23, tzinfo=UTC), datetime(2024, 5, 2, 23, tzinfo=UTC))
    assert query_bounds(Selection(window=window)) == {"since": "2024-04-30", "until": "2024-05-04"}
    # Any row of the window, in any zone up to 14 h away and written in any ISO form,
    # compares inside the bounds as text.
    bounds = query_bounds(Selection(window=window))
    for hours in (-14, 0, 14):
        zone = timezone(timedelta(hours=hours))
        for moment in (window.since, window.until - timedelta(seconds=1)):
            local = moment.astimezone(zone).replace(tzinfo=None)
            for text in (local.isoformat(), local.isoformat(sep=" ")):
                assert bounds["since"] <= text < bounds["until"]
    epoch = query_bounds(Selection(window=window, timestamp_unit="ms"))
    assert int(epoch["since"]) <= window.since.timestamp() * 1000 - 86_400_000
    assert int(epoch["until"]) >= window.until.timestamp() * 1000 + 86_400_000
    assert query_bounds(Selection(window=Window(since=window.since))) == {"since": "2024-04-30"}

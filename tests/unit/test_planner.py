from backfill.models import LedgerEntry, RowProblem, SourceRow, Status
from backfill.planner import Decision, plan


def row(position, **problem):
    return SourceRow(
        "in.csv", str(position), {"id": str(position)}, RowProblem(**problem) if problem else None
    )


def entry(ext_id, status):
    return LedgerEntry(ext_id, status, "hash", "mhash", "run-1", "in.csv", "9")


def test_the_rerun_table():
    rows = [
        (row(2), "new"),
        (row(3), "done"),
        (row(4), "existed"),
        (row(5), "flight"),
        (row(6), "retry"),
        (row(7), "rejected"),
        (row(8), RowProblem("bad_key", "empty", "id")),
        (row(9, code="field_count", message="expected 2 fields, found 3"), "ignored"),
        (row(10), "new"),
    ]
    entries = {
        "done": entry("done", Status.DELIVERED),
        "existed": entry("existed", Status.ALREADY_EXISTED),
        "flight": entry("flight", Status.IN_FLIGHT),
        "retry": entry("retry", Status.RETRYABLE),
        "rejected": entry("rejected", Status.REJECTED),
    }
    first_seen = {"new": ("in.csv", "2")}
    decisions = [p.decision for p in plan(rows, entries, first_seen)]
    assert decisions == [
        Decision.SEND,
        Decision.SKIP_DONE,
        Decision.SKIP_DONE,
        Decision.SEND,
        Decision.SEND,
        Decision.KEEP_REJECTED,
        Decision.INVALID,
        Decision.INVALID,
        Decision.DUPLICATE,
    ]


def test_a_duplicate_points_at_the_first_row():
    (planned,) = plan([(row(10), "x")], {}, {"x": ("other.csv", "4")})
    assert planned.decision == Decision.DUPLICATE
    assert planned.problem and "other.csv line 4" in planned.problem.message


def test_a_duplicate_of_a_delivered_row_is_still_a_duplicate():
    planned = plan([(row(10), "x")], {"x": entry("x", Status.DELIVERED)}, {"x": ("in.csv", "2")})
    assert planned[0].decision == Decision.DUPLICATE

"""Thread events, mixed runs, truncation, customer upsert, and the offline commands."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd

from backfill import run
from backfill.config import resolve
from backfill.fakeplain import FakePlain
from backfill.ledger import SqliteLedger
from backfill.pipeline import preview, validate
from tests.conftest import MAPPING, SAMPLE, settings_for

HEADER = ["id", "at", "email", "name", "thread", "kind", "body"]


def write_rows(path: Path, rows: list[list[str]]) -> str:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return str(path)


def write_mapping(path: Path, extra: str = "", components: str = "") -> str:
    path.write_text(
        f"""
title = "{{{{ kind }}}}"

[customer]
email = "email"
full_name = "name"

[thread]
id = "thread"

[timestamp]
column = "at"

[external_id]
namespace = "model"
key = ["id"]
{extra}
{
            components
            or '''
[[components]]
type = "text"
text = "{{ body }}"
when = "body"
'''
        }
""",
        encoding="utf-8",
    )
    return str(path)


def row(n: int, email: str, thread: str = "", body: str = "hello") -> list[str]:
    return [str(n), "2024-05-01T10:00:00Z", email, f"Person {email}", thread, "login", body]


def test_rows_with_a_thread_id_become_thread_events_in_the_same_run(fake_plain, tmp_path):
    source = write_rows(
        tmp_path / "mixed.csv",
        [row(1, "a@acme.example"), row(2, "a@acme.example", "th_01ABC"), row(3, "b@acme.example")],
    )
    mapping = write_mapping(tmp_path / "m.toml")
    summary = run(settings_for(fake_plain, tmp_path, sources=(source,), mapping=mapping))
    assert summary.exit_code == 0 and summary.counts == {"delivered": 3}
    stats = fake_plain.stats()
    assert stats.by_operation["createCustomerEvent"] == 2
    assert stats.by_operation["createThreadEvent"] == 1
    thread_event = next(e for e in stats.events if e.get("threadId"))
    assert thread_event["threadId"] == "th_01ABC" and thread_event["title"] == "login"


def test_too_long_text_is_truncated_with_an_ellipsis_and_noted(fake_plain, tmp_path):
    long_body = "x" * 12_000
    source = write_rows(tmp_path / "long.csv", [row(1, "a@acme.example", body=long_body)])
    truncate = write_mapping(tmp_path / "t.toml", extra='[limits]\ntoo_long = "truncate"')
    summary = run(settings_for(fake_plain, tmp_path, sources=(source,), mapping=truncate))
    assert summary.counts == {"delivered": 1}
    (event,) = fake_plain.stats().events
    text = event["components"][0]["componentText"]["text"]
    assert len(text) == 10_000 and text.endswith("…")
    frame = pd.read_csv(f"{summary.results_dir}/results.csv", dtype=str, keep_default_na=False)
    assert frame.loc[0, "note"] == "truncated: components[0].text"

    reject = write_mapping(tmp_path / "r.toml")
    checked = validate(resolve(sources=[source], mapping=reject, results_dir=str(tmp_path / "v")))
    assert checked.invalid == 1 and checked.by_code == {"too_long": 1}


def test_each_distinct_customer_is_upserted_once_and_never_again(fake_plain, tmp_path):
    rows = [row(n, f"c{n % 4}@acme.example") for n in range(40)]
    source = write_rows(tmp_path / "many.csv", rows)
    mapping = write_mapping(tmp_path / "m.toml")
    settings = settings_for(
        fake_plain, tmp_path, sources=(source,), mapping=mapping, upsert_customers=True
    )
    first = run(settings)
    assert first.exit_code == 0 and first.counts == {"delivered": 40}
    assert first.customers_upserted == 4
    assert fake_plain.stats().by_operation["upsertCustomer"] == 4

    more = write_rows(tmp_path / "many.csv", rows + [row(99, "c1@acme.example")])
    second = run(
        settings_for(fake_plain, tmp_path, sources=(more,), mapping=mapping, upsert_customers=True)
    )
    assert second.counts == {"delivered": 41} and second.customers_upserted == 0
    assert fake_plain.stats().by_operation["upsertCustomer"] == 4  # the ledger remembered them
    with SqliteLedger.open(settings.ledger.location) as ledger:
        assert ledger.query("SELECT COUNT(*), MIN(status) FROM customers")[0] == (4, "delivered")


def test_a_failing_upsert_rejects_only_that_customers_events(tmp_path):
    rows = [row(n, "good@acme.example") for n in range(5)]
    rows += [row(n, "bad@localhost") for n in range(5, 8)]  # Plain refuses this email
    source = write_rows(tmp_path / "u.csv", rows)
    mapping = write_mapping(tmp_path / "m.toml")
    with FakePlain(
        rate_limit=100_000, unknown_customers=["good@acme.example", "bad@localhost"]
    ) as fake:
        summary = run(
            settings_for(fake, tmp_path, sources=(source,), mapping=mapping, upsert_customers=True)
        )
        stats = fake.stats()
    assert summary.exit_code == 1
    assert summary.counts == {"delivered": 5, "rejected": 3}
    assert stats.by_operation["upsertCustomer"] == 2
    frame = pd.read_csv(f"{summary.results_dir}/failed.csv", dtype=str, keep_default_na=False)
    assert set(frame["code"]) == {"input_validation"}
    assert frame["message"].str.contains("the customer upsert failed").all()


def test_without_upsert_unknown_customers_are_rejected_and_counted(tmp_path):
    rows = [row(n, f"u{n % 3}@acme.example") for n in range(9)] + [row(9, "known@acme.example")]
    source = write_rows(tmp_path / "u.csv", rows)
    mapping = write_mapping(tmp_path / "m.toml")
    unknown = ["u0@acme.example", "u1@acme.example", "u2@acme.example"]
    with FakePlain(rate_limit=100_000, unknown_customers=unknown) as fake:
        summary = run(settings_for(fake, tmp_path, sources=(source,), mapping=mapping))
    assert summary.counts == {"delivered": 1, "rejected": 9}
    assert summary.unknown_customers == 3


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_validate_preview_and_dry_run_touch_neither_plain_nor_the_ledger(fake_plain, tmp_path):
    settings = settings_for(fake_plain, tmp_path, limit=30)
    run(settings)
    ledger = Path(settings.ledger.location)
    before = digest(ledger)
    requests = fake_plain.stats().requests
    fake_plain.reset()

    checked = validate(resolve(sources=[SAMPLE], mapping=MAPPING, results_dir=str(tmp_path / "v")))
    assert checked.invalid == 0 and checked.valid == 2400
    shown = preview(resolve(sources=[SAMPLE], mapping=MAPPING), n=3, lines=())
    assert [s["line"] for s in shown] == ["2", "3", "4"]
    assert shown[0]["operation"] == "createCustomerEvent"
    assert shown[0]["variables"]["input"]["externalId"] == shown[0]["external_id"]
    dry = run(settings_for(fake_plain, tmp_path, limit=60, dry_run=True))
    assert dry.counts == {"delivered": 30, "would_send": 30}
    assert dry.skipped_done == 30 and dry.requests == 0
    would = pd.read_csv(f"{dry.results_dir}/would_send.csv", dtype=str, keep_default_na=False)
    assert len(would) == 30 and set(would["ledger_status"]) == {"new"}
    assert dry.results_dir.endswith("-dry-run")

    assert fake_plain.stats().requests == 0
    assert digest(ledger) == before
    assert requests > 0


def test_a_dry_run_without_a_ledger_does_not_create_it(fake_plain, tmp_path):
    settings = settings_for(fake_plain, tmp_path, limit=5, dry_run=True, api_key="")
    summary = run(settings)
    assert summary.counts == {"would_send": 5} and summary.exit_code == 0
    assert not Path(settings.ledger.location).exists()
    assert not list(tmp_path.glob("ledger.sqlite*"))
    assert fake_plain.stats().requests == 0


def test_preview_of_chosen_lines_and_invalid_rows(tmp_path):
    source = write_rows(
        tmp_path / "p.csv",
        [row(1, "a@acme.example"), row(2, ""), row(3, "c@acme.example", "th_9")],
    )
    mapping = write_mapping(tmp_path / "m.toml")
    shown = preview(resolve(sources=[source], mapping=mapping, upsert_customers=True), lines=[3, 4])
    assert shown[0]["invalid"]["code"] == "missing_customer"
    assert shown[1]["operation"] == "createThreadEvent"
    assert shown[1]["variables"]["input"]["threadId"] == "th_9"
    first = preview(resolve(sources=[source], mapping=mapping, upsert_customers=True), n=1)[0]
    assert (
        first["upsertCustomer"]["variables"]["input"]["onCreate"]["fullName"]
        == "Person a@acme.example"
    )


def test_upsert_fixes_not_found_rejections_and_retries_refused_customers(tmp_path):
    source = write_rows(
        tmp_path / "u.csv", [row(1, "New@Acme.example"), row(2, "new@acme.example")]
    )
    mapping = write_mapping(tmp_path / "m.toml")
    with FakePlain(rate_limit=100_000, unknown_customers=["new@acme.example"]) as fake:
        plain_run = run(settings_for(fake, tmp_path, sources=(source,), mapping=mapping))
        assert plain_run.counts == {"rejected": 2}
        assert plain_run.unknown_customers == 1  # one customer, whatever the case of its email
        upserting = run(
            settings_for(fake, tmp_path, sources=(source,), mapping=mapping, upsert_customers=True)
        )
        stats = fake.stats()
    # The not_found rows are sent again once their customer is upserted; one upsert for both.
    assert upserting.counts == {"delivered": 2}
    assert stats.by_operation["upsertCustomer"] == 1


def test_a_customer_that_cannot_be_upserted_is_invalid_offline(fake_plain, tmp_path):
    rows = [row(1, "a@acme.example"), [*row(2, "b@acme.example")[:3], "", *row(2, "b")[4:]]]
    source = write_rows(tmp_path / "c.csv", rows)
    mapping = write_mapping(tmp_path / "m.toml")
    checked = validate(
        resolve(
            sources=[source],
            mapping=mapping,
            results_dir=str(tmp_path / "v"),
            upsert_customers=True,
        )
    )
    assert checked.by_code == {"cannot_upsert": 1}
    assert (
        validate(
            resolve(sources=[source], mapping=mapping, results_dir=str(tmp_path / "v"))
        ).invalid
        == 0
    )
    summary = run(
        settings_for(
            fake_plain, tmp_path, sources=(source,), mapping=mapping, upsert_customers=True
        )
    )
    assert summary.counts == {"delivered": 1, "invalid": 1}
    assert fake_plain.stats().by_operation["upsertCustomer"] == 1


def test_a_refused_customer_is_tried_again_on_the_next_run(tmp_path):
    source = write_rows(tmp_path / "r.csv", [row(1, "bad@localhost")])
    mapping = write_mapping(tmp_path / "m.toml")
    with FakePlain(rate_limit=100_000, unknown_customers=["bad@localhost"]) as fake:
        first = run(
            settings_for(fake, tmp_path, sources=(source,), mapping=mapping, upsert_customers=True)
        )
        assert first.counts == {"rejected": 1}
        more = write_rows(tmp_path / "r.csv", [row(1, "bad@localhost"), row(2, "bad@localhost")])
        second = run(
            settings_for(fake, tmp_path, sources=(more,), mapping=mapping, upsert_customers=True)
        )
        stats = fake.stats()
    assert second.counts == {"rejected": 2}
    assert stats.by_operation["upsertCustomer"] == 2  # once per run, not once per event


def test_a_dry_run_after_a_crash_sees_what_the_crashed_run_committed(fake_plain, tmp_path):
    import subprocess
    import sys

    settings = settings_for(fake_plain, tmp_path, limit=40)
    run(settings)
    # A process that dies without closing the ledger leaves its last pages in the -wal file.
    script = "\n".join(
        [
            "import os, sqlite3",
            f"c = sqlite3.connect({settings.ledger.location!r}, isolation_level=None)",
            "c.execute('PRAGMA journal_mode=WAL')",
            "c.execute('PRAGMA wal_autocheckpoint=0')",
            "c.execute(\"UPDATE events SET status = 'retryable' WHERE rowid <= 5\")",
            "os._exit(0)",
        ]
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    assert Path(settings.ledger.location + "-wal").exists()
    dry = run(settings_for(fake_plain, tmp_path, limit=40, dry_run=True))
    assert dry.counts == {"delivered": 35, "would_send": 5}


def test_preview_says_when_no_record_starts_on_a_line(tmp_path):
    source = write_rows(tmp_path / "p.csv", [row(1, "a@acme.example", body="two\nlines")])
    mapping = write_mapping(tmp_path / "m.toml")
    shown = preview(resolve(sources=[source], mapping=mapping), lines=[2, 3, 99])
    assert shown[0]["line"] == "2" and "variables" in shown[0]
    assert [s["line"] for s in shown[1:]] == ["3", "99"]
    assert all(s["missing"] == "no record starts on this line" for s in shown[1:])


def test_a_dry_run_with_upserts_lists_the_customers_it_would_upsert(fake_plain, tmp_path):
    rows = [row(n, f"c{n % 3}@acme.example") for n in range(9)]
    source = write_rows(tmp_path / "d.csv", rows)
    mapping = write_mapping(tmp_path / "m.toml")

    def dry():
        return run(
            settings_for(
                fake_plain,
                tmp_path,
                sources=(source,),
                mapping=mapping,
                upsert_customers=True,
                dry_run=True,
            )
        )

    before = dry()
    assert before.customers_upserted == 3 and before.counts == {"would_send": 9}
    would = pd.read_csv(f"{before.results_dir}/would_send.csv", dtype=str, keep_default_na=False)
    assert sorted(would.loc[would["upsert_first"] != "", "upsert_first"]) == [
        f"emailAddress:c{n}@acme.example" for n in range(3)
    ]
    run(
        settings_for(
            fake_plain, tmp_path, sources=(source,), mapping=mapping, upsert_customers=True
        )
    )
    more = write_rows(
        tmp_path / "d.csv", [*rows, row(50, "c1@acme.example"), row(51, "new@acme.example")]
    )
    after = run(
        settings_for(
            fake_plain,
            tmp_path,
            sources=(more,),
            mapping=mapping,
            upsert_customers=True,
            dry_run=True,
        )
    )
    assert after.counts == {"delivered": 9, "would_send": 2}
    assert after.customers_upserted == 1  # only the new customer
    assert fake_plain.stats().by_operation["upsertCustomer"] == 3

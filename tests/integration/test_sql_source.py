"""`--source-sql` against a real PostgreSQL: the same ids and variables as the table's CSV
export, a run end to end with parameters, and clear failures that send nothing."""

from __future__ import annotations

import csv
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from backfill.config import SqlSource
from backfill.mapper import compile_mapper, event_id, map_row
from backfill.mapping import load_mapping
from backfill.models import Event
from backfill.readers import sql
from backfill.readers.csv import read_rows
from backfill.readers.values import canonical
from tests.conftest import MAPPING, SAMPLE, clean_env, cli, cli_popen, libpq
from tests.integration.test_formats import MAPPING as ORDERS_MAPPING
from tests.integration.test_formats import text

ROWS = 20_000  # four chunks of 5000
ORDERS_TABLE = """
CREATE TABLE orders (
    order_id bigint PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    email text NOT NULL,
    kind text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    quantity integer,
    paid boolean NOT NULL,
    note text
)
"""
ACTIVITY_COLUMNS = (
    "event_id occurred_at customer_email customer_name event_type plan amount currency url "
    "description actor"
).split()


def orders(n: int) -> list[dict]:
    rand = random.Random(11)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    return [
        {
            "order_id": 10_000_000_000 + i,
            "occurred_at": start + timedelta(seconds=rand.randrange(10**8), microseconds=i % 7),
            "email": f"buyer{i % 50}@example.com",
            "kind": rand.choice(["order_placed", "order_refunded"]),
            "amount": Decimal(rand.randrange(1, 10**6)).scaleb(-2),
            "quantity": None if i % 7 == 0 else rand.randrange(1, 9),
            "paid": i % 3 != 0,
            "note": None if i % 5 == 0 else f'note «{i}», "quoted"',
        }
        for i in range(n)
    ]


def copy_csv(url: str, ddl: str, table: str, path: Path) -> None:
    """Create `table` and COPY the CSV file into it (empty unquoted fields are NULL)."""
    with psycopg.connect(libpq(make_url(url))) as conn:
        conn.execute(ddl)
        with (
            conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)") as copy,
            open(path, "rb") as fh,
        ):
            while block := fh.read(1 << 20):
                copy.write(block)


def mapped(rows, mapping: str) -> list[tuple[str, dict]]:
    mapper = compile_mapper(load_mapping(mapping))
    out = []
    for row in rows:
        ident = event_id(mapper, row)
        assert isinstance(ident, str), (row.position, ident)
        event = map_row(mapper, row, ident)
        assert isinstance(event, Event), event
        out.append((ident, dict(event.input)))
    return out


def test_a_table_reads_as_its_csv_export_does(pg_url, tmp_path):
    records = orders(ROWS)
    export = tmp_path / "orders.csv"
    with open(export, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(records[0]))
        writer.writerows([text(value) for value in r.values()] for r in records)
    copy_csv(pg_url, ORDERS_TABLE, "orders", export)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(ORDERS_MAPPING, encoding="utf-8")

    source = SqlSource("SELECT * FROM orders ORDER BY order_id", pg_url)
    assert sql.read_header(source) == list(records[0])
    chunks = list(sql.read_chunks(source, key_columns=["order_id", "occurred_at"], chunk_rows=5000))
    assert {len(chunk) for chunk in chunks} == {5000}
    rows = [row for chunk in chunks for row in chunk]
    first = rows[0]
    assert first.source == make_url(pg_url).render_as_string()
    assert first.position == f"order_id=10000000000,occurred_at={text(records[0]['occurred_at'])}"
    from_sql = mapped(rows, str(mapping))
    from_csv = mapped(read_rows(str(export)), str(mapping))
    assert len(from_sql) == ROWS
    assert from_sql == from_csv

    # PostgreSQL's own CSV export writes other text (`2023-04-08 20:09:17+00`, `t`), but
    # typed key columns normalise alike: the externalIds are the same.
    own = tmp_path / "copy_to.csv"
    with psycopg.connect(libpq(make_url(pg_url))) as conn, open(own, "wb") as fh:
        with conn.cursor().copy("COPY orders TO STDOUT (FORMAT csv, HEADER true)") as copy:
            for block in copy:
                fh.write(block)
    assert "+00," in own.read_text(encoding="utf-8").splitlines()[1]
    mapper = compile_mapper(load_mapping(str(mapping)))
    assert [event_id(mapper, row) for row in read_rows(str(own))] == [i for i, _ in from_sql]


@pytest.fixture
def activity(pg_url) -> str:
    """The sample activity as a PostgreSQL table of text columns."""
    ddl = "CREATE TABLE activity (" + ", ".join(f"{c} text" for c in ACTIVITY_COLUMNS) + ")"
    copy_csv(pg_url, ddl, "activity", Path(SAMPLE))
    return pg_url


def sql_run(fake, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--mapping",
        MAPPING,
        "--api-url",
        fake.url,
        "--ledger",
        str(tmp_path / "ledger.sqlite"),
        "--results-dir",
        str(tmp_path / "results"),
        "--rate",
        "2000/s",
        "--concurrency",
        "8",
        *extra,
    ]


QUERY = "SELECT * FROM activity WHERE event_type = :kind AND occurred_at >= :since"


def test_a_run_over_a_query_with_parameters_sends_its_rows_once(
    activity, fake_plain, tmp_path, monkeypatch
):
    mapper = compile_mapper(load_mapping(MAPPING))
    expected = {
        event_id(mapper, row)
        for row in read_rows(SAMPLE)
        if row.values["event_type"] == "plan_upgraded" and row.values["occurred_at"] >= "2023-06"
    }
    assert 10 < len(expected) < 2400
    query = tmp_path / "upgrades.sql"
    query.write_text(QUERY, encoding="utf-8")
    args = ["--source-sql", f"@{query}", "--source-url", activity]
    args += ["--param", "kind=plan_upgraded", "--param", "since=2023-06"]
    env = {"PLAIN_API_KEY": "test-key"}
    checked = cli("validate", "--mapping", MAPPING, *args, "--results-dir", str(tmp_path / "v"))
    assert checked.returncode == 0, checked.stderr
    assert f"rows read          {len(expected)}" in checked.stdout

    first = cli(*sql_run(fake_plain, tmp_path, *args), env=clean_env(**env))
    assert first.returncode == 0, first.stderr
    stats = fake_plain.stats()
    assert set(stats.creations) == expected
    assert set(stats.creations.values()) == {1}
    results = (tmp_path / "results").glob("*/results.csv")
    with open(next(results), encoding="utf-8") as fh:
        positions = {row["position"] for row in csv.DictReader(fh)}
    assert len(positions) == len(expected)
    assert all(p.startswith("event_id=") for p in positions)

    again = cli(*sql_run(fake_plain, tmp_path, *args), env=clean_env(**env))
    assert again.returncode == 0, again.stderr
    assert "requests           0" in again.stdout
    assert fake_plain.stats().creations == stats.creations


def test_the_source_is_files_or_a_query(activity, fake_plain, tmp_path):
    args = ["--source-sql", "SELECT * FROM activity", "--source-url", activity, SAMPLE]
    result = cli(*sql_run(fake_plain, tmp_path, *args))
    assert result.returncode == 2
    assert "either source files or --source-sql" in result.stderr


@pytest.mark.parametrize(
    ("query", "url", "said"),
    [
        pytest.param("SELEC * FROM activity", None, "syntax error", id="syntax-error"),
        pytest.param(
            "SELECT event_id, occurred_at FROM activity",
            None,
            "unknown column 'customer_email'",
            id="missing-column",
        ),
        pytest.param(
            "SELECT * FROM activity",
            "postgresql+psycopg://someone:s3cret-canary@127.0.0.1:1/db",
            "cannot connect",
            id="unreachable-port",
        ),
        pytest.param(
            "SELECT * FROM activity",
            "password:s3cret-canary",
            'database "no_such_db" does not exist',
            id="bad-database-with-password",
        ),
    ],
)
def test_a_bad_source_stops_before_sending(activity, fake_plain, tmp_path, query, url, said):
    if url == "password:s3cret-canary":
        url = (
            make_url(activity)
            .set(password="s3cret-canary", database="no_such_db")
            .render_as_string(hide_password=False)
        )
    args = ["--source-sql", query, "--source-url", url or activity]
    result = cli(*sql_run(fake_plain, tmp_path, *args), env=clean_env(PLAIN_API_KEY="test-key"))
    assert result.returncode == 2, result.stderr
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret-canary" not in result.stdout + result.stderr
    assert fake_plain.stats().creations == {}


ODD_TABLE = """
CREATE TABLE odd (
    event_id text, occurred_at timestamptz, customer_email text, customer_name text,
    event_type text, plan jsonb, amount numeric, currency uuid, url text[],
    description bytea, actor date
);
INSERT INTO odd VALUES
 ('e1', '2024-01-01 10:00+02', 'a@x.com', 'A', 'signup', '{"tier": [1, 2.5]}', 'NaN',
  '00000000-0000-4000-8000-000000000001', '{a,"b c"}', '\\xff00', 'infinity'),
 ('e2', 'infinity', 'b@x.com', 'B', 'signup', NULL, 1, NULL, NULL, NULL, '-infinity'),
 ('e3', '0044-03-15 12:00+00 BC', 'c@x.com', 'C', 'signup', NULL, 1, NULL, NULL, NULL, NULL),
 ('e4', NULL, 'd@x.com', 'D', 'signup', NULL, 1, NULL, NULL, NULL, '0001-01-01 BC'),
 ('e5', '2024-01-02 10:00+00', 'e@x.com', 'E', 'signup', NULL, 1, NULL, NULL, 'café', NULL)
"""


def test_values_python_cannot_hold_make_only_their_row_invalid(pg_url, fake_plain, tmp_path):
    """infinity and BC timestamps arrive as the database's text: their rows are invalid,
    naming the column; every other type becomes text and the rest of the run goes on."""
    with psycopg.connect(libpq(make_url(pg_url))) as conn:
        conn.execute(ODD_TABLE)
    source = SqlSource("SELECT * FROM odd ORDER BY event_id", pg_url)
    rows = [row for chunk in sql.read_chunks(source, key_columns=["event_id"]) for row in chunk]
    values = {row.position: row.values for row in rows}
    assert values["event_id=e1"] == {
        "event_id": "e1",
        "occurred_at": "2024-01-01T08:00:00Z",
        "customer_email": "a@x.com",
        "customer_name": "A",
        "event_type": "signup",
        "plan": '{"tier":[1,2.5]}',
        "amount": "NaN",
        "currency": "00000000-0000-4000-8000-000000000001",
        "url": '["a","b c"]',
        "description": "base64:/wA=",
        "actor": "infinity",
    }
    assert values["event_id=e2"]["occurred_at"] == "infinity"
    assert values["event_id=e2"]["actor"] == "-infinity"
    assert values["event_id=e4"]["actor"] == "0001-01-01 BC"
    assert values["event_id=e5"]["description"] == "café"

    args = ["--source-sql", "SELECT * FROM odd", "--source-url", pg_url]
    result = cli(*sql_run(fake_plain, tmp_path, *args), env=clean_env(PLAIN_API_KEY="test-key"))
    assert result.returncode == 1, result.stderr  # some rows invalid, the rest delivered
    assert len(fake_plain.stats().creations) == 1  # e5
    (failed,) = (tmp_path / "results").glob("*/failed.csv")
    with open(failed, encoding="utf-8") as fh:
        problems = {row["position"]: (row["column"], row["code"]) for row in csv.DictReader(fh)}
    assert problems == {
        "event_id=e1": ("url", "bad_url"),  # an array's JSON text is no link
        "event_id=e2": ("occurred_at", "bad_timestamp"),  # infinity
        "event_id=e3": ("occurred_at", "bad_timestamp"),  # BC
        "event_id=e4": ("occurred_at", "bad_timestamp"),  # NULL
    }


def test_a_source_connection_lost_mid_run_exits_2_and_the_next_run_resumes(
    activity, fake_plain, tmp_path
):
    copies = 2  # 4,800 rows: far more than the reader fetches ahead of sending
    with psycopg.connect(libpq(make_url(activity))) as conn:
        conn.execute(
            "CREATE TABLE many AS SELECT a.event_id || '-' || g AS event_id,"
            + ", ".join(f"a.{c}" for c in ACTIVITY_COLUMNS[1:])
            + f" FROM activity a CROSS JOIN generate_series(1, {copies}) g"
        )
    args = ["--source-sql", "SELECT * FROM many ORDER BY event_id", "--source-url", activity]
    env = clean_env(PLAIN_API_KEY="test-key")
    # Chunks of 100 rows: the run fetches its next chunk, and so finds the connection
    # lost, a second after the kill rather than after the 1000 of a default chunk.
    chunks = {**env, "BACKFILL_CHUNK_ROWS": "100"}
    run = cli_popen(*sql_run(fake_plain, tmp_path, *args, "--rate", "100/s"), env=chunks)
    deadline = time.monotonic() + 60
    while len(fake_plain.stats().creations) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    with psycopg.connect(libpq(make_url(activity)), autocommit=True) as admin:
        (killed,) = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone() or (0,)
    _, stderr = run.communicate(timeout=60)
    assert killed == 1
    assert run.returncode == 2, stderr
    assert "the query failed" in stderr and "Traceback" not in stderr
    created = dict(fake_plain.stats().creations)
    assert 0 < len(created) < 2400 * copies

    again = cli(*sql_run(fake_plain, tmp_path, *args), env=env)
    assert again.returncode == 0, again.stderr
    creations = fake_plain.stats().creations
    assert len(creations) == 2400 * copies
    assert set(creations.values()) == {1}


def test_the_columns_are_named_without_running_the_query(activity):
    slow = SqlSource("SELECT *, pg_sleep(10) AS nap FROM activity WHERE actor <> :who;", activity)
    started = time.monotonic()
    names = sql.read_header(SqlSource(slow.query, activity, (("who", "x"),)))
    assert names == [*ACTIVITY_COLUMNS, "nap"]
    assert time.monotonic() - started < 5  # one row would take 10 s


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_dates_times_and_numerics_read_as_text_equal_canonical_of_their_values(pg_url, zone):
    """The reader takes these types as PostgreSQL's text and makes it canonical; that text
    must be what `canonical` makes of the value psycopg would have loaded, in any zone."""
    rand = random.Random(zone)
    start = datetime(1901, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(3000):
        at = start + timedelta(seconds=rand.randrange(4 * 10**9))
        at = at.replace(microsecond=rand.choice([0, 0, 5000, 123456, 999999, 10]))
        rows.append(
            (
                i,
                at,
                at.replace(tzinfo=None),
                at.date(),
                at.time(),
                Decimal(rand.randrange(-(10**12), 10**12)).scaleb(-rand.randrange(0, 7)),
            )
        )
    with psycopg.connect(libpq(make_url(pg_url))) as conn:
        conn.execute(
            "CREATE TABLE typed (i int, tz timestamptz, naive timestamp, d date, t time, n numeric)"
        )
        with conn.cursor().copy("COPY typed FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("INSERT INTO typed VALUES (-1, NULL, NULL, NULL, NULL, NULL)")
    url = make_url(pg_url).update_query_dict({"options": f"-c TimeZone={zone}"})
    url_text = url.render_as_string(hide_password=False)
    shown = SqlSource("SELECT current_setting('TimeZone') AS zone", url_text)
    assert next(sql.read_chunks(shown))[0].values == {"zone": zone}
    source = SqlSource("SELECT * FROM typed ORDER BY i", url_text)
    read = [row.values for chunk in sql.read_chunks(source) for row in chunk]
    with psycopg.connect(libpq(make_url(pg_url)), options=f"-c TimeZone={zone}") as conn:
        cur = conn.execute("SELECT * FROM typed ORDER BY i")
        names = [d.name for d in cur.description or ()]
        expected = [{n: canonical(v) for n, v in zip(names, r, strict=True)} for r in cur]
    assert len(read) == len(rows) + 1
    assert read == expected
    assert read[0] == dict.fromkeys(names, "") | {"i": "-1"}


@pytest.mark.parametrize("params", [(), (("kind", "login"),)], ids=["no-params", "params"])
def test_a_percent_sign_in_the_query_is_text_not_a_placeholder(activity, params):
    kind = " AND event_type = :kind" if params else ""
    query = (
        f"SELECT count(*) AS n, '100%' AS pct FROM activity WHERE customer_email LIKE '%@%'{kind}"
    )
    (row,) = [
        r.values for chunk in sql.read_chunks(SqlSource(query, activity, params)) for r in chunk
    ]
    assert row["pct"] == "100%"
    sample = [r.values for r in read_rows(SAMPLE) if "@" in r.values["customer_email"]]
    logins = [v for v in sample if v["event_type"] == "login"]
    assert int(row["n"]) == len(logins if params else sample)

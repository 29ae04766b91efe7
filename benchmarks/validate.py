"""Time and peak memory of `backfill validate` on a big CSV, next to a bare pandas.read_csv.

Generates a deterministic CSV shaped like data/sample_activity.csv (the same 11 columns,
quoted commas and double quotes, non-ASCII text, a few % multi-line descriptions, several
ISO 8601 timestamp forms) and a mapping with five components (text and link_button with
`when`, badge, plain_text, copy_button). Then it measures, each step in a fresh Python
process so that the peak RSS is that process's own:

1. the floor: `pandas.read_csv(path, dtype=str, keep_default_na=False)`;
2. `backfill validate PATH --mapping M --results-dir DIR`, through
   `backfill.pipeline.validate` (the function the CLI calls), and checks that every row is
   valid (the generator writes valid rows only).

Seconds are the step itself (interpreter start and imports excluded); the peak RSS is the
whole process's (imports included). MB here are MiB. The goals are under 30 s and under
300 MB peak for 1,000,000 rows; a run with another --rows is checked against the rate that
meets 30 s for 1,000,000 rows.

Run it from the repository root:

    .venv/bin/python benchmarks/validate.py                  # 1,000,000 rows
    .venv/bin/python benchmarks/validate.py --rows 50000     # a quick run
    .venv/bin/python benchmarks/validate.py --keep DIR       # keep the CSV and mapping
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261127
GOAL_ROWS = 1_000_000
GOAL_SECONDS = 30.0
GOAL_MB = 300.0
BATCH = 10_000
POOL = 256  # pre-built descriptions per event type

COLUMNS = (
    "event_id",
    "occurred_at",
    "customer_email",
    "customer_name",
    "event_type",
    "plan",
    "amount",
    "currency",
    "url",
    "description",
    "actor",
)

MAPPING = """\
# Maps the generated benchmark activity to Plain customer events.

title = "{{ event_type | replace('_', ' ') | capitalize }}"

[customer]
email = "customer_email"
full_name = "customer_name"

[timestamp]
column = "occurred_at"
timezone = "UTC"

[external_id]
namespace = "bench-activity"
key = [{ column = "event_id", type = "string" }]

[[components]]
type = "text"
text = "{{ description }}"
when = "description"

[[components]]
type = "badge"
label = "{{ plan or 'no plan' }}"
color = "BLUE"

[[components]]
type = "plain_text"
text = "{{ customer_name }} ({{ actor or 'system' }})"
size = "S"
color = "MUTED"

[[components]]
type = "link_button"
url = "{{ url }}"
label = "Open in admin"
when = "url"

[[components]]
type = "copy_button"
value = "{{ event_id }}"
tooltip = "Copy event id"
"""

# Run in a fresh interpreter: argv = step, csv, mapping, results dir. The last stdout line
# is JSON with the step's figures and the process's own peak RSS.
STEP = """\
import json, resource, sys, time
step, path, mapping, results = sys.argv[1:5]
if step == "pandas":
    import pandas
else:
    from backfill.pipeline import validate
out = {}
start = time.perf_counter()
if step == "pandas":
    frame = pandas.read_csv(path, dtype=str, keep_default_na=False)
    out["rows"] = len(frame)
    del frame
else:
    summary = validate([path], mapping, results_dir=results)
    out.update(rows=summary.rows_read, valid=summary.valid, invalid=summary.invalid,
               duplicates=summary.duplicates, by_code=dict(summary.by_code),
               examples=dict(summary.examples))
out["seconds"] = time.perf_counter() - start
out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""

EVENT_TYPES = (
    ("login", 30),
    ("api_key_created", 5),
    ("api_key_revoked", 2),
    ("plan_upgraded", 4),
    ("plan_downgraded", 2),
    ("invoice_paid", 14),
    ("invoice_failed", 3),
    ("order_placed", 14),
    ("incident_opened", 5),
    ("incident_resolved", 4),
    ("seat_added", 6),
    ("export_requested", 4),
)
PLANS = ("free", "starter", "growth", "scale", "enterprise")
CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP")
DOMAINS = (
    "acme.example", "globex.test", "initech.example", "umbrella-corp.test", "hooli.example",
    "piedpiper.test", "vandelay.example", "stark.example", "wayne-enterprises.test",
    "soylent.example", "tyrell.test", "oscorp.example", "dunder-mifflin.test",
    "sterling-cooper.test", "black-mesa.example", "krusty-krab.example",
    "nordlys-analytik.example", "cafe-lumiere.test", "sakura-logistics.example",
    "zenith-bank.test",
)  # fmt: skip
CURATED = (
    ("Zoë Müller", "zoë.müller"),
    ("李雷", "li.lei"),
    ("O'Brien, Siobhán", "siobhan.obrien"),
    ("Дмитрий Соколов", "d.sokolov"),
    ("محمد الفارسي", "m.alfarsi"),
    ("Wells, Jr., Thomas", "tom.wells"),
    ('Siddharth "Sid" Rao', "sid.rao"),
    ("Mary-Kate O'Neill", "mary-kate.o'neill"),
    ("Dvořák, Antonín", "antonin.dvorak"),
    ("Mårten Lindqvist", "marten+plain"),
)
FIRST = (
    "Alice", "Ben", "Carla", "David", "Elena", "Farah", "George", "Hannah", "Ivan", "Julia",
    "Kwame", "Laura", "Mateo", "Nina", "Oscar", "Paula", "Quentin", "Rosa", "Samuel", "Tara",
)  # fmt: skip
LAST = (
    "Anderson", "Bakker", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Hughes",
    "Ito", "Jensen", "Kowalski", "Larsen", "Morales", "Novak", "Okafor", "Patel",
)  # fmt: skip
CITIES = ("Berlin, DE", "São Paulo, BR", "Zürich, CH", "東京, JP", "Austin, US", "Lagos, NG")
DESCRIPTIONS = {
    "login": (
        "Signed in via SSO (Okta) from {city}",
        "Login from new device: Chrome 128 on macOS, IP 203.0.113.{n}",
        "Password login succeeded after {small} failed attempts",
        "Signed in with Google; MFA via authenticator app",
        "Session restored from remember-me cookie",
    ),
    "api_key_created": (
        'Created API key `key_{n:05d}` named "prod, read-only" with scopes read:orders',
        "**API key created**: `key_{n:05d}` (admin:*)",
    ),
    "api_key_revoked": (
        'Key `key_{n:05d}` revoked, reason: "employee offboarding"',
        "API key `key_{n:05d}` revoked: unused for 180 days",
    ),
    "plan_upgraded": (
        "Upgraded starter → growth: needed SSO, audit log and more seats",
        '**Upgrade** to scale; quote: "worth every penny, honestly"',
    ),
    "plan_downgraded": (
        'Downgraded to free; reason given: "budget freeze until Q{small}"',
        "-20% loyalty discount applied by account manager",
    ),
    "invoice_paid": (
        "Invoice in_{n:06d} paid by card ending 4242",
        "Annual invoice in_{n:06d} settled by wire transfer, PO #{n}",
    ),
    "invoice_failed": ("Payment for invoice in_{n:06d} failed: do_not_honor. Retry in 3 days",),
    "order_placed": (
        'Ordered {small} × "Extra storage, 100 GB" (billing address in {city})',
        "Order ord_{n:06d}: 1 × Onboarding workshop, promo ÉTÉ25 🚀",
    ),
    "incident_opened": (
        "**INC-{n:05d}** webhooks delayed by ~15 minutes; status page updated",
        'Customer wrote: "nothing loads, this is urgent"',
    ),
    "incident_resolved": (
        'Resolved INC-{n:05d}: cache key collision ("tenant" vs "tenant_id")',
        "INC-{n:05d} resolved; root cause: expired TLS certificate on the webhook relay",
    ),
    "seat_added": ("Added {small} seats (now {n}), requested by Sales, EMEA",),
    "export_requested": (
        "Export of all invoices as CSV requested; link valid for 7 days",
        "=SUM(A1:A9)",
    ),
}
FOLLOW_UPS = (
    '\nFollow-up: customer replied "thanks, all good".',
    "\n\nInternal note: check with finance before refunding.",
    "\n- step 1: reproduce\n- step 2: patch",
)
SUFFIXES = ("", "", "", "", " ✅", " 🚀", " — 谢谢！", " Merci beaucoup, à bientôt.")
PATHS = {
    "login": "/users/sessions",
    "plan_upgraded": "/billing/subscription",
    "plan_downgraded": "/billing/subscription",
    "invoice_paid": "/invoices/in_{n:06d}",
    "invoice_failed": "/invoices/in_{n:06d}?tab=attempts",
    "order_placed": "/orders/ord_{n:06d}?tab=items&ref=backfill",
    "incident_opened": "/incidents/INC-{n:05d}#timeline",
    "incident_resolved": "/incidents/INC-{n:05d}#timeline",
}
PRICED = frozenset(
    {"plan_upgraded", "plan_downgraded", "invoice_paid", "invoice_failed", "order_placed"}
)


def description_pool(rng: random.Random, per_type: int = POOL) -> dict[str, list[str]]:
    """Pre-built descriptions per event type: ~5% multi-line, ~1% long, ~6% empty."""
    pool: dict[str, list[str]] = {}
    for event_type, forms in DESCRIPTIONS.items():
        texts = []
        for _ in range(per_type):
            text = rng.choice(forms).format(
                n=rng.randrange(1, 99_999), small=rng.randint(2, 9), city=rng.choice(CITIES)
            )
            text += rng.choice(SUFFIXES)
            roll = rng.random()
            if roll < 0.05:
                text += rng.choice(FOLLOW_UPS)
            elif roll < 0.06:
                text += " | " + " ".join(f"log line {k}: ok, 200," for k in range(60))
            elif roll < 0.12:
                text = ""
            texts.append(text)
        pool[event_type] = texts
    return pool


def customers(rng: random.Random, n: int = 5000) -> list[tuple[str, str, str, str]]:
    """(name, email, domain, plan) for n customers, a few with awkward names."""
    out = []
    for i in range(n):
        if i < len(CURATED):
            name, local = CURATED[i]
        else:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            name, local = f"{first} {last}", f"{first.lower()}.{last.lower()}{i}"
        domain = rng.choice(DOMAINS)
        out.append((name, f"{local}@{domain}", domain, rng.choice(PLANS)))
    return out


def timestamp(rng: random.Random, at: datetime) -> str:
    """One instant in one of the sample's ISO 8601 forms (about 10% naive)."""
    roll = rng.random()
    if roll < 0.35:
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if roll < 0.55:
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    if roll < 0.70:
        return at.astimezone(OFFSETS[int(roll * 1000) % 5]).isoformat(timespec="seconds")
    if roll < 0.80:
        return at.astimezone(OFFSETS[5 + int(roll * 1000) % 3]).isoformat(timespec="seconds")
    if roll < 0.90:
        return at.isoformat(timespec="microseconds")
    return at.replace(tzinfo=None).isoformat(sep=" " if roll < 0.95 else "T", timespec="seconds")


OFFSETS = tuple(
    timezone(timedelta(hours=h, minutes=m))
    for h, m in ((1, 0), (2, 0), (5, 30), (9, 0), (10, 0), (-3, 0), (-5, 0), (-8, 0))
)


def generate(path: Path, rows: int) -> float:
    """Write `rows` valid rows to `path`; return the share of multi-line descriptions."""
    rng = random.Random(SEED)
    pool = description_pool(rng)
    people = customers(rng)
    types = [name for name, weight in EVENT_TYPES for _ in range(weight)]
    start = datetime(2023, 1, 1, tzinfo=UTC)
    step = (datetime(2026, 10, 30, tzinfo=UTC) - start) / max(rows, 1)
    multi_line = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        batch: list[tuple[str, ...]] = []
        for i in range(rows):
            n = (i * 48271 + 12345) % 100_000_000  # unique for rows < 10**8
            if i % 40 == 7:
                event_id = f"{n:08d}"  # numeric, with leading zeros: ids are text
            elif i % 50 == 9:
                event_id = str(10**18 + 7 * n)  # above the signed 64-bit range
            else:
                event_id = f"evt_{n:08d}"
            at = start + step * i
            if rng.random() < 0.05:  # out of order, like a real export
                at -= timedelta(hours=rng.randrange(1, 72))
            name, email, domain, plan = people[int(rng.random() ** 2 * len(people))]
            event_type = types[rng.randrange(len(types))]
            amount = currency = ""
            if event_type in PRICED:
                amount = f"{rng.randrange(99, 300_000) / 100:.2f}"
                currency = CURRENCIES[i % len(CURRENCIES)]
            url = ""
            if event_type in PATHS and rng.random() < 0.85:
                url = f"https://admin.{domain}" + PATHS[event_type].format(n=n)
            description = pool[event_type][rng.randrange(POOL)]
            multi_line += "\n" in description
            roll = rng.random()
            actor = (
                email
                if roll < 0.6
                else "system"
                if roll < 0.75
                else f"billing@{domain}"
                if roll < 0.85
                else ""
            )
            batch.append(
                (
                    event_id,
                    timestamp(rng, at),
                    email,
                    name,
                    event_type,
                    plan if rng.random() < 0.7 else "",
                    amount,
                    currency,
                    url,
                    description,
                    actor,
                )
            )
            if len(batch) >= BATCH:
                writer.writerows(batch)
                batch.clear()
        writer.writerows(batch)
    return multi_line / max(rows, 1)


def measure(step: str, csv_path: Path, mapping: Path, results: Path) -> dict[str, Any]:
    """Run one step in a fresh interpreter; its figures are the last stdout line (JSON)."""
    done = subprocess.run(
        [sys.executable, "-c", STEP, step, str(csv_path), str(mapping), str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{step} failed ({done.returncode}):\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    # ru_maxrss is KiB on Linux, bytes on macOS.
    kib = figures["maxrss"] / (1024 if sys.platform == "darwin" else 1)
    figures["peak_mb"] = kib / 1024
    return figures


def line(name: str, rows: int, seconds: float, peak_mb: float) -> str:
    rate = rows / seconds if seconds else 0.0
    return f"{name:<18} {rows:>10,} {seconds:>9.2f} {rate:>11,.0f} {peak_mb:>12.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=GOAL_ROWS, help="rows to generate")
    parser.add_argument("--keep", metavar="DIR", help="write the files here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        csv_path, mapping = folder / "activity.csv", folder / "mapping.toml"
        started = time.perf_counter()
        multi_line = generate(csv_path, args.rows)
        mapping.write_text(MAPPING, encoding="utf-8")
        generated = time.perf_counter() - started
        size_mb = csv_path.stat().st_size / 2**20
        print(
            f"{args.rows:,} rows x {len(COLUMNS)} columns, {size_mb:.1f} MB CSV "
            f"({100 * multi_line:.1f}% multi-line descriptions), generated in {generated:.1f}s"
        )
        base = measure("pandas", csv_path, mapping, folder / "results")
        ours = measure("validate", csv_path, mapping, folder / "results")

    print(f"{'step':<18} {'rows':>10} {'seconds':>9} {'rows/s':>11} {'peak RSS MB':>12}")
    print(line("pandas.read_csv", base["rows"], base["seconds"], base["peak_mb"]))
    print(line("backfill validate", ours["rows"], ours["seconds"], ours["peak_mb"]))
    print(
        f"validate counts    rows read {ours['rows']:,}, valid {ours['valid']:,}, "
        f"invalid {ours['invalid']:,}, repeated ids {ours['duplicates']:,}"
    )
    seconds, peak_mb = ours["seconds"], ours["peak_mb"]
    print(
        f"ratio validate / pandas: time {seconds / base['seconds']:.2f}x, "
        f"peak RSS {peak_mb / base['peak_mb']:.2f}x"
    )
    at_goal = seconds * GOAL_ROWS / args.rows if args.rows else 0.0
    projected = "" if args.rows == GOAL_ROWS else f", projected to {GOAL_ROWS:,} rows"
    time_ok, memory_ok = at_goal < GOAL_SECONDS, peak_mb < GOAL_MB
    print(
        f"goals for {GOAL_ROWS:,} rows: under {GOAL_SECONDS:g} s and under {GOAL_MB:g} MB peak: "
        f"time {'met' if time_ok else 'NOT met'} ({at_goal:.1f} s{projected}), "
        f"memory {'met' if memory_ok else 'NOT met'} ({peak_mb:.1f} MB)"
    )
    all_valid = ours["rows"] == ours["valid"] == args.rows
    if not all_valid or ours["invalid"] or ours["duplicates"]:
        for code, examples in ours["examples"].items():
            print(f"  {code}: {ours['by_code'][code]}")
            for example in examples:
                print(f"    {example}")
        raise SystemExit("FAIL: validate did not report every generated row as valid")


if __name__ == "__main__":
    main()

"""Time and peak memory of `backfill validate` on a big CSV, next to a bare pandas.read_csv.

Writes the deterministic rows benchmarks/sources.py generates (shaped like
data/sample_activity.csv: the same 11 columns, quoted commas and double quotes, non-ASCII
text, a few % multi-line descriptions, several ISO 8601 timestamp forms) as one CSV,
and a mapping with five components (text and link_button with `when`, badge,
plain_text, copy_button). Then it measures, each step in a fresh Python
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sources import COLUMNS, chunks  # noqa: E402  (the sibling benchmark's generator)

ROOT = Path(__file__).resolve().parent.parent
GOAL_ROWS = 1_000_000
GOAL_SECONDS = 30.0
GOAL_MB = 300.0


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
    from backfill.config import resolve
    from backfill.pipeline import validate
out = {}
start = time.perf_counter()
if step == "pandas":
    frame = pandas.read_csv(path, dtype=str, keep_default_na=False)
    out["rows"] = len(frame)
    del frame
else:
    summary = validate(resolve(sources=[path], mapping=mapping, results_dir=results))
    out.update(rows=summary.rows_read, valid=summary.valid, invalid=summary.invalid,
               duplicates=summary.duplicates, by_code=dict(summary.by_code),
               examples=dict(summary.examples))
out["seconds"] = time.perf_counter() - start
out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def generate(path: Path, rows: int) -> float:
    """Write `rows` valid rows to `path` (benchmarks/sources.py's generator, the same rows
    its other formats get); return the share of multi-line descriptions."""
    multi_line = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for cols, _ in chunks(rows):
            multi_line += sum("\n" in text for text in cols["description"])
            writer.writerows(zip(*(cols[name] for name in COLUMNS), strict=True))
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
        # In a child: this process must stay small, as the steps it starts inherit its
        # peak RSS (Linux keeps ru_maxrss across fork and exec).
        made = subprocess.run(
            [sys.executable, __file__, "_generate", str(csv_path), str(args.rows)],
            capture_output=True,
            text=True,
            check=True,
        )
        multi_line = float(made.stdout.strip())
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
    if sys.argv[1:2] == ["_generate"]:
        print(generate(Path(sys.argv[2]), int(sys.argv[3])))
    else:
        main()

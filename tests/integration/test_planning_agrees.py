"""`run` (as a dry run), `validate` and `status`/`export` plan through one loop: fed the
same source and ledger, they agree row by row on what is left, invalid, duplicate and
changed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from backfill import export, run, status, validate
from backfill.fakeplain import FakePlain
from tests.conftest import MAPPING, SAMPLE, settings_for

ROWS = 300
DELIVERED_FIRST = 120


def _source(tmp_path: Path) -> str:
    """The sample's first rows; every 10th timestamp unreadable; two rows repeated later."""
    path = tmp_path / "activity.csv"
    with open(SAMPLE, encoding="utf-8", newline="") as src:
        reader = csv.DictReader(src)
        rows = [row for _, row in zip(range(ROWS), reader, strict=False)]
        fields = reader.fieldnames or []
    for n, row in enumerate(rows):
        if n % 10 == 9:
            row["occurred_at"] = "not a time"
    # Repeats of an event id: one among the rows delivered first, one among the rest.
    repeats = [dict(rows[3], description="again"), dict(rows[200], description="again")]
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows + repeats)
    return str(path)


def _changed_mapping(tmp_path: Path) -> str:
    """The same job (same externalId rule) with another title: delivered payloads change."""
    text = Path(MAPPING).read_text(encoding="utf-8")
    title = "title = \"{{ event_type | replace('_', ' ') | capitalize }}\""
    assert title in text
    path = tmp_path / "mapping.toml"
    path.write_text(text.replace(title, 'title = "Backfilled: {{ event_type }}"'), "utf-8")
    return str(path)


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _places(rows: list[dict[str, str]], status: str) -> set[tuple[str, str]]:
    return {(row["source"], row["position"]) for row in rows if row["status"] == status}


def test_dry_run_validate_and_status_agree_row_by_row(fake_plain: FakePlain, tmp_path):
    source = _source(tmp_path)
    first = run(settings_for(fake_plain, tmp_path, sources=(source,), limit=DELIVERED_FIRST))
    assert first.counts["delivered"] > 0 and first.counts["invalid"] > 0

    settings = settings_for(
        fake_plain, tmp_path, sources=(source,), mapping=_changed_mapping(tmp_path)
    )
    dry = run(
        settings_for(
            fake_plain, tmp_path, sources=(source,), mapping=settings.mapping, dry_run=True
        )
    )
    dry_rows = _read(Path(dry.results_dir) / "results.csv")
    would_send = {row["external_id"] for row in _read(Path(dry.results_dir) / "would_send.csv")}
    checked = validate(settings)
    invalid_csv = _read(Path(checked.invalid_csv))
    job = status(settings)
    exported = export(settings, str(tmp_path / "export"))
    left = {row["external_id"] for row in _read(tmp_path / "export" / "left.csv")}
    changed = {row["external_id"] for row in _read(tmp_path / "export" / "changed.csv")}

    # Left to send: every row not delivered yet, and the same rows for all.
    assert len(would_send) == ROWS - DELIVERED_FIRST - (ROWS - DELIVERED_FIRST) // 10
    assert would_send == left
    assert job.pending is not None and job.pending.to_send == len(left)
    # Invalid: the same rows, found by the dry run and by validate.
    invalid = _places(dry_rows, "invalid")
    assert len(invalid) == ROWS // 10
    assert invalid == _places(invalid_csv, "invalid")
    assert checked.invalid == job.pending.invalid == len(invalid)
    # Duplicates: both repeats, wherever the row they repeat stands.
    duplicates = _places(dry_rows, "duplicate_in_source")
    last_two = sorted(dry_rows, key=lambda row: int(row["position"]))[-2:]
    assert duplicates == {(row["source"], row["position"]) for row in last_two}
    assert checked.duplicates == job.pending.duplicates == len(duplicates)
    # Changed: every delivered row (the title changed), the same ones for all.
    delivered = first.counts["delivered"]
    assert dry.changed_payloads == job.pending.changed == len(changed) == delivered
    assert changed == {
        row["external_id"]
        for row in _read(Path(first.results_dir) / "results.csv")
        if row["status"] == "delivered"
    }
    assert json.loads((Path(dry.results_dir) / "summary.json").read_text())["changed_payloads"] == (
        delivered
    )
    assert exported.rows > 0

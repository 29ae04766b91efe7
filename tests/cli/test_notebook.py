"""notebooks/inspect_results.ipynb, executed headless on the result files of real runs."""

from __future__ import annotations

import csv
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from backfill.fakeplain import FakePlain
from tests.conftest import ROOT, clean_env, cli, run_args, sample_with_bad_rows

NOTEBOOK = ROOT / "notebooks" / "inspect_results.ipynb"
ENV = clean_env(PLAIN_API_KEY="test-key")
FAST = ("--rate", "2000/s")
#: A customer of the sample that the fake Plain does not know: its events are rejected.
UNKNOWN = "yusuf@globex.test"
#: The cells that draw a chart when they have data.
CHARTS = ("status-counts", "error-codes", "event-time", "delivery-rate", "slowest")


@pytest.fixture(autouse=True)
def jupyter_home(tmp_path, monkeypatch):
    """Jupyter's and IPython's own folders in tmp_path; figures drawn off screen."""
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR"):
        folder = tmp_path / "home" / name.lower()
        folder.mkdir(parents=True)
        monkeypatch.setenv(name, str(folder))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def load(notebook: Path) -> Any:
    return nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]


def execute(results: Path, tmp_path: Path, monkeypatch, notebook: Path = NOTEBOOK) -> Any:
    """The notebook run by a fresh python3 kernel on `results`; a failing cell raises."""
    monkeypatch.setenv("BACKFILL_RESULTS", str(results))
    nb = load(notebook)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return nb


def cell(nb: Any, tag: str) -> Any:
    (found,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return found


def text(nb: Any, tag: str) -> str:
    """What a cell printed and the plain-text form of what it displayed."""
    parts = []
    for output in cell(nb, tag).outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def images(nb: Any, tag: str) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell(nb, tag).outputs)


def status_counts(nb: Any) -> tuple[dict[str, int], int]:
    """The status-count cell's lines `<status> <count>`, and its total."""
    lines = re.findall(r"^(\w+) +(\d+)$", text(nb, "status-counts"), re.MULTILINE)
    counts = {status: int(n) for status, n in lines}
    return counts, counts.pop("total")


def stderr(nb: Any) -> list[str]:
    """Anything a cell wrote to stderr (warnings from pandas or matplotlib)."""
    return [
        o.text
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stderr"
    ]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def summary(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "summary.json").read_text(encoding="utf-8")))


def test_the_notebook_in_the_repo_is_stored_without_outputs():
    nb = load(NOTEBOOK)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert 'RESULTS = os.environ.get("BACKFILL_RESULTS", "results")' in code[0].source
    assert nb.cells[0].cell_type == "markdown"
    assert "BACKFILL_RESULTS=results/<run_id> jupyter lab" in nb.cells[0].source


def test_the_notebook_runs_on_a_run_with_invalid_and_rejected_rows(tmp_path, monkeypatch):
    source = sample_with_bad_rows(tmp_path, 20)
    with FakePlain(rate_limit=100_000, unknown_customers=[UNKNOWN]) as fake:
        run = cli(*run_args(fake, tmp_path, "--limit", "240", *FAST, source=source), env=ENV)
    assert run.returncode == 1, run.stderr  # finished, with failures
    (folder,) = (tmp_path / "results").iterdir()
    counts = summary(folder)["counts"]
    assert counts["invalid"] == 12 and counts["rejected"] > 0 and counts["delivered"] > 200

    nb = execute(folder, tmp_path, monkeypatch)

    assert stderr(nb) == []
    shown, total = status_counts(nb)
    assert shown == counts
    assert shown == Counter(row["status"] for row in rows(folder / "results.csv"))
    assert total == 240
    codes = text(nb, "error-codes")
    assert "bad_timestamp" in codes and "not an ISO 8601 timestamp: 'not a time'" in codes
    assert "not_found" in codes and "Customer not found" in codes
    answered = counts["delivered"] + counts["rejected"]
    assert f"answered: {answered} events in " in text(nb, "delivery-rate")
    assert "rows without an event timestamp: 12" in text(nb, "event-time")
    failed = rows(folder / "failed.csv")
    listing = text(nb, "failed-rows")
    assert f"failed rows: {len(failed)} (" in listing
    assert len(failed) == counts["invalid"] + counts["rejected"]
    assert all(row["external_id"] in listing for row in failed)
    assert all(images(nb, tag) == 1 for tag in CHARTS)


def test_a_folder_of_runs_reads_every_shard_of_the_newest_job(tmp_path, monkeypatch):
    results = tmp_path / "results"
    with FakePlain(rate_limit=100_000) as fake:
        older = cli(*run_args(fake, tmp_path, "--limit", "60", *FAST), env=ENV)
        assert older.returncode == 0, older.stderr
        for shard in ("0/2", "1/2"):
            run = cli(*run_args(fake, tmp_path, "--limit", "200", "--shard", shard, *FAST), env=ENV)
            assert run.returncode == 0, run.stderr
        time.sleep(1.1)  # a run id is its start second: the dry run is the newest folder
        dry = cli(*run_args(fake, tmp_path, "--limit", "200", "--dry-run"), env=ENV)
        assert dry.returncode == 0, dry.stderr
    names = sorted(p.name for p in results.iterdir())
    assert len(names) == 4 and names[-1].endswith("-dry-run")
    # Shard folders in shard order (two runs started in one second sort by their suffix).
    shards = sorted((results / n for n in names if "-shard-" in n), key=lambda p: p.name[-12:])
    assert [p.name.split("-", 2)[-1] for p in shards] == ["shard-0-of-2", "shard-1-of-2"]

    nb = execute(results, tmp_path, monkeypatch)

    assert stderr(nb) == []
    listed = re.findall(r"^  (\S+)$", text(nb, "folders"), re.MULTILINE)
    assert listed == [p.name for p in shards]
    shown, total = status_counts(nb)
    assert total == sum(len(rows(p / "results.csv")) for p in shards) == 200
    assert total == sum(summary(p)["rows_read"] for p in shards)
    assert shown == dict(sum((Counter(summary(p)["counts"]) for p in shards), Counter()))
    sent = sum(row["answered_at"] != "" for p in shards for row in rows(p / "results.csv"))
    assert 0 < sent < 200  # the older run settled some of these rows
    assert f"answered: {sent} events in " in text(nb, "delivery-rate")
    assert text(nb, "failed-rows").strip() == "no failed rows"
    assert text(nb, "error-codes").strip() == "no error codes"


def test_a_folder_without_results_fails_on_the_folders_cell(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CellExecutionError, match="no results.csv in it nor in any run folder"):
        execute(tmp_path / "empty", tmp_path, monkeypatch)

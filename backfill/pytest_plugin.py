"""A pytest fixture for testing a backfill against the fake Plain server.

Installed with the package as a pytest plugin, so a project's own tests can write::

    def test_my_mapping(fake_plain, tmp_path):
        summary = backfill.run(backfill.resolve(
            sources=("history.csv",), mapping="mapping.toml", api_url=fake_plain.url,
            api_key="test-key", ledger=str(tmp_path / "l.sqlite"), rate="100/s"))
        assert fake_plain.stats().creations  # what Plain would have received
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backfill.fakeplain import FakePlain


@pytest.fixture
def fake_plain() -> Iterator[FakePlain]:
    """A fake Plain on 127.0.0.1 that accepts the key `test-key`, with a budget no test meets."""
    fake = FakePlain(rate_limit=100_000, window_s=60.0).start()
    try:
        yield fake
    finally:
        fake.stop()

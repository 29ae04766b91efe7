import pytest

from backfill.config import UNSET, default_ledger, mask_url, resolve
from backfill.errors import ConfigError


def test_flag_beats_environment_beats_default():
    env = {"BACKFILL_CONCURRENCY": "9", "BACKFILL_RATE": "10/s", "PLAIN_API_KEY": "k"}
    settings = resolve(sources=("a",), mapping="m", env=env, concurrency=3, rate=UNSET)
    assert settings.concurrency == 3
    assert settings.rate == "10/s"
    assert settings.api_key == "k"
    assert settings.max_retries == 5


def test_trust_env_false_ignores_the_environment():
    settings = resolve(sources=("a",), mapping="m", env={"PLAIN_API_KEY": "k"}, trust_env=False)
    assert settings.api_key == ""


def test_the_key_never_shows_in_repr_or_recorded_options():
    settings = resolve(sources=("a",), mapping="m", env={"PLAIN_API_KEY": "sekrit-canary"})
    assert "sekrit-canary" not in repr(settings)
    assert "sekrit-canary" not in str(settings.public())


@pytest.mark.parametrize(
    "given",
    [
        {"rate": "lots"},
        {"concurrency": 0},
        {"max_retries": -1},
        {"limit": -5},
        {"api_url": "ftp://x"},
    ],
)
def test_bad_values_are_config_errors(given):
    with pytest.raises(ConfigError):
        resolve(sources=("a",), mapping="m", env={}, **given)


def test_bad_environment_values_name_the_variable():
    with pytest.raises(ConfigError, match="BACKFILL_CONCURRENCY"):
        resolve(sources=("a",), mapping="m", env={"BACKFILL_CONCURRENCY": "many"})


def test_default_ledger_depends_on_the_job_not_the_results_dir():
    assert default_ledger("acme") == ".backfill/acme.sqlite"


def test_mask_url():
    assert mask_url("postgresql://u:pw@host/db") == "postgresql://u:***@host/db"

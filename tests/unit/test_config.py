import re

import pytest

from backfill.config import UNSET, FailureLimit, LedgerTarget, Rate, resolve
from backfill.errors import ConfigError
from backfill.urls import display_name, is_url, mask_url


def test_flag_beats_environment_beats_default():
    env = {"BACKFILL_CONCURRENCY": "9", "BACKFILL_RATE": "10/s", "PLAIN_API_KEY": "k"}
    settings = resolve(sources=("a",), mapping="m", env=env, concurrency=3, rate=UNSET)
    assert settings.concurrency == 3
    assert settings.rate == Rate(10.0, text="10/s")
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
        {"api_url": "http://127.0.0.1:99999/graphql"},
    ],
)
def test_bad_values_are_config_errors(given):
    with pytest.raises(ConfigError):
        resolve(sources=("a",), mapping="m", env={}, **given)


def test_bad_environment_values_name_the_variable():
    with pytest.raises(ConfigError, match="BACKFILL_CONCURRENCY"):
        resolve(sources=("a",), mapping="m", env={"BACKFILL_CONCURRENCY": "many"})


def test_default_ledger_follows_the_mapping_file_not_the_results_dir():
    def default(mapping):
        return resolve(mapping=mapping, env={}, results_dir="elsewhere").ledger.location

    assert default("jobs/orders/mapping.toml") == "jobs/orders/.backfill/mapping.sqlite"
    assert default("jobs/logins/mapping.toml") == "jobs/logins/.backfill/mapping.sqlite"
    assert default("acme.toml") == ".backfill/acme.sqlite"


@pytest.mark.parametrize(
    ("given", "kind", "location"),
    [
        ("l.sqlite", "sqlite", "l.sqlite"),
        ("sqlite:///jobs/l.sqlite", "sqlite", "jobs/l.sqlite"),
        ("sqlite:////abs/l.sqlite", "sqlite", "/abs/l.sqlite"),
        ("postgresql+psycopg://u:pw@h/db", "postgres", "postgresql+psycopg://u:pw@h/db"),
        ("postgres://h/db", "postgres", "postgres://h/db"),
    ],
)
def test_a_ledger_is_a_sqlite_file_or_a_postgres_url(given, kind, location):
    assert LedgerTarget.parse(given) == LedgerTarget(kind, location)
    assert "pw" not in repr(resolve(mapping="m", env={}, ledger=given))


def test_a_ledger_url_of_another_database_is_refused_without_its_password():
    with pytest.raises(ConfigError, match="--ledger") as err:
        resolve(mapping="m", env={}, ledger="mysql://u:sekrit-canary@h/db")
    assert "sekrit-canary" not in str(err.value)


def test_every_run_option_has_its_environment_variable():
    env = {
        "BACKFILL_LEDGER": "l.sqlite",
        "BACKFILL_RESULTS_DIR": "out",
        "BACKFILL_RATE": "600/min",
        "BACKFILL_CONCURRENCY": "2",
        "BACKFILL_MAX_RETRIES": "1",
        "BACKFILL_TIMEOUT": "5",
        "BACKFILL_LIMIT": "10",
        "BACKFILL_EXPECT_WORKSPACE": "w_1",
        "BACKFILL_ALLOW_ID_CHANGE": "true",
        "PLAIN_API_URL": "http://127.0.0.1:1/graphql/v1",
    }
    s = resolve(sources=("a",), mapping="m", env=env)
    assert (s.ledger.location, s.results_dir, str(s.rate), s.concurrency) == (
        "l.sqlite",
        "out",
        "600/min",
        2,
    )
    assert (s.max_retries, s.timeout_s, s.limit) == (1, 5.0, 10)
    assert (s.expect_workspace, s.allow_id_change) == ("w_1", True)
    assert s.api_url == "http://127.0.0.1:1/graphql/v1"


def test_a_source_given_twice_is_refused(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="given twice"):
        resolve(sources=(str(path), str(tmp_path / "." / "a.csv")), mapping="m", env={})


def test_mask_url():
    assert mask_url("postgresql://u:pw@host/db") == "postgresql://u:***@host/db"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        pytest.param("data/a.csv", "data/a.csv", id="local"),
        pytest.param("C:\\data\\a?.csv", "C:\\data\\a?.csv", id="local-windows"),
        pytest.param("s3://bucket/unload/*.csv.gz", "s3://bucket/unload/*.csv.gz", id="s3"),
        pytest.param(
            "https://host/a.csv.gz?X-Amz-Signature=abc&X-Amz-Expires=60",
            "https://host/a.csv.gz?X-Amz-Signature=***&X-Amz-Expires=***",
            id="presigned",
        ),
        pytest.param(
            "https://user:pw@host:8443/a.csv?sv=1&sig=s%2Fx",
            "https://host:8443/a.csv?sv=***&sig=***",
            id="userinfo-and-sas",
        ),
        pytest.param("https://token@host/a.csv", "https://host/a.csv", id="token-as-user"),
        pytest.param(
            "abfs://box@acct.dfs.core.windows.net/a/",
            "abfs://box@acct.dfs.core.windows.net/a/",
            id="azure-container-stays",
        ),
        pytest.param("s3://key:secret@bucket/a.csv", "s3://bucket/a.csv", id="s3-password"),
        pytest.param("https://host/a.csv?token#frag", "https://host/a.csv?***#***", id="bare"),
        pytest.param("https://[::1/a.csv", "https://(a URL that cannot be parsed)", id="broken"),
    ],
)
def test_display_name_hides_credentials_and_query_values(source, shown):
    assert display_name(source) == shown
    assert is_url(source) == ("://" in source)


def test_urls_with_secrets_are_recorded_redacted_and_a_repeated_url_is_refused():
    url = "https://host/a.csv.gz?sig=sekrit-canary"
    settings = resolve(sources=(url, "s3://b/x.csv"), mapping="m", env={})
    assert "sekrit-canary" not in str(settings.public())
    assert settings.public()["sources"] == ["https://host/a.csv.gz?sig=***", "s3://b/x.csv"]
    with pytest.raises(ConfigError, match=r"source https://host/a.csv.gz\?sig=\*\*\* is given"):
        resolve(sources=(url, url), mapping="m", env={})


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"BACKFILL_LIMIT": "abc"}, "BACKFILL_LIMIT='abc' is not a whole number"),
        ({"BACKFILL_TIMEOUT": "soon"}, "BACKFILL_TIMEOUT='soon' is not a number"),
        ({"BACKFILL_ALLOW_ID_CHANGE": "ture"}, "is not true or false"),
        ({"BACKFILL_CONCURRENCY": "0"}, "--concurrency (BACKFILL_CONCURRENCY) must be at least 1"),
    ],
)
def test_environment_errors_name_the_variable_in_plain_words(env, fragment):
    with pytest.raises(ConfigError) as err:
        resolve(sources=("a",), mapping="m", env=env)
    assert fragment in str(err.value)


def test_delivery_options_parse_and_refuse_nonsense_naming_the_option():
    settings = resolve(
        sources=("a",),
        mapping="m",
        env={"BACKFILL_OUTAGE_LIMIT": "90s", "BACKFILL_MAX_FAILURES": "2%"},
        events_per_request=25,
        headroom="20%",
        rate="auto",
    )
    assert settings.outage_limit_s == 90.0 and settings.events_per_request == 25
    assert settings.rate == Rate(7.5, auto=True, headroom=0.2, text="auto")
    assert settings.max_failures is not None and settings.max_failures.share == 0.02
    bad = [
        ({"events_per_request": 0}, "--events-per-request (BACKFILL_EVENTS_PER_REQUEST)"),
        ({"events_per_request": 101}, "from 1 to 100"),
        ({"outage_limit": "soon"}, "--outage-limit"),
        ({"max_failures": "lots"}, "--max-failures"),
        ({"max_failures": "100%"}, "--max-failures"),
        ({"headroom": "95%"}, "--headroom"),
    ]
    for given, words in bad:
        with pytest.raises(ConfigError, match=re.escape(words)):
            resolve(sources=("a",), mapping="m", env={}, **given)


def test_failure_limits():
    count = FailureLimit.parse("3")
    assert not count.exceeded(failed=3, answered=5, read=5)
    assert count.exceeded(failed=4, answered=5, read=5)
    share = FailureLimit.parse("10%")
    # Judged only after 100 answers, and against every row read so far.
    assert not share.exceeded(failed=50, answered=99, read=100)
    assert not share.exceeded(failed=50, answered=100, read=1000)
    assert share.exceeded(failed=101, answered=100, read=1000)
    assert str(share) == "10.0%" and str(count) == "3 rows"


def test_what_a_run_records_reads_back_as_the_same_typed_values():
    given = {
        "rate": "7.5/s",
        "headroom": "12.5%",
        "shard": "2/5",
        "since": "2024-01-01",
        "until": "2024-03-01T12:00:00+02:00",
        "max_failures": "2.5%",
        "outage_limit": "90s",
        "timeout_s": 12.5,
    }
    settings = resolve(sources=("a",), mapping="m", env={}, **given)
    recorded = settings.public()
    again = resolve(
        sources=("a",),
        mapping="m",
        env={},
        **{name: recorded[name] for name in given},
    )
    for name in ("rate", "shard", "window", "max_failures", "outage_limit_s", "timeout_s"):
        assert getattr(again, name) == getattr(settings, name), name
    assert again.rate.share == 0.2 and again.rate.headroom == 0.125

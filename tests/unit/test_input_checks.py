"""What a request is checked against before anything is queued: target names, source URLs
and named sources, profiles and overrides, table names; and what secrets look like after
redaction. Messages say what is wrong and what to do."""

from __future__ import annotations

import pickle

import pytest

from worker.core import profiles
from worker.core.errors import InputError, LiteshiftError, SourceUnavailable, VolumeFull
from worker.core.redact import redact, redact_value, remember
from worker.jobs.plan import choose_tables, space_needed
from worker.sources.url import describe_source, parse_source_url, resolve_source
from worker.state.targets import check_target, published_path


@pytest.mark.parametrize("name", ["app", "App_2", "x" * 64])
def test_target_names_of_letters_digits_and_underscores_are_accepted(name, tmp_path):
    assert check_target(name) == name
    assert published_path(tmp_path, name) == tmp_path / f"{name}.db"


@pytest.mark.parametrize("name", ["", "../x", "a/b", "a.b", "x" * 65, "a b", "é"])
def test_target_names_that_could_escape_or_surprise_are_refused(name):
    with pytest.raises(InputError, match="use 1 to 64 letters, digits or underscores"):
        check_target(name)


def test_a_source_url_is_parsed_and_shown_without_its_password():
    source = parse_source_url("postgresql://app:s3cret@db.example:5433/appdb?sslmode=require")

    assert (source.kind, source.host, source.port, source.database) == \
        ("postgres", "db.example", 5433, "appdb")
    assert source.redacted == "postgresql://app:***@db.example:5433/appdb?sslmode=require"


@pytest.mark.parametrize(("url", "words"), [
    ("http://example.com/db", "unsupported source URL scheme 'http'"),
    ("mysql+pymysql://u@h/d", "unsupported source URL scheme 'mysql+pymysql'"),
    ("postgresql://u@h", "names no database"),
    ("not a url", "source must be a URL"),
])
def test_a_bad_source_url_says_what_a_good_one_looks_like(url, words):
    with pytest.raises(InputError) as refused:
        parse_source_url(url)
    assert words in str(refused.value)


@pytest.mark.parametrize("url", ["mysql://u:p@db.example:3307/app", "mariadb://u@db/app",
                                 "MySQL://u@db/app"])
def test_mysql_and_mariadb_urls_are_one_kind(url):
    source = parse_source_url(url)
    assert source.kind == "mysql" and source.database == "app"
    assert source.port == (3307 if ":3307" in url else 3306)


def test_a_named_source_resolves_to_its_url_and_is_described_by_its_name():
    url = "postgresql://a:pw@h/d"

    assert resolve_source({"PROD": url}, "PROD") == url
    assert describe_source("PROD", url) == "PROD (postgresql://a:***@h/d)"
    assert describe_source(url, url) == "postgresql://a:***@h/d"
    with pytest.raises(InputError, match="set LITESHIFT_SOURCE_NOPE"):
        resolve_source({}, "NOPE")


@pytest.mark.parametrize(("options", "words"), [
    ({"profile": "x"}, "unknown profile 'x': choose one of ecto, rails, django, plain"),
    ({"column_types": {"a": "text"}}, "must be 'table.column'"),
    ({"column_types": {"a.b": "nope"}}, "is not an override; choose one of"),
    ({"profile": "django", "exact_decimals": True}, "cannot be used with the django profile"),
])
def test_unknown_profiles_and_overrides_are_refused(options, words):
    with pytest.raises(InputError, match=words):
        profiles.check_options(options)


def test_a_column_context_carries_the_profile_options_and_that_columns_override():
    ctx = profiles.context_for({"profile": "rails", "utc_timestamps": True,
                                "column_types": {"t.c": "json"}}, "t", "c")

    assert (ctx.profile, ctx.utc_timestamps, ctx.override) == ("rails", True, "json")
    assert profiles.context_for(None, "t", "c") == profiles.ColumnContext()


def test_tables_are_chosen_by_name_and_unknown_names_refused():
    assert choose_tables(["a", "b", "c"], None, ["b"]) == ["a", "c"]
    assert choose_tables(["a", "b", "c"], ["c", "a"], ["a"]) == ["c"]
    with pytest.raises(InputError, match="unknown table.*'z'; the source has: a"):
        choose_tables(["a"], ["z"], [])


def test_a_job_asks_for_twice_the_source_size_plus_slack():
    assert space_needed(0) == 64 * 1024 * 1024
    assert space_needed(1000) == 2000 + 64 * 1024 * 1024


def test_passwords_are_redacted_in_urls_keywords_and_wherever_they_were_seen():
    remember("hunter22")

    assert redact("connect postgresql://u:pw@h/d failed; password=abc def") == \
        "connect postgresql://u:***@h/d failed; password=*** def"
    assert redact("auth failed (hunter22)") == "auth failed (***)"
    assert redact_value({"e": ["mysql://r:x@h/d", 3], "n": None}) == \
        {"e": ["mysql://r:***@h/d", 3], "n": None}


def test_errors_keep_their_class_context_and_retry_marker_through_pickling():
    error = pickle.loads(pickle.dumps(SourceUnavailable("cut", job_id="j", table="t")))

    assert (type(error), str(error), error.job_id, error.table) == \
        (SourceUnavailable, "cut", "j", "t")
    assert error.transient and not VolumeFull("full").transient
    assert isinstance(error, LiteshiftError)

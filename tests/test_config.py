"""Configuration: defaults, YAML merging, validation errors that name the key, DSN resolution."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memoric.config import (
    DEFAULTS,
    ENV_APP_MIGRATIONS,
    ENV_DATABASE_URL,
    load_config,
    resolve_app_dir,
    resolve_dsn,
    tier_names,
)
from memoric.errors import ConfigError
from tests.helpers.odd_paths import BrokenPath, BytesPath


def write(tmp_path, text: str):
    path = tmp_path / "memoric.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid_and_complete():
    config = load_config()
    assert tier_names(config) == ["short_term", "mid_term", "long_term"]
    assert config["tiers"][2] == {"name": "long_term", "expire_after_days": None, "trim_chars": None}
    assert config["scoring"] == DEFAULTS["scoring"]
    assert config["summarization"] == {"enabled": True, "min_records": 10, "max_chars": 1000}


def test_yaml_merges_per_section_over_defaults(tmp_path):
    path = write(tmp_path, "scoring: {recency: 0.1}\nsummarization:\n  min_records: 3\n")
    config = load_config(path)
    assert config["scoring"] == {
        "importance": 0.5,
        "recency": 0.1,
        "thread": 0.2,
        "decay_days": 60,
        "relevance": 0.7,
        "bm25_k1": 1.2,
        "bm25_b": 0.75,
    }
    assert config["summarization"] == {"enabled": True, "min_records": 3, "max_chars": 1000}
    assert tier_names(config) == ["short_term", "mid_term", "long_term"]


def test_config_dict_overrides_yaml_and_tiers_replace_as_a_whole(tmp_path):
    path = write(tmp_path, "scoring: {recency: 0.1}\ntiers: [{name: a, expire_after_days: 1}, {name: b}]\n")
    config = load_config(path, {"scoring": {"thread": 0.3}, "tiers": [{"name": "only"}]})
    assert config["scoring"]["recency"] == 0.1
    assert config["scoring"]["thread"] == 0.3
    assert config["tiers"] == [{"name": "only", "expire_after_days": None, "trim_chars": None}]


def test_empty_yaml_file_means_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == load_config()


def test_loading_does_not_mutate_the_callers_dict_or_the_defaults():
    data = {"tiers": [{"name": "a", "expire_after_days": 1}, {"name": "b"}]}
    load_config(data=data)
    assert data == {"tiers": [{"name": "a", "expire_after_days": 1}, {"name": "b"}]}
    assert load_config()["tiers"][0] == {"name": "short_term", "expire_after_days": 7, "trim_chars": None}


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"sorting": {}}, "'sorting'"),
        ({"scoring": {"importance": 0.5, "speed": 1}}, "scoring.speed"),
        ({"database": {"url": "x"}}, "database.url"),
        ({"tiers": [{"name": "a", "ttl": 3}]}, "tiers[0].ttl"),
        ({"scoring": {"importance": "high"}}, "scoring.importance"),
        ({"scoring": {"recency": True}}, "scoring.recency"),
        ({"scoring": {"thread": None}}, "scoring.thread"),
        ({"scoring": {"thread": float("nan")}}, "scoring.thread"),
        ({"scoring": {"importance": -0.1}}, "scoring.importance"),
        ({"scoring": {"importance": 0.9, "recency": 0.9}}, "add up to at most 1"),
        ({"scoring": {"decay_days": 0}}, "scoring.decay_days"),
        ({"scoring": {"decay_days": "60"}}, "scoring.decay_days"),
        ({"tiers": []}, "tiers must not be empty"),
        ({"tiers": [{"name": "a"}, {"name": "a"}]}, "tiers[1].name 'a' is a duplicate"),
        ({"tiers": [{"name": ""}]}, "tiers[0].name"),
        ({"tiers": [{"name": "a\x00b"}]}, "tiers[0].name contains a NUL character"),
        ({"tiers": [{"name": "a"}, {"name": "x\ud800"}]}, "tiers[1].name is not valid Unicode"),
        ({"tiers": [{"name": "x" * 65}]}, "tiers[0].name must be at most 64 characters"),
        ({"tiers": [{"expire_after_days": 3}]}, "tiers[0].name"),
        ({"tiers": "short_term"}, "tiers must be a list"),
        ({"tiers": ["short_term"]}, "tiers[0] must be a mapping"),
        ({"tiers": [{"name": "a", "expire_after_days": "x"}, {"name": "b"}]}, "tiers[0].expire_after_days"),
        ({"tiers": [{"name": "a", "expire_after_days": 3}]}, "tiers[0].expire_after_days is set on the last"),
        ({"tiers": [{"name": "a", "trim_chars": 1}]}, "tiers[0].trim_chars"),
        ({"tiers": [{"name": "a", "trim_chars": 10.5}]}, "tiers[0].trim_chars"),
        ({"summarization": {"enabled": "yes"}}, "summarization.enabled"),
        ({"summarization": {"min_records": 0}}, "summarization.min_records"),
        ({"summarization": {"max_chars": 2.5}}, "summarization.max_chars"),
        ({"clustering": {"min_size": 0}}, "clustering.min_size"),
        ({"clustering": [1]}, "clustering must be a mapping"),
        ({"database": {"dsn": 5}}, "database.dsn"),
        ({"policies": {"batch_size": 0}}, "policies.batch_size"),
        ({"policies": {"lock_timeout": "soon"}}, "policies.lock_timeout"),
        ({"migrations": {"app_dir": 5}}, "app_dir must be a directory path, got a value of type int"),
        ({"migrations": {"app_dir": ""}}, "migrations.app_dir must be a directory path, got ''"),
        ({"migrations": {"app_dir": ["a"]}}, "app_dir must be a directory path, got a value of type list"),
        ({"migrations": {"app_dir": "a\0b"}}, "migrations.app_dir"),
        ({"migrations": {"dir": "a"}}, "unknown config key 'migrations.dir' (known: app_dir)"),
        ({"migrations": "a"}, "migrations must be a mapping"),
    ],
)
def test_bad_config_names_the_key(data, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(data=data)


# Every option read as a number, as YAML writing one value (the others leave room for it).
NUMBER_OPTIONS = {
    "scoring.importance": "scoring: {importance: %s, recency: 0, thread: 0}",
    "scoring.recency": "scoring: {importance: 0, recency: %s, thread: 0}",
    "scoring.thread": "scoring: {importance: 0, recency: 0, thread: %s}",
    "scoring.decay_days": "scoring: {decay_days: %s}",
    "policies.lock_timeout": "policies: {lock_timeout: %s}",
    "tiers.0.expire_after_days": "tiers: [{name: a, expire_after_days: %s}, {name: b}]",
}


def option_value(config: dict, option: str):
    """The value at a dotted path such as `tiers.0.expire_after_days`."""
    for key in option.split("."):
        config = config[int(key)] if key.isdigit() else config[key]
    return config


@pytest.mark.parametrize("option", NUMBER_OPTIONS)
@pytest.mark.parametrize(
    ("written", "number"), [("1e-1", 0.1), ("5E-1", 0.5), ("1.0e-1", 0.1), ("25e-2", 0.25), ("+.5", 0.5)]
)
def test_every_number_option_takes_a_float_pyyaml_reads_as_text(tmp_path, option, written, number):
    """YAML 1.1 reads an exponent only after a dot and with a sign, and `.5` only unsigned."""
    config = load_config(write(tmp_path, NUMBER_OPTIONS[option] % written + "\n"))
    value = option_value(config, option)
    assert (type(value), value) == (float, number)


@pytest.mark.parametrize("option", NUMBER_OPTIONS)
@pytest.mark.parametrize(
    "written", ['"0.5"', "'1'", "1e-1x", "1e999", "e5", "1e", "0x1p-1", ".inf", "1_0e-1"]
)
def test_a_number_option_still_refuses_quoted_numbers_and_what_no_yaml_reads_as_one(
    tmp_path, option, written
):
    with pytest.raises(ConfigError, match=re.escape(f"{option.replace('.0.', '[0].')} must be a number")):
        load_config(write(tmp_path, NUMBER_OPTIONS[option] % written + "\n"))


# Every option read as a whole number, as YAML writing one value.
WHOLE_NUMBER_OPTIONS = {
    "summarization.min_records": "summarization: {min_records: %s}",
    "summarization.max_chars": "summarization: {max_chars: %s}",
    "clustering.min_size": "clustering: {min_size: %s}",
    "policies.batch_size": "policies: {batch_size: %s}",
    "tiers.1.trim_chars": "tiers: [{name: a, expire_after_days: 1}, {name: b, trim_chars: %s}]",
}


UNBOUNDED = (
    "scoring.decay_days",
    "policies.lock_timeout",
    "tiers.0.expire_after_days",
)  # the weights stop at 1


@pytest.mark.parametrize("option", [*WHOLE_NUMBER_OPTIONS, *UNBOUNDED])
@pytest.mark.parametrize(("written", "number"), [("010", 10), ("0x10", 16), ("0o17", 15), ("+12", 12)])
def test_a_config_reads_numbers_as_yaml_1_2_does(tmp_path, option, written, number):
    """YAML 1.1 read `010` as eight: a value written in the file came back as another."""
    template = {**WHOLE_NUMBER_OPTIONS, **NUMBER_OPTIONS}[option]
    config = load_config(write(tmp_path, template % written + "\n"))
    assert option_value(config, option) == number


@pytest.mark.parametrize("option", [*WHOLE_NUMBER_OPTIONS, *NUMBER_OPTIONS])
@pytest.mark.parametrize("written", ["1:30", "1_000", "0b11"])
def test_what_only_yaml_1_1_reads_as_a_number_is_refused(tmp_path, option, written):
    """YAML 1.1 read `1:30` as ninety (base 60) and `1_000` as a thousand, silently."""
    template = {**WHOLE_NUMBER_OPTIONS, **NUMBER_OPTIONS}[option]
    with pytest.raises(
        ConfigError, match=re.escape(f"{option.replace('.0.', '[0].').replace('.1.', '[1].')} must be")
    ):
        load_config(write(tmp_path, template % written + "\n"))


@pytest.mark.parametrize("written", ["!!int 1:30", "!!int 0b11", "!!int true", "!!float 1:30", "!!int 1_0"])
def test_a_tagged_value_yaml_1_2_cannot_read_so_is_a_yaml_error(tmp_path, written):
    """An explicit `!!int` on text that is no int raised a bare ValueError (a traceback in the CLI)."""
    named = r"is not valid YAML at line 1, column \d+: a value tagged .* is not a YAML 1.2 (int|float)"
    with pytest.raises(ConfigError, match=named):
        load_config(write(tmp_path, f"policies: {{batch_size: {written}}}\n"))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("tiers: [\n", "is not valid YAML"),
        ("\tkey: tab-indented\n", "is not valid YAML"),
        ("database: {dsn: sqlite:///a.db\n", "line 2, column 1: expected ',' or '}', but got '<stream end>'"),
        ("database: {dsn: 'sqlite:///b'\n", "line 2, column 1: expected ',' or '}', but got '<stream end>'"),
        ("colour: blue\n", "unknown config key 'colour'"),
        ("scoring: {decay: 3}\n", "unknown config key 'scoring.decay'"),
        ("- just\n- a list\n", "must be a mapping"),
        ("scoring: high\n", "scoring must be a mapping"),
        ("tiers:\n  - {name: a, expire_after_days: 1}\n", "has no next tier"),
        ("policies: {lock_timeout: -1}\n", "policies.lock_timeout must be at least 0"),
        ("database: {dsn: 42}\n", "database.dsn must be a database URL string"),
        ("database: {dsn: 'sqlite:///a.db'}\ndatabase: {dsn: 'sqlite:///b.db'}\n", "duplicate key database"),
        ("scoring:\n  importance: 0.5\n  importance: 0.2\n", "duplicate key importance"),
        ("tiers:\n  - {name: a, name: b}\n", "duplicate key name"),
    ],
)
def test_a_bad_yaml_file_names_what_is_wrong(tmp_path, text, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(write(tmp_path, text))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "scoring: {importance: [\n"))
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'scoring.weight'")):
        load_config(write(tmp_path, "scoring: {weight: 1}\n"))


def test_dsn_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
    config = load_config(data={"database": {"dsn": "sqlite:///from-config.db"}})
    assert resolve_dsn("sqlite:///arg.db", config) == "sqlite:///arg.db"
    assert resolve_dsn(None, config) == "sqlite:///from-config.db"
    monkeypatch.setenv(ENV_DATABASE_URL, "sqlite:///from-env.db")
    assert resolve_dsn(None, config) == "sqlite:///from-env.db"
    assert resolve_dsn("sqlite:///arg.db", config) == "sqlite:///arg.db"
    monkeypatch.delenv(ENV_DATABASE_URL)
    default = resolve_dsn(None, load_config())
    assert default == f"sqlite:///{tmp_path / '.memoric' / 'memoric.db'}"
    assert (tmp_path / ".memoric").is_dir()


def test_a_relative_app_dir_is_the_config_files_and_the_environment_is_the_working_directorys(
    tmp_path, monkeypatch
):
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_APP_MIGRATIONS, raising=False)
    relative = load_config(write(tmp_path / "project", "migrations: {app_dir: db/app}\n"))
    assert relative["migrations"]["app_dir"] == str(tmp_path / "project" / "db" / "app")
    assert (
        load_config(write(tmp_path, "migrations: {app_dir: /srv/app}\n"))["migrations"]["app_dir"]
        == "/srv/app"
    )
    assert load_config(data={"migrations": {"app_dir": "db/app"}})["migrations"]["app_dir"] == "db/app"
    assert resolve_app_dir(None, load_config()) is None
    assert resolve_app_dir(None, relative) == tmp_path / "project" / "db" / "app"
    monkeypatch.setenv(ENV_APP_MIGRATIONS, "from-env")
    assert resolve_app_dir(None, relative) == Path("from-env")
    assert resolve_app_dir("from-flag", relative) == Path("from-flag")
    monkeypatch.setenv(ENV_APP_MIGRATIONS, "")
    assert resolve_app_dir(None, relative) == tmp_path / "project" / "db" / "app", "empty means unset"


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (5, "config_path must be a file path, got int"),
        ("x\x00y.yaml", "config_path must be a file path, got 'x\\x00y.yaml': it holds a NUL character"),
        ("\ud800.yaml", "config_path must be a file path, got '\\ud800.yaml': surrogates not allowed"),
        (BrokenPath(), "config_path must be a file path: its __fspath__ failed (no path here)"),
        (BytesPath(), "config_path must be a file path, got bytes"),
        ("/dev/zero", "is larger than 1,048,576 bytes"),
    ],
)
def test_a_config_path_that_names_no_readable_file_is_a_config_error(path, named):
    """A path of another type, one no file can have, or a file without end: a TypeError,
    ValueError or UnicodeEncodeError escaped, and /dev/zero was read until memory ran out."""
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(path)

"""perf_config.json loading: defaults, lookup order, environment overrides, and every error message."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from infra.config import (
    ConfigError,
    PerfConfig,
    diagnose_config,
    format_duration,
    format_size,
    get_config,
    load_config,
    parse_duration,
    parse_size,
    project_root,
    reset_config,
)
from infra.config._build import finalize
from infra.config._schema import json_schema

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "perf_config.json"
SCHEMA = REPO / "config" / "perf_config.schema.json"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray PERF_* / OLLAMA_HOST from the caller's shell, and a cwd with no config/ folder."""
    for var in list(__import__("os").environ):
        if var.startswith("PERF_") or var == "OLLAMA_HOST":
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    reset_config()


def write(tmp_path: Path, data: object, name: str = "perf.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, data: object, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data), environ=environ or {})
    return [str(p) for p in info.value.problems]


# ------------------------------------------------------------------------------------------ defaults
def test_shipped_file_spells_out_exactly_the_builtin_defaults() -> None:
    """Every key is present in config/perf_config.json and its values equal the built-in defaults."""
    shipped = load_config(SHIPPED, use_env=False)
    defaults = finalize(PerfConfig(), source=None)
    # a file's relative cache.path is read against its project root (tests/config/test_cache_path.py)
    in_project = str(project_root(SHIPPED) / defaults.cache.path)
    assert shipped == dataclasses.replace(
        defaults, cache=dataclasses.replace(defaults.cache, path=in_project)
    )
    raw = json.loads(SHIPPED.read_text())

    def keys(node: object, prefix: str = "") -> set[str]:
        if not isinstance(node, dict):
            return set()
        out = set()
        for k, v in node.items():
            if k == "$schema":
                continue
            out.add(prefix + k)
            if k not in ("namespaces", "runner", "profiles", "server_settings"):
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(raw) == keys(PerfConfig().to_dict())


def test_shipped_schema_is_generated_from_the_specs_and_validates_the_shipped_file() -> None:
    import jsonschema

    committed = json.loads(SCHEMA.read_text())
    assert committed == json_schema(), (
        "regenerate with: python -m infra config schema > config/perf_config.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(committed)
    jsonschema.validate(json.loads(SHIPPED.read_text()), committed)
    assert json.loads(SHIPPED.read_text())["$schema"] == "perf_config.schema.json"


def test_seed_tuned_values_are_the_defaults() -> None:
    cfg = PerfConfig()
    assert cfg.ollama.runner["num_thread"] == "auto"  # issue 15: the machine's physical cores, not a fixed 6
    assert cfg.ollama.profiles["stage1"] == {"num_predict": 120, "temperature": 0.3}
    assert cfg.ollama.profiles["stage2"] == {"num_predict": 160, "temperature": 0.3}
    assert cfg.ollama.keep_alive == 1800
    assert cfg.http.retry.backoff == (0.1, 0.3, 0.9)
    assert (cfg.http.max_connections, cfg.http.max_per_host) == (16, 6)
    assert cfg.cache.ttl_for("inference") == 30 * 86400
    assert cfg.cache.ttl_for("api") == 86400
    assert cfg.cache.ttl_for("never-configured") == cfg.cache.default_ttl


def test_config_objects_are_frozen() -> None:
    cfg = load_config(SHIPPED)
    with pytest.raises(AttributeError):
        cfg.cache.enabled = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.ollama.runner["num_thread"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        cfg.ollama.profiles["stage1"]["num_predict"] = 1  # type: ignore[index]


# ---------------------------------------------------------------------------------------- lookup
def test_lookup_prefers_explicit_path_then_env_then_cwd_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_config().source == "built-in defaults"
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", {"metrics": {"port": 1111}}, "perf_config.json")
    assert load_config().metrics.port == 1111
    env_file = write(tmp_path, {"metrics": {"port": 2222}}, "env.json")
    monkeypatch.setenv("PERF_CONFIG", str(env_file))
    assert load_config().metrics.port == 2222
    explicit = write(tmp_path, {"metrics": {"port": 3333}}, "explicit.json")
    assert load_config(explicit).metrics.port == 3333


def test_missing_explicit_file_is_an_error_not_silent_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.json")
    monkeypatch.setenv("PERF_CONFIG", str(tmp_path / "typo.json"))
    with pytest.raises(ConfigError, match=r"\$PERF_CONFIG=.*typo.json: no such config file"):
        load_config()


def test_partial_file_keeps_defaults_for_the_rest(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"cache": {"namespaces": {"tts": {"ttl": "7d"}}}}))
    assert cfg.cache.ttl_for("tts") == 7 * 86400
    assert cfg.cache.namespaces.keys() == {"tts"}  # the file's map replaces the default map
    assert cfg.http.retry.attempts == 3


def test_get_config_is_process_wide_and_resettable(tmp_path: Path) -> None:
    first = get_config()
    assert get_config() is first
    reset_config()
    assert get_config() is not first


# --------------------------------------------------------------------------------------- env
@pytest.mark.parametrize(
    ("var", "value", "check"),
    [
        ("PERF_ENABLED", "0", lambda c: not c.enabled and not c.cache.enabled and not c.http.enabled),
        ("PERF_CACHE_ENABLED", "false", lambda c: not c.cache.enabled and c.enabled),
        ("PERF_CACHE_PATH", "/tmp/x/cache.db", lambda c: c.cache.path == "/tmp/x/cache.db"),
        ("PERF_METRICS_PORT", "9999", lambda c: c.metrics.port == 9999),
        ("OLLAMA_HOST", "http://10.0.0.5:11434", lambda c: c.ollama.host == "http://10.0.0.5:11434"),
        ("PERF_CACHE_MAX_BYTES", "2GB", lambda c: c.cache.max_bytes == 2 * 1024**3),
        ("PERF_TORCH_THREADS", "null", lambda c: c.torch.num_threads is None),
    ],
)
def test_environment_overrides(var: str, value: str, check: object, tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {}), environ={var: value})
    assert check(cfg)  # type: ignore[operator]


@pytest.mark.parametrize("blank", ["", "  ", "\t\n"])
def test_empty_environment_override_counts_as_unset(blank: str, tmp_path: Path) -> None:
    """docker-compose's ``PERF_ENABLED=${PERF_ENABLED}`` with the host variable unset sets it to "": that
    raised ConfigError in ``infra.enable()``. Every override left empty or blank keeps the file's value."""
    from infra.config import ENV_OVERRIDES

    data = {"cache": {"dsn": "postgresql://u@h/db", "path": "c.db"}, "torch": {"num_threads": 2}}
    path = write(tmp_path, data)
    expected = load_config(path, environ={})
    cfg = load_config(path, environ=dict.fromkeys(ENV_OVERRIDES, blank))
    assert cfg.env_overrides == ()
    assert dataclasses.replace(cfg, source=expected.source) == expected


def test_empty_perf_enabled_lets_enable_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import infra

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "perf_config.json").write_text('{"metrics": {"serve": false}}', encoding="utf-8")
    monkeypatch.setenv("PERF_ENABLED", "")
    infra.enable()
    try:
        assert get_config().enabled is True
    finally:
        reset_config()


def test_enabled_false_switches_every_part_off(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"enabled": False, "cache": {"enabled": True}}), environ={})
    for section in ("cache", "http", "ollama", "metrics", "torch", "batching", "warmup"):
        assert getattr(cfg, section).enabled is False, section


# ------------------------------------------------------------------------------------ errors
ERROR_CASES = [
    (
        {"cache": {"namespaces": {"inference": {"ttl": -5}}}},
        # (was "expected a duration, got -5": the message now says what a duration may be)
        "cache.namespaces.inference.ttl: expected a duration of 0 or more, got -5",
    ),
    (
        {"cache": {"default_ttl": "soon"}},
        # (one parser for every duration now: the message lists every accepted form)
        'cache.default_ttl: expected a duration: seconds (30, 1.5) or a number with a unit: "500ms", "30s", '
        '"5 sec", "30m", "1 minute", "1h", "2 hours", "30d", "1w", or a sum such as "1h30m" / "1h 30m"; '
        'got "soon"',
    ),
    ({"cache": {"default_ttl": "5 fortnights"}}, "cache.default_ttl: expected a duration"),
    (
        {"cache": {"max_bytes": "12 parsecs"}},
        'cache.max_bytes: expected a size such as 1048576, "512KB", "64MB" or "1GB", got "12 parsecs"',
    ),
    ({"cache": {"max_bytes": -1}}, "cache.max_bytes: expected a size, got -1"),
    ({"metrics": {"port": 70000}}, "metrics.port: expected a port number 0-65535, got 70000"),
    ({"metrics": {"port": -1}}, "metrics.port: expected a port number 0-65535, got -1"),
    ({"metrics": {"port": "9464"}}, 'metrics.port: expected a port number 0-65535, got "9464"'),
    ({"cache": {"enabled": "yes"}}, 'cache.enabled: expected true or false, got "yes"'),
    ({"cache": {"backnd": "sqlite"}}, "cache.backnd: unknown key (did you mean 'backend'?)"),
    ({"chache": {}}, "chache: unknown key (did you mean 'cache'?)"),
    (
        {"cache": {"backend": "mongo"}},
        'cache.backend: expected one of sqlite, postgres, redis, memory, got "mongo"',
    ),
    ({"cache": {"backend": "redsi"}}, "(did you mean 'redis'?)"),
    ({"http": {"retry": {"attempts": -1}}}, "http.retry.attempts: expected a value from 0 to 20, got -1"),
    ({"http": {"retry": {"backoff": [0.1, "x"]}}}, "http.retry.backoff[1]: expected a duration"),
    ({"http": {"retry": "3"}}, 'http.retry: expected an object, got "3"'),
    ({"http": {"max_per_host": 20}}, "http.max_per_host: must not exceed http.max_connections (16), got 20"),
    ({"db": {"min_size": 20}}, "db.min_size: must not exceed db.max_size (10), got 20"),
    ({"db": {"min_size": 5, "max_size": 2}}, "db.min_size: must not exceed db.max_size (2), got 5"),
    ({"db": {"command_timeout": 0}}, "db.command_timeout: must be > 0 seconds or null, got 0.0"),
    ({"cache": {"ttl_jitter": 2}}, "cache.ttl_jitter: expected a value from 0 to 1, got 2"),
    ({"cache": {"backend": "redis"}}, "cache.url: required when cache.backend is redis"),
    ({"cache": {"backend": "postgres"}}, "cache.dsn: required when cache.backend is postgres"),
    (
        {"wrap": [{"target": "no colon here", "methods": ["x"]}]},
        'wrap[0].target: "no colon here" doesn\'t have the expected form',
    ),
    ({"wrap": [{"target": "a.b:C", "methods": "score"}]}, 'wrap[0].methods: expected a list, got "score"'),
    (
        {"ollama": {"runner": {"num_ctx": [1]}}},
        "ollama.runner.num_ctx: expected a number, string or boolean, got a list",
    ),
    ([1, 2], "(top level): expected an object, got a list"),
]


@pytest.mark.parametrize(("data", "message"), ERROR_CASES, ids=[m[:50] for _, m in ERROR_CASES])
def test_each_bad_value_names_its_json_path(tmp_path: Path, data: object, message: str) -> None:
    found = problems_of(tmp_path, data)
    assert any(message in p for p in found), found


def test_one_error_lists_every_problem_at_once(tmp_path: Path) -> None:
    found = problems_of(tmp_path, {"cache": {"default_ttl": -1, "backnd": 1}, "metrics": {"port": 1e6}})
    assert len(found) == 3
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, {"cache": {"default_ttl": -1}, "metrics": {"port": 1e6}}))
    text = str(info.value)
    assert "cache.default_ttl" in text and "metrics.port" in text and str(tmp_path / "perf.json") in text


def test_a_db_section_asyncpg_would_refuse_is_reported_with_the_other_problems(tmp_path: Path) -> None:
    """Not a silent fall-back to the built-in pool settings: every db problem by its JSON path, in the
    same ConfigError as the file's other problems."""
    data = {"db": {"min_size": 5, "max_size": 2, "command_timeout": "0s"}, "metrics": {"port": -1}}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    where = {p.where for p in info.value.problems}
    assert where == {"db.min_size", "db.command_timeout", "metrics.port"}
    assert "db.min_size: must not exceed db.max_size (2), got 5" in str(info.value)


def test_a_bad_db_field_is_not_also_reported_as_a_combination(tmp_path: Path) -> None:
    """A db field with its own problem is left at its default; checking min_size against that default
    would report a value the file doesn't hold."""
    found = problems_of(tmp_path, {"db": {"min_size": 20, "max_size": "many"}})
    assert found == ['db.max_size: expected an integer, got "many"'], found


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "cache": {\n    "enabled": true,\n  }\n}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value.problems[0]).startswith(f"{path}:4:3: JSON syntax error")


def test_duplicate_key_is_an_error_with_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, '{"cache": {"enabled": true,\n "enabled": false}}')
    with pytest.raises(ConfigError, match=r":2:2: duplicate key 'enabled'"):
        load_config(path)


def test_duplicate_key_comes_with_every_other_problem(tmp_path: Path) -> None:
    """A duplicate key hid the rest: only ``2:33: duplicate key 'backend'`` was reported. Now the
    document is checked too (the LAST value kept, as json does) and every problem comes at once."""
    text = (
        '{"enabled": true,\n "cache": {"backend": "memory", "backend": "sqlite", "bakend": 1},\n'
        ' "http": {"retry": {"attempts": "x"}}}'
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    found = [str(p) for p in info.value.problems]
    assert found[0] == f"{path}:2:33: duplicate key 'backend'"
    assert any(p.startswith("cache.bakend: unknown key") for p in found), found
    assert any(p.startswith("http.retry.attempts: expected an integer") for p in found), found
    assert len(found) == 3, found
    diagnosis = diagnose_config(path, environ={})
    assert diagnosis.config is not None and diagnosis.config.cache.backend == "sqlite"  # the last value


def test_each_duplicate_key_is_placed_exactly(tmp_path: Path) -> None:
    """A key used in other objects too ("enabled") is placed at the repeat, not at its second use."""
    text = '{"cache": {"enabled": true},\n "http": {"enabled": true, "enabled": false},\n "a": 1, "a": 2}'
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    found = [str(p) for p in info.value.problems]
    assert f"{path}:2:28: duplicate key 'enabled'" in found
    assert f"{path}:3:10: duplicate key 'a'" in found


def test_utf8_bom_is_read_and_positions_stay_right(tmp_path: Path) -> None:
    """Windows Notepad starts the file with a UTF-8 byte-order mark: it gave "Unexpected UTF-8 BOM"."""
    path = tmp_path / "perf.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"metrics": {"port": 9100}}')
    assert load_config(path, environ={}).metrics.port == 9100
    path.write_bytes(b"\xef\xbb\xbf" + b'{"metrics": {"port": 9100,}}')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value.problems[0]).startswith(f"{path}:1:27: JSON syntax error")


def test_bad_environment_override_names_the_variable(tmp_path: Path) -> None:
    found = problems_of(tmp_path, {}, environ={"PERF_METRICS_PORT": "abc", "PERF_CACHE_ENABLED": "perhaps"})
    assert '$PERF_METRICS_PORT (metrics.port): expected a port number 0-65535, got "abc"' in found
    assert '$PERF_CACHE_ENABLED (cache.enabled): expected true or false, got "perhaps"' in found


def test_config_error_is_a_value_error_and_the_layer_root() -> None:
    from infra.errors import PerfInfraError

    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, PerfInfraError)


def test_repr_and_to_dict_hide_passwords(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"db": {"dsn": "postgresql://app:s3cret@db:5432/x"}}))
    assert "s3cret" not in repr(cfg) and "s3cret" not in json.dumps(cfg.to_dict())
    assert cfg.db.dsn == "postgresql://app:s3cret@db:5432/x"
    assert "app:***@db" in repr(cfg.db)


# ------------------------------------------------------------------------------------- units
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (0, 0.0),
        (1.5, 1.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("30m", 1800.0),
        ("24h", 86400.0),
        ("30d", 2592000.0),
        ("2w", 1209600.0),
        (" 1.5h ", 5400.0),
        ("10", 10.0),
        # every common spelling, any case, and sums (one parser for config, @cached, Cache.set, wrap, CLI)
        ("30 days", 2592000.0),
        ("1 day", 86400.0),
        ("5 sec", 5.0),
        ("5 secs", 5.0),
        ("1 second", 1.0),
        ("1 minute", 60.0),
        ("2 mins", 120.0),
        ("1 MIN", 60.0),
        ("1 ms", 0.001),
        ("250 milliseconds", 0.25),
        ("2 hours", 7200.0),
        ("1 hr", 3600.0),
        ("1H", 3600.0),
        ("1 week", 604800.0),
        ("2 weeks", 1209600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1d 2h 3m 4s", 93784.0),
        ("1 hour 30 minutes", 5400.0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", [-1, "-5s", "5y", "", "h", True, None, float("nan"), float("inf"), [1], "1h30", "1h-30m", "1 1h"]
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


def test_parse_duration_errors_name_the_value_and_the_forms() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("5 fortnights")
    msg = str(info.value)
    assert '"5 fortnights"' in msg and "'fortnights'" in msg and '"1h30m"' in msg and '"5 sec"' in msg
    with pytest.raises(ValueError, match=r"of 0 or more, got \"-5s\""):
        parse_duration("-5s")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (0, 0),
        (1024, 1024),
        ("8KB", 8192),
        ("512MB", 512 * 1024**2),
        ("1GB", 1024**3),
        ("1GiB", 1024**3),
        ("1.5KB", 1536),
        ("100b", 100),
    ],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", [-1, 1.5, "1XB", "lots", False, None])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(bad)


def test_format_round_trips() -> None:
    for seconds in (0.5, 1, 90, 1800, 86400, 2592000):
        assert parse_duration(format_duration(seconds)) == seconds
    for size in (1, 1000, 8192, 1024**3):
        assert parse_size(format_size(size)) == size


# ------------------------------------------------------------------------------------- issue 17
QUERY_DSN = "postgresql://app@db:5432/x?sslmode=disable&password=s3cret&application_name=a"


@pytest.mark.parametrize(
    "dsn",
    [
        QUERY_DSN,
        "postgresql://app@db/x?PASSWORD=s3cret",
        "postgresql://app@db/x?sslpassword=s3cret",
        "host=db user=app password=s3cret dbname=x",
        "host=db user=app password='s3 cret' dbname=x",
        "redis://db:6379/0?password=s3cret",
    ],
)
def test_a_password_given_as_a_dsn_parameter_is_redacted_too(tmp_path: Path, dsn: str) -> None:
    """Issue 17 item 13: ``?password=`` (and libpq's ``password=`` keyword) showed in clear."""
    cfg = load_config(write(tmp_path, {"db": {"dsn": dsn}, "cache": {"dsn": dsn, "url": dsn}}))
    for shown in (repr(cfg), repr(cfg.cache), json.dumps(cfg.to_dict())):
        assert "s3cret" not in shown and "s3 cret" not in shown
    assert "***" in repr(cfg.db)
    assert cfg.db.dsn == dsn  # the real value is untouched


def test_config_show_never_prints_a_dsn_password(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, {"db": {"dsn": QUERY_DSN}})
    out = subprocess.run(
        [sys.executable, "-m", "infra", "config", "show", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert "s3cret" not in out.stdout + out.stderr
    assert "password=***" in out.stdout


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"enabled": ' + "[" * 5000 + "]" * 5000 + "}", "enabled[0][0]"),
        (
            '{"cache": {"namespaces": {"a": ' + '{"x": ' * 900 + "1" + "}" * 900 + "}}}",
            "cache.namespaces.a.x.x",
        ),
        (
            '{"integrate": {"wrap": [{"options": ' + "[" * 70 + "]" * 70 + "}]}}",
            "integrate.wrap[0].options[0]",
        ),
        ("[" * 100_000, "[0][0]"),
    ],
)
def test_deep_nesting_is_a_config_error_naming_the_path(tmp_path: Path, text: str, where: str) -> None:
    """Issue 17 item 15: RecursionError from json.loads / the builders became a ConfigError at the path."""
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1
    assert str(info.value.problems[0]).startswith(where)
    assert "nested more than 64 levels" in str(info.value)


def test_deep_python_data_is_a_config_error_not_recursion() -> None:
    from infra.config._build import build_config
    from infra.errors import ConfigProblem

    value: object = 1
    for _ in range(5000):
        value = {"x": value}
    problems: list[ConfigProblem] = []
    build_config({"cache": {"namespaces": {"a": value}}}, problems)
    assert [p.where for p in problems] == ["cache.namespaces.a" + ".x" * 61]


def test_config_check_reports_deep_nesting_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "deep.json"
    path.write_text('{"enabled": ' + "[" * 5000 + "]" * 5000 + "}")
    out = subprocess.run(
        [sys.executable, "-m", "infra", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "RecursionError" not in out.stderr
    assert "enabled[0]" in out.stderr


@pytest.mark.parametrize(
    "text",
    ["1h", "30 days", "5 sec", "1 minute", "1h30m", "1h 30m", "1 MIN", "30", "5y", "-5s", "1h30", "soon"],
)
def test_the_schema_pattern_accepts_what_the_parser_accepts(text: str) -> None:
    """config/perf_config.schema.json's duration pattern (what editors check) is the parser's grammar: it
    allowed only "30d"-style forms, so an editor flagged "30 days" and "1h30m", which the loader reads."""
    from infra.config._units import DURATION_PATTERN

    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert bool(re.match(DURATION_PATTERN, text)) is parsed

"""A password in a database URL is never printed, in any form a user can type, anywhere.

The class tested: ~25 URL shapes (a password in the query string, raw `@ / ? # :` or a space in
it, a one-slash scheme typo, no scheme, upper-case, `+pool` and unsupported schemes, percent-
encoding, unparsable hosts and ports) times every place memoric prints or logs a URL or an error
that may quote one: library exceptions, reprs, the `stats` header, the CLI's stdout and stderr
of several commands (as --dsn, as $MEMORIC_DATABASE_URL, as copy --from/--to, mistyped as an
argument), logs, the migration lock's waiting message. URLs that cannot be opened need no
database; URLs that work use the test PostgreSQL server, which trusts local connections, so any
password is accepted (SQLite URLs carry no password: those tests are PostgreSQL only).
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from memoric import Memoric
from memoric.cli import main
from memoric.db.masking import mask_password, mask_url
from memoric.db.store import MemoryStore
from memoric.errors import ConfigError, MemoricError
from tests.helpers.dialects import requires_postgres

SECRET = "S3cr3t"
FAR = "127.0.0.1:1"  # nothing listens there: connecting fails at once
UNOPENABLE = [
    f"postgresql://agent:{SECRET}@{FAR}/db",
    f"postgresql://{FAR}/db?dbname=host%3D{FAR}%20user%3Dagent%20password%3D{SECRET}%20dbname%3Dnone",
    f"postgresql://agent@/db?host=/nonexistent&password={SECRET}",
    f"postgresql://agent@/db?host=/nonexistent&password=TOP {SECRET}",
    f"postgresql://agent@/db?host=/nonexistent&dbname=password='{SECRET} x'",
    f"postgresql://agent@/db?host=/nonexistent&password=TOP+{SECRET}&sslmode=disable",
    f"postgresql://agent@{FAR}/db?PASSWORD={SECRET}",
    f"postgresql://agent:p@ss/w{SECRET}@{FAR}/db",
    f"postgresql://agent:{SECRET}/x@{FAR}/db",
    f"postgresql://agent:{SECRET}?x@{FAR}/db",
    f"postgresql://agent:{SECRET}#x@{FAR}/db",
    f"postgresql://agent:x:{SECRET}@{FAR}/db",
    f"postgresql://agent:{SECRET} x@{FAR}/db",
    f"postgresql://agent:{SECRET}'x\"y@{FAR}/db",
    f"postgresql:/agent:{SECRET}@{FAR}/db",
    f"postgresql:agent:{SECRET}@{FAR}/db",
    f"agent:{SECRET}@{FAR}/db",
    f"//agent:{SECRET}@{FAR}/db",
    f"POSTGRESQL://agent:{SECRET}@{FAR}/db",
    f"Postgres://agent:{SECRET}@{FAR}/db",
    f"postgresql+pool://agent:{SECRET}@{FAR}/db",
    f"POSTGRESEXT+POOL://agent:{SECRET}@{FAR}/db",
    f"postgresql://agent:{SECRET}%40x@{FAR}/db",
    f"postgresql://agent:%53%33cr3t@{FAR}/db",
    f"mysql://agent:{SECRET}@{FAR}/db",
    f"postgresql://agent@{FAR}/db?password:{SECRET}",
    f"postgresql://agent@{FAR}/db?password%20{SECRET}",
    f"postgresql://agent@{FAR}/db?sslmode=disable&pasword:{SECRET}",
    f"sqlite://agent:{SECRET}@/memoric.db",
    f"sqlite:///no-such-directory/agent:{SECRET}@x/memoric.db",
    f"postgresql://agent:{SECRET}@[::1/db",
    f"postgresql://agent:{SECRET}@127.0.0.1:port/db",
    f"postgresql://agent:{SECRET}@{FAR}",
    f"postgresql://agent:{SECRET}@{FAR}/db?sslmode=bogus",
    f"postgresql://agent%3A{SECRET}@{FAR}/db",
    f"postgresql://agent%3a{SECRET}@/db?host=/nonexistent",
    f"postgresql://agent:{SECRET}\tx@{FAR}/db",
    f"postgresql://agent:x\n{SECRET}@{FAR}/db",
    f"postgresql://agent:{SECRET}@127.0.0.1\r:1/db",
]
COMMANDS = [
    ["stats"],
    ["stats", "--json"],
    ["migrate", "current"],
    ["migrate", "upgrade"],
    ["migrate", "history"],
    ["export"],
    ["recall", "--user", "ada"],
    ["run-policies"],
]


def assert_hidden(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and "S3cr" not in text, text


def cli(*args: str, env: dict | None = None):
    result = CliRunner().invoke(main, list(args), env=env)
    assert "Traceback" not in result.output + result.stderr
    assert_hidden(result.stdout, result.stderr)
    return result


@pytest.fixture(autouse=True)
def no_database_url_in_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("url", UNOPENABLE)
def test_a_url_that_cannot_be_opened_is_named_masked_everywhere(url, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    for build in (MemoryStore, Memoric):
        with pytest.raises(ConfigError) as raised:
            build(url)
        assert_hidden(str(raised.value), repr(raised.value))
    sqlite = f"sqlite:///{tmp_path / 'other.db'}"
    for command in COMMANDS:
        assert cli("--dsn", url, *command).exit_code == 1
        assert cli(*command, env={"MEMORIC_DATABASE_URL": url}).exit_code == 1
    assert cli("copy", "--from", url, "--to", sqlite).exit_code == 1
    Memoric(sqlite).save("ada", "a memory to copy")
    assert cli("copy", "--from", sqlite, "--to", url).exit_code == 1
    assert cli(url, "stats").exit_code == 2, "a URL typed where a command goes"
    assert cli("stats", url).exit_code == 2
    assert_hidden(caplog.text)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://u@h:5432/db?password=x&sslmode=require",
            "postgresql://u@h:5432/db?password=***&sslmode=require",
        ),
        (
            "cannot open 'postgresql://a:p@ss/w@h/db': refused",
            "cannot open 'postgresql://a:***@h/db': refused",
        ),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("database \"password='two words'\" does not exist", 'database "password=***" does not exist'),
        ("ada@example.com wrote at 12:30", "ada@example.com wrote at 12:30"),
    ],
)
def test_mask_password_by_the_shape_of_the_text(text, masked):
    assert mask_password(text) == masked


def test_a_masked_query_password_keeps_the_punctuation_after_the_url():
    url = "postgresql://u@h/db?password=s3cret"
    assert mask_password(f"cannot open {url}: refused", url) == (
        "cannot open postgresql://u@h/db?password=***: refused"
    )
    assert mask_password("password=ab: x") == "password=*** x"  # not masked already: the colon goes too


def test_mask_password_hides_the_secrets_of_known_urls_wherever_they_appear():
    url = f"postgresql://agent:{SECRET} with spaces%21@h/db"
    assert mask_password(f"a driver quoted '{SECRET} with spaces!' and {SECRET} with spaces%21", url) == (
        "a driver quoted '***' and ***"
    )


def test_a_database_setting_that_is_not_a_url_is_not_quoted(tmp_path):
    config = tmp_path / "memoric.yaml"
    config.write_text(f"database:\n  dsn: {{user: agent, password: {SECRET}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="got a dict") as raised:
        Memoric(config_path=config)
    assert_hidden(str(raised.value))
    assert cli("--config", str(config), "stats").exit_code == 1


LONG_SECRET = "Pw9zQx7Lm2Kd"
CONFIG_WITH_A_PASSWORD = f'database:\n  dsn: "postgresql://agent:{LONG_SECRET}@{FAR}/db?sslmode=disable"\n'
BREAKING_CHARACTERS = ['"', "'", "\\", ":", ": ", "\t", "{", "[", "&", "*", "!", "%", "@", "\x01", "\n"]
BREAKING_CHARACTERS += ["\n  dsn: x\n"]


def assert_no_part_of_the_long_secret(text: str) -> None:
    fragments = {LONG_SECRET[start : start + 4] for start in range(len(LONG_SECRET) - 3)}
    assert not [fragment for fragment in fragments if fragment in text], text


@pytest.mark.parametrize("character", BREAKING_CHARACTERS)
def test_a_config_file_broken_anywhere_never_quotes_its_password(tmp_path, character):
    """Each character that can break YAML, put at every place of a config file holding a URL with
    a password: PyYAML's own message quoted the lines around the fault, its scanner a character."""
    config = tmp_path / "memoric.yaml"
    for place in range(len(CONFIG_WITH_A_PASSWORD) + 1):
        text = CONFIG_WITH_A_PASSWORD[:place] + character + CONFIG_WITH_A_PASSWORD[place:]
        config.write_text(text, encoding="utf-8")
        try:
            Memoric(config_path=config).close()
        except ConfigError as exc:
            assert_no_part_of_the_long_secret(str(exc))
        except MemoricError as exc:  # read whole: the URL cannot be opened
            assert_no_part_of_the_long_secret(str(exc))


def test_a_broken_config_file_is_one_line_in_the_cli_naming_where_it_breaks(tmp_path):
    config = tmp_path / "memoric.yaml"
    config.write_text(CONFIG_WITH_A_PASSWORD.replace("@", "\\?@"), encoding="utf-8")
    result = cli("--config", str(config), "stats")
    assert result.exit_code == 1
    where = "is not valid YAML at line 2, column "
    assert result.stderr.startswith(f"Error: config file {str(config)!r} {where}")
    assert result.stderr.count("\n") == 1
    assert_no_part_of_the_long_secret(result.stderr)


# --- URLs that work ------------------------------------------------------------------------------


def shapes_of(url: str) -> list[str]:
    """The test server's URL `url` written with a password in the ways a user can type one."""
    parts = urlsplit(url)
    socket, database = parts.query, parts.path
    return [
        f"postgresql://postgres:{SECRET}@{database}?{socket}",
        f"postgresql://postgres@{database}?{socket}&password={SECRET}",
        f"POSTGRESQL://postgres:{SECRET}@{database}?{socket}",
        f"postgresql+pool://postgres:{SECRET}@{database}?{socket}",
        f"postgres://postgres:{SECRET}%2Fx%40y@{database}?{socket}",
        f"postgresext://postgres:{SECRET}:x y'z@{database}?{socket}",
        f"postgresql://postgres:p@{SECRET}@{database}?{socket}",
    ]


@requires_postgres
def test_a_working_url_is_printed_masked_everywhere(new_postgres_url, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    for number, url in enumerate(shapes_of(new_postgres_url())):
        sqlite = f"sqlite:///{tmp_path / f'copy-{number}.db'}"  # each round's clusters differ
        memoric = Memoric(url)
        memoric.save("ada", f"memory {number}")
        assert_hidden(repr(memoric), repr(memoric.db))
        for command in [*COMMANDS, ["clusters", "--rebuild"], ["migrate", "pending"]]:
            assert cli("--dsn", url, *command).exit_code == 0
        assert "***" in cli("--dsn", url, "stats").stdout.splitlines()[0], "the header names the database"
        export = tmp_path / f"export-{number}.jsonl"
        assert cli("--dsn", url, "export", str(export)).exit_code == 0
        assert cli("--dsn", sqlite, "import", str(export)).exit_code == 0
        assert "to PostgreSQL " in cli("copy", "--from", sqlite, "--to", url).stdout
        assert cli("copy", "--from", url, "--to", f"sqlite:///{tmp_path / f'{number}.db'}").exit_code == 0
        memoric.close()
    assert_hidden(caplog.text)


@requires_postgres
def test_the_migration_lock_waiting_message_is_masked(new_postgres_url):
    url = shapes_of(new_postgres_url())[0]
    holder = Memoric(url)
    holder.ensure_schema()
    taken, done = threading.Event(), threading.Event()

    def hold():
        with holder.db.lock("migrations"):
            taken.set()
            done.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    try:
        result = cli("--dsn", url, "migrate", "upgrade", "--lock-timeout", "0")
    finally:
        done.set()
        thread.join()
    assert "Waiting for the migration lock" in result.stderr and "postgres:***@" in result.stderr


# Passwords of capitals and URL punctuation, in URLs otherwise lower-case: a run of three
# capitals in the output is part of a password shown.
PASSWORD_IN_USERINFO = st.text(alphabet="ABCDEFGHJK@:/?#%=& é", min_size=1, max_size=16)
PASSWORD_IN_QUERY = st.text(alphabet="ABCDEFGHJK@:/?#%=& é", min_size=1, max_size=16)
SHOWN_CAPITALS = re.compile("[A-Z]{3,}")


def shown_password(output: str, password: str) -> list[str]:
    """The runs of three or more capitals of `password` that `output` shows."""
    return [run for run in SHOWN_CAPITALS.findall(output) if run in password]


@settings(max_examples=500)  # string work only: cheap, and rare shapes need many tries
@given(password=PASSWORD_IN_USERINFO, other=PASSWORD_IN_QUERY)
@pytest.mark.parametrize(
    "shape",
    [
        "postgresql://agent:{password}@127.0.0.1:5432/db",
        "postgresql://agent@127.0.0.1:5432/db?password={other}&sslmode=require",
        "postgresql://agent@127.0.0.1:5432/db?sslmode=require&password={other}",
        "postgres://agent:{password}@127.0.0.1/db?password={other}",
        "postgresql:/agent:{password}@127.0.0.1/db",
        "agent:{password}@127.0.0.1/db?password={other}",
        "postgresql+pool://agent:{password}@h/db?options=-c%20x&password={other}",
    ],
)
def test_no_part_of_a_password_with_url_punctuation_is_ever_shown(shape, password, other):
    # `agent://X@host` is a scheme and a user X, whatever was meant: not a password starting `//`.
    assume(not (shape.startswith("agent:") and password.startswith("//")))
    url = shape.format(password=password, other=other)
    for output in (mask_url(url), mask_password(f"cannot open '{url}': refused", url)):
        assert shown_password(output, password + " " + other) == [], output


NOT_UTF8 = ["\ud800", "\udcff", "%FF", "%C3"]  # a lone surrogate, a byte of a command line, bytes
URL_PARTS_HOLDING = [
    "postgresql://agent{}:" + SECRET + f"@{FAR}/db",
    "postgresql://agent:" + SECRET + "{}@" + f"{FAR}/db",
    "postgresql://agent:" + SECRET + "@127.0.0.1{}:1/db",
    "postgresql://agent:" + SECRET + f"@{FAR}/db{{}}",
    "postgresql://agent:" + SECRET + f"@{FAR}/db?application_name=x{{}}",
    f"postgresql://agent@{FAR}/db?password={SECRET}{{}}",
]


@pytest.mark.parametrize("text", NOT_UTF8)
@pytest.mark.parametrize("shape", URL_PARTS_HOLDING)
def test_a_postgresql_url_holding_text_that_is_not_utf8_is_named_with_its_password_hidden(shape, text):
    """In any part of the URL: the driver's UnicodeEncodeError escaped (a traceback in the CLI,
    masking failed on such a password), and %FF was sent as U+FFFD, another password."""
    url = shape.format(text)
    with pytest.raises(ConfigError, match="holds text that is not UTF-8") as raised:
        Memoric(url)
    assert_hidden(str(raised.value))
    result = cli("--dsn", url, "stats")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: invalid database URL '") and result.stderr.count("\n") == 1


URL_OF_LONG_SECRET = f"postgresql://agent:{LONG_SECRET}@{FAR}/db"
CONFIGS_HIDING_THE_URL = [
    f"database: {{dsn: postgresql://agent:{LONG_SECRET[:5]},{LONG_SECRET[5:]}@{FAR}/db}}\n",
    f"database:\n  dsn: !!bool {URL_OF_LONG_SECRET}\n",
    f"database:\n  dsn: !!timestamp {URL_OF_LONG_SECRET}\n",
    f"database:\n  dsn: !{LONG_SECRET} x\n",
    f"database:\n  dsn: !<tag:{LONG_SECRET}> x\n",
    f"database:\n  {URL_OF_LONG_SECRET}: 1\n  {URL_OF_LONG_SECRET}: 2\n",
    f"database:\n  agent:{LONG_SECRET}: 1\n  agent:{LONG_SECRET}: 2\n",
    f"database:\n  dsn: postgresql://agent:{LONG_SECRET[:5]} #{LONG_SECRET[5:]}@{FAR}/db\n",
    f"database:\n  dsn: postgresql://agent:{LONG_SECRET}\n",
    f"database:\n  dsn: postgresql://agent@{FAR}/db?pasword={LONG_SECRET}\n",
    f"database:\n  dsn: postgresql://agent@{FAR}/db?pw={LONG_SECRET}&sslmode=disable\n",
    f"database: {{dsn: postgresql://agent:ab,{LONG_SECRET},cd@{FAR}/db}}\n",
    f"database: {{sqlite_warning: {URL_OF_LONG_SECRET}}}\n",
    f"database:\n  dsn: &url {URL_OF_LONG_SECRET}\npolicies: {{batch_size: *url}}\n",
    f"tiers: [{URL_OF_LONG_SECRET}]\n",
]


@pytest.mark.parametrize("text", CONFIGS_HIDING_THE_URL)
def test_a_config_whose_yaml_cuts_or_moves_the_password_never_shows_it(tmp_path, text):
    """YAML that reads a piece of the URL as a key, a tag, a comment or another parameter (a
    hostile re-check: each printed the password, or a traceback holding it)."""
    config = tmp_path / "memoric.yaml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(MemoricError) as raised:
        Memoric(config_path=config).stats()
    assert_no_part_of_the_long_secret(str(raised.value))
    result = cli("--config", str(config), "stats")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert_no_part_of_the_long_secret(result.stderr)


# Each shape repeated to the length of the longest argument Linux passes a command (128 KiB):
# patterns that could start or end anywhere in a run of name characters tried every start and
# every end, 102 s for 4,000 characters of `pass.`; masking is now linear in the text.
LONG_ARGUMENT_SHAPES = ["x", "a.", "pass.", "password", "token=", "pass='", "a=b&", "u:p@", "%41"]


@pytest.mark.parametrize("shape", [*LONG_ARGUMENT_SHAPES, "distinct parameters"])
def test_masking_a_long_argument_takes_time_in_proportion_to_it(shape):
    """The guard is a hundred times what the masking takes; it ends a run that would take hours.
    Distinct unknown parameters (each a secret looked for in the whole message) took 4 s."""
    if shape == "distinct parameters":
        tail = "".join(f"a{number}=b&" for number in range(131_072 // 8))
    else:
        tail = shape * (131_072 // len(shape))
    argument = f"postgresql://agent:{SECRET}@h/db?password={SECRET}&" + tail
    with _interrupted_after(seconds=30):
        masked = mask_password(f"Error: --user {argument} must be at most 128 characters", argument)
    assert SECRET not in masked


@contextlib.contextmanager
def _interrupted_after(seconds: int):
    """A TimeoutError in the block once `seconds` have passed (this thread must be the main one)."""

    def interrupt(signum, frame):
        raise TimeoutError(f"still masking after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

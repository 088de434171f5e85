"""Printing database URLs, and messages quoting them, safely.

Passwords are masked in every form a user can type: `user:PASSWORD@host` with `@`, `/` or `:`
inside the password, a one-slash scheme typo, no scheme at all, `?password=...`, upper-case and
`+pool` schemes, percent-encoded passwords.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from urllib.parse import quote, unquote

from memoric.db.url_parts import (
    KNOWN_PARAMETERS,
    POOLED_SUFFIX,
    POSTGRES_SCHEMES,
    SQLITE_SCHEMES,
    query_pairs,
)

MASK = "***"
MIN_LITERAL_SECRET = 4  # shorter secrets are masked where they stand in a URL, not everywhere
MAX_SETTING_SECRETS = 256  # a URL's setting secrets looked for one by one; more: its query whole
_SCHEME_AND_SLASHES = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/+")
_ENCODED_COLON = re.compile("%3a", re.IGNORECASE)
_WORD = re.compile(r"""[^\s'"`<>]+""")
_SECRET_WORDS = "pass|pwd|secret|token"  # a name holding one of these names a secret
_SECRET_NAME = re.compile(rf"(?i){_SECRET_WORDS}")
# A whole such name, matched from the start of a run of name characters only, and that run taken
# whole (possessive): a pattern free to start or end anywhere in a long run tried every start and
# every end, minutes for an argument of a few thousand characters.
_SECRET_PARAMETER = rf"(?<![\w.-])(?=[\w.-]*?(?:{_SECRET_WORDS}))[\w.-]*+"
_SECRET_NAMED = re.compile(rf"(?i){_SECRET_PARAMETER}=")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]*")  # a parameter's name that holds no secret
_TRAILING = ":;,.)]"  # what a message may put right after a URL
_PART_END = re.compile(r"[/?#;,)\]'\"]")  # what ends a URL's user and host part in a message
_SECRET_SETTING = re.compile(
    rf"(?i)({_SECRET_PARAMETER}\s*=\s*)('[^']*'|\"[^\"]*\"|[^&\s'\"]+)"
)  # a value runs to the next & or space, or is quoted as libpq's key=value settings may be


def mask_password(text: str, *urls: str) -> str:
    """`text` with every password in it replaced by `***`, safe to print or log.

    Masked: in any word shaped like `[scheme:/]user:PASSWORD@host`, everything from the first
    `:` after the user to the last `@` (so `@`, `/` or `:` in a password are covered); any
    `password=`-like setting (also `passwd`, `pwd`, `secret`, `token`, any case); and every
    secret of `urls` (their passwords as typed and percent-decoded) wherever it appears. This
    errs on the side of hiding too much.
    """
    text = _masked_spans(text, _secrets(urls))
    text = _WORD.sub(lambda word: _mask_userinfo(word.group()), text)
    return _SECRET_SETTING.sub(_masked_setting, text)


def _masked_spans(text: str, secrets: set[str]) -> str:
    """`text` with every place any of `secrets` occurs masked, overlapping places as one: masking
    one secret at a time cut the others that overlap it, and what was left of them showed."""
    spans = sorted((start, start + len(secret)) for secret in secrets for start in _occurrences(text, secret))
    pieces, end = [], 0
    for start, stop in spans:
        if start > end or not pieces:
            pieces += [text[end:start], MASK]
        end = max(end, stop)
    return "".join(pieces) + text[end:]


def _occurrences(text: str, secret: str) -> list[int]:
    """Where `secret` starts in `text`, overlapping occurrences included."""
    found, start = [], text.find(secret)
    while start >= 0:
        found.append(start)
        start = text.find(secret, start + 1)
    return found


def _masked_setting(setting: re.Match) -> str:
    """A `password=`-like setting with its value masked; punctuation after a value masked
    already (`...?password=***: connection refused`) is the message's, and stays."""
    name, value = setting.groups()
    kept = value[len(MASK) :] if value.startswith(MASK) else ""
    return f"{name}{MASK}{kept if kept.strip(_TRAILING) == '' else ''}"


def mask_url(url: str) -> str:
    """A database URL safe to print or log."""
    return mask_password(url, url)


def _password_span(word: str) -> tuple[int, int] | None:
    """Where the password of `[scheme:/]user:PASSWORD@host...` is: past the user's `:`, to the last `@`;
    in a user name without `:`, past an encoded one (`user%3APASSWORD@host`), which libpq reads as
    part of the name and would show in its errors.

    `name:/x@host` is a scheme with one slash only when memoric knows the scheme; otherwise it is
    taken for a user whose password starts with a slash (a URL typed without its scheme).
    """
    at = word.rfind("@")
    scheme = _SCHEME_AND_SLASHES.match(word)
    if scheme and not (scheme.group().endswith("//") or _known_scheme(scheme.group())):
        scheme = None
    if at < 0:
        return _hostless_password_span(word, scheme)
    start = scheme.end() if scheme else 0
    colon = word.find(":", start, at)
    if colon >= 0:
        return colon + 1, at
    encoded = _ENCODED_COLON.search(word, start, at)  # `user%3APASSWORD@`: a colon encoded by mistake
    return None if encoded is None else (encoded.end(), at)


def _hostless_password_span(word: str, scheme: re.Match | None) -> tuple[int, int] | None:
    """Where the password of `scheme://user:PASSWORD` is, a URL without `@` (cut short, or its
    host left out): what follows the user's `:` to the end of that part, unless it is a port."""
    if scheme is None or not scheme.group().endswith("://"):  # `///`: a file path follows
        return None
    end = _part_end(word, scheme.end())
    colon = word.find(":", scheme.end(), end)
    if colon < 0 or word[colon + 1 : end].isdigit():
        return None
    return colon + 1, end


def _part_end(word: str, start: int) -> int:
    """Where the URL's user and host part that starts at `start` ends (before `/`, `?`, `#` or
    what a message puts after a URL)."""
    stop = _PART_END.search(word, start)
    return len(word) if stop is None else stop.start()


def _known_scheme(prefix: str) -> bool:
    """Whether `prefix` (`name:/...`) starts with a scheme memoric opens, `+pool` or not."""
    name = prefix.partition(":")[0].lower().removesuffix(POOLED_SUFFIX)
    return name in SQLITE_SCHEMES | POSTGRES_SCHEMES


def _mask_userinfo(word: str) -> str:
    """`word` with the password of its `user:PASSWORD@` part, if it has one, masked."""
    span = _password_span(word)
    return word if span is None else f"{word[: span[0]]}{MASK}{word[span[1] :]}"


def _secrets(urls) -> set[str]:
    """The passwords of `urls` as they may appear in a message: as typed, percent-decoded, and
    escaped as `repr()` and JSON write them (messages quote URLs so).

    A password runs to the last `@`, or (when the query holds an `@` too) to the first one.
    """
    found = set()
    for url in filter(lambda url: isinstance(url, str), urls):
        span = _password_span(url)
        if span is not None:
            start, end = span
            found |= {url[start:end], url[start : url.find("@", start)]} if "@" in url else {url[start:end]}
        found |= _setting_secrets(url)
    found |= {unquote(secret) for secret in found}
    found |= {quote(secret, safe="", errors="surrogatepass") for secret in found}
    found |= {escaped for secret in found for escaped in (repr(secret)[1:-1], json.dumps(secret)[1:-1])}
    return {secret for secret in found if len(secret) >= MIN_LITERAL_SECRET}


def _setting_secrets(url: str) -> set[str]:
    """The secrets of `url`'s settings (`_query_secrets`, and `password=`-like settings also
    inside an encoded value: ?dbname=password%3D...). A URL of more than MAX_SETTING_SECRETS
    (thousands of parameters) has its query masked whole instead: each secret is looked for in
    the whole message, which took seconds for a URL of 128 KiB."""
    found = _query_secrets(url)
    for text in (url, unquote(url)):
        found |= {match.group(2).strip("'\"") for match in _SECRET_SETTING.finditer(text)}
    if len(found) <= MAX_SETTING_SECRETS:
        return found
    masked_whole = url.partition("?")[2] or url
    return {masked_whole, unquote(masked_whole)}


def _query_secrets(url: str) -> set[str]:
    """The whole values of the URL's `password=`-like query parameters (and the whole
    `name=value` of those memoric does not know, and such a name itself unless it is a plain
    name: `?password:x`), spaces included (libpq takes a raw space in a value), as typed and
    decoded; and, wherever such a name is followed by `=` in the URL, what follows it
    (up to the next known parameter: a `?` or `#` in a password before the query would hide the
    query from a parser)."""
    query = url.partition("?")[2].partition("#")[0]
    pairs = [part.partition("=") for part in query.split("&")]
    decoded = query_pairs(query)
    found = set()
    for name, *_, value in [*pairs, *decoded]:
        if _SECRET_NAME.search(name):
            found.add(value)
        if _unknown(name):
            found |= {f"{name}={value}"} if _PLAIN_NAME.fullmatch(name) else {f"{name}={value}", name}
    return found | _named_values(url)


def _named_values(url: str) -> set[str]:
    """What follows each `password=`-like name in `url`: up to the next `&` that starts a known
    parameter; a name inside such a value (`?token=a&token=b`) starts a value of its own that ends
    at the next `&` or name, so that the values of many names take no more than the URL's length."""
    ends = _known_parameter_starts(url)
    names = list(_SECRET_NAMED.finditer(url))
    found, previous_end = set(), None
    for name, following in itertools.zip_longest(names, names[1:]):
        start = name.end()
        end = ends[bisect.bisect_left(ends, start)]
        if end == previous_end:  # inside the value before: up to the next `&` or name
            ampersand = url.find("&", start, end)
            end = min(end if ampersand < 0 else ampersand, following.start() if following else end)
        else:
            previous_end = end
        found.add(url[start:end])
    return found


def _unknown(name: str) -> bool:
    """Whether memoric does not know a query parameter (`?pasword=` misspelt): its value may be a
    secret, so the whole `name=value` is masked (the value alone may be a common word)."""
    return name.lower() not in KNOWN_PARAMETERS


def _known_parameter_starts(url: str) -> list[int]:
    """Where the value of a `password=`-like setting in `url` may end, in order: at each `&` that
    starts a parameter memoric knows, and at the end (an unknown parameter after the value,
    refused anyway, is taken for part of it)."""
    ends, place = [], url.find("&")
    while place >= 0:
        following = url.find("&", place + 1)
        name = url[place + 1 : len(url) if following < 0 else following].partition("=")[0]
        if name.lower() in KNOWN_PARAMETERS:
            ends.append(place)
        place = following
    return [*ends, len(url)]

"""memoric's one tokenizer: the terms a memory is indexed by and a query is matched with.

Both dialects rank by the terms this module finds, so keyword recall returns the same memories
on SQLite and PostgreSQL (neither database's own tokenizer is used). The rules:

- the text is normalized to NFKC, then case-folded (`"Straße"` and `"STRASSE"` give `strasse`,
  full-width `"ＡＢＣ"` gives `abc`, the ligature `"ﬁ"` gives `fi`); the characters Unicode calls
  default-ignorable are removed (soft hyphens, zero-width joiners, variation selectors: they
  show nothing, so `"soft\u00adware"` is `software`), and the dot above an `i` is dropped, so
  the Turkish `"İSTANBUL"`, which case-folds to i + U+0307, is `istanbul`;
- a term is a run of word characters (Python's `\\w`: letters, digits and `_` of every script)
  together with the combining marks that follow them, so accents and the vowel signs of Indic
  scripts stay inside their word; everything else (spaces, punctuation, symbols, emoji) splits;
- Chinese, Japanese kana and the other ideographic scripts are written without spaces, so each
  ideograph or kana character is a term of its own (`"退款政策"` gives 退, 款, 政, 策);
- a term longer than MAX_TERM_LENGTH characters is cut to its first MAX_TERM_LENGTH (a query
  holding the same long word is cut the same way, so it still matches).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

MAX_TERM_LENGTH = 64
# Ideographs, kana and the other scripts written without spaces: one character, one term.
CJK_RANGES = (
    "\u2e80-\u2fdf"  # CJK radicals, Kangxi radicals
    "\u3005-\u3007\u3021-\u3029\u3038-\u303c"  # ideographic iteration marks and numerals
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f\u31a0-\u31bf"  # Bopomofo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf\u4e00-\u9fff"  # CJK unified ideographs and extension A
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana (NFKC makes them full-width first)
    "\U00020000-\U0003134f"  # CJK extensions B to G, compatibility supplement
)

# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt), removed before terms are found.
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip
_IGNORED = re.compile(
    "[" + "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in DEFAULT_IGNORABLE) + "]+"
)  # a regex: a quarter of the cost of str.translate with a table of these 4,000 code points
DOT_ABOVE = "\u0307"  # case folding makes İ (U+0130) an i followed by it

# The term rule on ASCII text, a quarter of the general rule's cost: \w is [a-z0-9_] once lowered.
_ASCII_TERM = re.compile(r"[a-z0-9_]+")

# Where Unicode has combining marks: the first two planes and the variation selectors supplement.
MARK_PLANES = [*range(0x20000), *range(0xE0000, 0xE1000)]


@functools.cache
def _term_pattern() -> re.Pattern:
    """The term regex: one CJK character, or word characters and combining marks (built once)."""
    marks = "".join(
        _char_range(start, end)
        for start, end in _ranges(
            code for code in MARK_PLANES if unicodedata.category(chr(code)) in ("Mn", "Mc", "Me")
        )
    )
    word = rf"(?:(?![{CJK_RANGES}])\w)"
    # A CJK character is a term when it is a word character: the kana blocks also hold
    # punctuation and sound marks (the middle dot of 東京・大阪), which separate terms.
    return re.compile(rf"(?=\w)[{CJK_RANGES}]|{word}(?:{word}|[{marks}])*")


def _ranges(codes) -> list[tuple[int, int]]:
    """Consecutive code points merged into (first, last) ranges."""
    merged: list[list[int]] = []
    for code in codes:
        if merged and merged[-1][1] == code - 1:
            merged[-1][1] = code
        else:
            merged.append([code, code])
    return [(first, last) for first, last in merged]


def _char_range(first: int, last: int) -> str:
    """A regex character-class range of code points, escaped."""
    return re.escape(chr(first)) if first == last else f"{re.escape(chr(first))}-{re.escape(chr(last))}"


def tokens(text: str) -> list[str]:
    """The terms of `text`, in order, repeats kept (see the module's rules)."""
    if text.isascii():  # NFKC keeps ASCII, case folding lowers it, and it has no marks or CJK
        return [term[:MAX_TERM_LENGTH] for term in _ASCII_TERM.findall(text.lower())]
    return terms_of_folded(folded(text))


def folded(text: str) -> str:
    """`text` as terms are read from it: default-ignorables removed, NFKC, case-folded, İ as i,
    and composed again (folding and the dropped dot can leave an accent apart from its letter)."""
    once = unicodedata.normalize("NFKC", _IGNORED.sub("", text)).casefold()
    if DOT_ABOVE in once:
        once = _dot_above_i().sub(r"i\1", unicodedata.normalize("NFD", once))
    return unicodedata.normalize("NFKC", once)


@functools.cache
def _dot_above_i() -> re.Pattern:
    """Every dot above an i, decomposed: right after it, or after marks that sort before the dot
    (NFKC puts a dot below, a cedilla or an ogonek between them: "İ" + U+0323)."""
    below = "".join(
        _char_range(first, last)
        for first, last in _ranges(code for code in MARK_PLANES if 0 < unicodedata.combining(chr(code)) < 230)
    )
    return re.compile(rf"i([{below}]*){DOT_ABOVE}+")


def shows_something(text: str) -> bool:
    """Whether `text` holds a character that shows: more than whitespace and default-ignorables."""
    return bool(_IGNORED.sub("", text).strip())


def terms_of_folded(text: str) -> list[str]:
    """The terms of text already folded, in order, each cut to MAX_TERM_LENGTH characters."""
    return [term[:MAX_TERM_LENGTH] for term in _term_pattern().findall(text)]


def term_counts(text: str) -> tuple[Counter, int]:
    """Each term of `text` with how often it occurs, and the number of terms (the document length)."""
    found = tokens(text)
    return Counter(found), len(found)


def term_counts_before_009(text: str) -> tuple[Counter, int]:
    """`term_counts` by the tokenizer's rule from 006 to 008 (NFKC, then case folding, nothing
    removed): what the migrations to those versions post, so that a memoric of that time finds
    its own terms."""
    found = terms_of_folded(unicodedata.normalize("NFKC", text).casefold())
    return Counter(found), len(found)


def query_terms(text: str) -> list[str]:
    """The distinct terms of a query, in the order they first occur."""
    return list(dict.fromkeys(tokens(text)))

"""Input that tries memoric: text that lies (str subclasses whose methods or printing say other
characters), and JSON nested as deep as asked."""

from __future__ import annotations


class LyingText(str):
    """A str subclass with no hash, equal to anything, whose methods lie about its characters."""

    __hash__ = None

    def __eq__(self, other):
        return True

    def __str__(self):
        return "lie"

    def lower(self):
        return "lie"

    def strip(self, chars=None):
        return ""


class PrintedText(str):
    """A str subclass that prints as another text (hashable, as a dict key must be)."""

    def __str__(self):
        return "lie"

    def __format__(self, spec):
        return "lie"


def nested(levels: int, leaf=1) -> dict:
    """`leaf` inside `levels` dicts: its JSON depth is `levels`."""
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


def nested_lists(levels: int, leaf=1) -> list:
    """`leaf` inside `levels` lists."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value

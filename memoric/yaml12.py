"""PyYAML's safe loader, reading numbers as YAML 1.2 does (its core schema).

PyYAML implements YAML 1.1, whose numbers surprise: `010` is eight (octal), `1:30` is ninety
(base 60), and `1e-7` is text because a 1.1 float needs a dot. A config read with 1.1 rules could
change a value silently; YAML 1.2 reads `010` as ten, `1:30` as text (refused where a number is
wanted) and `1e-7` as a float. Booleans keep PyYAML's reading. A key given twice in one mapping is
an error, as in YAML 1.2, where PyYAML keeps the last.
"""

from __future__ import annotations

import math
import re

import yaml

INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
MERGE = "tag:yaml.org,2002:merge"
INT_PATTERN = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
FLOAT_PATTERN = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # a key an error may name: no piece of a secret


class Yaml12Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` with YAML 1.2's int and float resolution, and its unique mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """A mapping; a YAML error for a key given twice in it, where PyYAML lets the last one win
        silently (a key a merge `<<` brings may still be given again)."""
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: PyYAML refuses it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, _duplicate(key), key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _duplicate(key) -> str:
    """The problem of a key given twice: the key named when it is a name (a key may be a piece
    of a database URL, which an error must not show)."""
    if isinstance(key, str) and KEY_NAME.fullmatch(key):
        return f"found duplicate key {key}"
    return "found a duplicate key"


def _scalar(loader: Yaml12Loader, node: yaml.ScalarNode, pattern: re.Pattern, kind: str) -> str:
    """The text of a scalar tagged (or resolved) as `kind`; a YAML error unless 1.2 reads it so."""
    text = loader.construct_scalar(node)
    if not isinstance(text, str) or not pattern.match(text):
        raise yaml.constructor.ConstructorError(
            None, None, f"a value tagged {node.tag} is not a YAML 1.2 {kind}", node.start_mark
        )
    return text


def _construct_int(loader: Yaml12Loader, node: yaml.ScalarNode) -> int:
    """A YAML 1.2 int: decimal (leading zeros are decimal), `0o` octal or `0x` hexadecimal."""
    text = _scalar(loader, node, INT_PATTERN, "int")
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)


def _construct_float(loader: Yaml12Loader, node: yaml.ScalarNode) -> float:
    """A YAML 1.2 float, `.inf` and `.nan` included."""
    text = _scalar(loader, node, FLOAT_PATTERN, "float").lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    return math.nan if text == ".nan" else float(text)


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (INT, FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(INT, INT_PATTERN, list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(FLOAT, FLOAT_PATTERN, list("-+0123456789."))
Yaml12Loader.add_constructor(INT, _construct_int)
Yaml12Loader.add_constructor(FLOAT, _construct_float)


def load(text: str):
    """The YAML document `text`, numbers read as YAML 1.2 reads them."""
    return yaml.load(text, Loader=Yaml12Loader)

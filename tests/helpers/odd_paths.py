"""Path-like objects of a caller's that misbehave: `__fspath__` failing, or giving bytes."""

from __future__ import annotations

import os


class BrokenPath(os.PathLike):
    def __fspath__(self):
        raise RuntimeError("no path here")


class BytesPath(os.PathLike):
    def __fspath__(self):
        return b"memoric.yaml"

"""``MODULE:NAME`` references, as the command line and fleets take them (the current folder
is importable, as with ``python -m``)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from sagakit.errors import ConfigError

T = TypeVar("T")


def load(ref: str) -> Any:
    """The object ``ref`` (``package.module:name``) names; a clear :class:`ConfigError`
    when it cannot be found."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{ref!r}: expected MODULE:NAME, e.g. myapp.sagas:TRIP")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{ref!r}: no module named {exc.name!r}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{ref!r}: {module_name} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_as(ref: str, kind: type[T]) -> list[T]:
    """``ref`` as a list of ``kind``: the object itself, or each item of a collection."""
    obj = load(ref)
    items: Iterable[Any] = (
        obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list | tuple) else [obj]
    )
    found = list(items)
    wrong = [x for x in found if not isinstance(x, kind)]
    if wrong or not found:
        got = type(wrong[0]).__name__ if wrong else "nothing"
        raise ConfigError(f"{ref!r} is a {got}, not a {kind.__name__}")
    return found

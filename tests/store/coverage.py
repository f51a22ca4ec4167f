"""Which store methods the conformance suite exercises, checked against the protocol."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from dispatcher.store.base import Store

F = TypeVar("F", bound=Callable[..., Any])

#: Every method some conformance test declared (and, per test, really called).
COVERED: set[str] = set()


def protocol_methods() -> dict[str, inspect.Signature]:
    """Public methods of the Store protocol and of every protocol it extends."""
    methods: dict[str, inspect.Signature] = {}
    for cls in reversed(Store.__mro__):
        if cls is object or not getattr(cls, "_is_protocol", False):
            continue
        for name, member in vars(cls).items():
            if not name.startswith("_") and inspect.isfunction(member):
                methods[name] = inspect.signature(member)
    return methods


def covers(*names: str) -> Callable[[F], F]:
    """Declare the store methods a conformance test exercises."""

    def mark(fn: F) -> F:
        fn.covers = names  # type: ignore[attr-defined]
        COVERED.update(names)
        return fn

    return mark


class Recording:
    """Forwards everything to a store, remembering which methods were called."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.called: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if callable(attr):
            self.called.add(name)
        return attr

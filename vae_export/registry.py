"""A named registry that code outside the package extends: the model families and the engines
(`vae_export.families`, `vae_export.engines`). Built-in entries come from a function (called on
use, so their heavy imports wait until something asks), others from `register(...)` or from
installed packages' entry points in the registry's group, read once per process."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: type[T], group: str, builtins: Callable[[], list[T]]) -> None:
        self.kind, self.group, self._builtins = kind, group, builtins
        self._registered: list[T] = []
        self._loaded_plugins = False

    def register(self, item: T) -> T:
        """Add an entry (or replace the one of the same name); returns it."""
        if not isinstance(item, self.kind) or not getattr(item, "name", ""):
            raise TypeError(f"register: expected a named {self.kind.__module__}.{self.kind.__name__}, found {item!r}")
        self.unregister(item.name)  # type: ignore[attr-defined]
        self._registered.append(item)
        return item

    def unregister(self, name: str) -> None:
        self._registered[:] = [e for e in self._registered if e.name != name]  # type: ignore[attr-defined]

    def _plugins(self) -> None:
        """Entries other packages declare (entry points), registered once per process."""
        if self._loaded_plugins:
            return
        self._loaded_plugins = True
        for point in entry_points(group=self.group):
            found = point.load()
            item = found() if isinstance(found, type) else found
            if isinstance(item, self.kind) and item.name not in {e.name for e in self._registered}:  # type: ignore[attr-defined]
                self.register(item)

    def entries(self) -> list[T]:
        """Registered entries first, then the built-ins they do not replace."""
        self._plugins()
        names = {e.name for e in self._registered}  # type: ignore[attr-defined]
        return [*self._registered, *(e for e in self._builtins() if e.name not in names)]  # type: ignore[attr-defined]

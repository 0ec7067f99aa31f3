"""One small name -> object registry, used for backbones, datasets, recipes and matchers.

Unknown names fail with the list of valid ones, and users register their own without editing library files.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from biohash.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to objects.

    Args:
        kind: what is registered, used in error messages ("backbone", "dataset", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator that registers an object under `name` and its aliases."""

        def wrap(obj: T) -> T:
            if name in self._items or name in self._aliases:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            for alias in aliases:
                self._aliases[alias] = name
            return obj

        return wrap

    def canonical(self, name: str) -> str:
        """The registered name behind `name` (which may be an alias); raises UnknownNameError listing valid names."""
        name = self._aliases.get(name, name)
        if name not in self._items:
            valid = ", ".join(self.names())
            raise UnknownNameError(f"unknown {self.kind} {name!r}; expected one of: {valid}")
        return name

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def create(self, name: str, **kwargs: object):
        """Call the factory registered as `name` with `kwargs` (None values dropped, so its defaults apply); an
        argument it does not take is a one-line error listing the ones it does (not a TypeError traceback)."""
        import inspect

        factory = cast(Callable[..., Any], self.get(name))
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        params = inspect.signature(factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(kwargs) - set(params))
            if unknown:
                accepted = ", ".join(n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL) or "none"
                raise UnknownNameError(f"{self.kind} {self.canonical(name)!r} takes no option "
                                       f"{', '.join(map(repr, unknown))}; it accepts: {accepted}")
        return factory(**kwargs)

    def aliases(self, name: str) -> list[str]:
        """Other names of a registered name, sorted."""
        return sorted(a for a, n in self._aliases.items() if n == name)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or name in self._aliases)

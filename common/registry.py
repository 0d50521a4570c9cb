"""A name → entry registry that refuses duplicate names (models, weights)."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """Entries with a ``.name``, kept by name; registering a name twice is an error."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, entry: T) -> T:
        if entry.name in self:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        self[entry.name] = entry
        return entry

    def names(self) -> list[str]:
        return sorted(self)

    def lookup(self, name: str) -> T:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {self.names()}")
        return self[name]

"""A thread-safe keyed store per kind, holding converted (immutable) values.

Watch threads call replace_all / upsert / delete; readers get immutable copies. A generation
counter lets readers cache derived snapshots until something changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from acr_helper.kube.convert import object_key

V = TypeVar("V")
Key = tuple[str, str]


class Store(Generic[V]):
    def __init__(self, kind: str, convert: Callable[[Any], V]) -> None:
        self.kind = kind
        self._convert = convert
        self._lock = threading.Lock()
        self._items: dict[Key, V] = {}
        self._synced = threading.Event()
        self._generation = 0

    # -- writers (the watch thread) -------------------------------------------------------

    def replace_all(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Replace everything (a relist): also drops objects deleted while we were disconnected."""
        items = {object_key(o): self._convert(o) for o in objects}
        with self._lock:
            self._items = items
            self._generation += 1
        self._synced.set()

    def upsert(self, obj: Mapping[str, Any]) -> None:
        value = self._convert(obj)
        with self._lock:
            self._items[object_key(obj)] = value
            self._generation += 1

    def delete(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if self._items.pop(object_key(obj), None) is not None:
                self._generation += 1

    def clear(self) -> None:
        with self._lock:
            self._items = {}
            self._generation += 1
        self._synced.clear()

    # -- readers --------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, namespace: str, name: str) -> V | None:
        with self._lock:
            return self._items.get((namespace, name))

    def items(self) -> Mapping[Key, V]:
        with self._lock:
            return MappingProxyType(dict(self._items))

    def values(self) -> list[V]:
        with self._lock:
            return list(self._items.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

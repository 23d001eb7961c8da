"""One registry type for everything selectable by name: SAEs, datasets, encoders, analyses.

A registry is a mapping filled by a decorator where each entry is defined (SAELens's and timm's
pattern). Registering a name twice is an error; asking for an unknown name is one sentence that
lists the known names. On first lookup every module of the registry's packages is imported, so an
entry is present as soon as its file exists: adding an architecture, dataset, encoder or analysis is
one new file, with no list to edit. The packages are named, not imported, by the module that defines
the registry, so a registry low in the tree can hold entries defined above it (the analysis registry
holds the interventions' analyses) without an import running back up.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from vista.errors import VistaError

T = TypeVar("T")
E = TypeVar("E")


class Registry(Mapping[str, T], Generic[T]):
    """``name -> entry`` (a class or a builder function)."""

    def __init__(self, kind: str, *packages: str) -> None:
        self.kind = kind
        """What an entry is, for messages: "SAE architecture", "dataset", ..."""
        self.packages = packages
        """Where the entries are defined: every module of each is imported on first lookup."""
        self._entries: dict[str, T] = {}
        self._loading = False

    def register(self, name: str) -> Callable[[E], E]:
        """Decorator: add the decorated class or function under ``name``."""

        def deco(obj: E) -> E:
            self.add(name, obj)  # type: ignore[arg-type]
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice.")
        self._entries[name] = obj

    def get_entry(self, name: str) -> T:
        """The entry ``name``, or a ``VistaError`` naming the choices."""
        self._load()
        if name not in self._entries:
            raise VistaError(
                f"Unknown {self.kind} {name!r}; choose one of {sorted(self._entries)}."
            )
        return self._entries[name]

    def _load(self) -> None:
        if not self._loading:
            self._loading = True
            for name in self.packages:
                package = importlib.import_module(name)
                for module in pkgutil.iter_modules(package.__path__, f"{name}."):
                    if not module.name.endswith(".__main__"):  # a script, not a definition
                        importlib.import_module(module.name)

    # -- Mapping ----------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        self._load()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

"""Any tonic data set as a streamlsm source: replay, experiments and ``data info`` on it.

A tonic data set is an indexable object: ``ds[i] -> (events, target)``, ``len(ds)``, with its
``transform`` applied inside ``__getitem__``, and ``sensor_size`` / ``classes`` attributes. The
events are structured arrays with tonic's field names (x, y, t, p; t in microseconds; any widths),
converted here by name (``streamlsm.events.as_layout``). ``tonic`` itself is imported only to build a
data set by its class name (``-o dataset=NMNIST`` on the command line): an object built in Python is
wrapped as it is, and tonic is then not needed at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streamlsm.errors import ConfigError, DataError, WireError
from streamlsm.events import MODALITIES, as_layout

from ._common import round_duration

__all__ = ["TonicDataset"]


def _by_name(root: str | Path, dataset: str, options: dict[str, Any]) -> Any:
    try:
        import tonic.datasets
    except ImportError:
        raise ConfigError("tonic", "building a tonic data set by name needs tonic: "
                          "pip install 'streamlsm[tonic]'") from None
    cls = getattr(tonic.datasets, dataset, None)
    if not isinstance(cls, type):
        known = sorted(n for n in dir(tonic.datasets) if n[:1].isupper())
        raise ConfigError("dataset", f"tonic has no data set {dataset!r}; known: {known}")
    try:
        return cls(save_to=str(root), **options)
    except TypeError as exc:
        raise ConfigError("option", f"tonic.datasets.{dataset}: {exc}") from None
    except (OSError, RuntimeError) as exc:  # tonic tries to download what it does not find
        raise DataError(root, f"tonic.datasets.{dataset} could not load its files here: {exc}") from None


class TonicDataset:
    """A tonic data set object (or one built by name from ``root``) as a streamlsm Dataset.

    ``root``: a tonic data set object (anything with ``__getitem__`` -> (events, target) and
    ``__len__``), or the folder tonic's ``save_to`` points at, with ``dataset`` naming the class in
    ``tonic.datasets`` and the remaining options passed to it (e.g. ``train=False``).
    ``modality``: what the events are ("vision", "audio", "neural"); ``layout`` (default: from
    the first sample's field names: x, y, p -> dvs; x, p -> cochlea; x -> spikes).
    ``transform`` is applied after the data set's own transforms. A label is the target as text
    (tonic's numbered classes give "0", "1", ...; ``class_names`` holds tonic's names). Events
    are sorted by time when a transform left them unsorted.
    """

    name = "tonic"

    def __init__(self, root: Any, dataset: str | None = None, *, modality: str = "vision",
                 layout: str | None = None, transform: Callable[[np.ndarray], Any] | None = None,
                 **options: Any) -> None:
        if isinstance(root, (str, Path)):
            if dataset is None:
                raise ConfigError("dataset", "name the tonic data set class, e.g. -o dataset=NMNIST "
                                  "(or pass a tonic data set object in Python)")
            self.source = _by_name(root, dataset, options)
        else:
            if dataset is not None or options:
                raise ConfigError("option", f"a tonic data set object takes no build options, got "
                                  f"{sorted([*options, *(['dataset'] if dataset else [])])}")
            self.source = root
        if not (hasattr(self.source, "__getitem__") and hasattr(self.source, "__len__")):
            raise ConfigError("root", f"not a data set: {type(self.source).__name__} has no "
                              f"__getitem__/__len__")
        if modality not in MODALITIES:
            raise ConfigError("modality", f"must be one of {list(MODALITIES)}, got {modality!r}")
        if transform is not None and not callable(transform):
            raise ConfigError("transform", f"must be callable, got {transform!r}")
        self.modality = modality
        self.transform = transform
        self._cache: tuple[int, Any, Any] | None = None
        self._last_t: dict[int, int | None] = {}
        size = getattr(self.source, "sensor_size", None)
        self.sensor_size = tuple(int(v) for v in size) if size is not None else ()
        names = getattr(self.source, "classes", None) or ()
        self.class_names = tuple(str(c) for c in names)
        self.classes = tuple(str(i) for i in range(len(self.class_names)))
        if layout is None and len(self.source):
            ev = self._item(0)[0]
            fields = getattr(getattr(ev, "dtype", None), "names", None)
            if fields is None:
                raise DataError(f"tonic[{0}]", f"gives {type(ev).__name__} {getattr(ev, 'shape', '')}, "
                                f"not structured events (a transform such as ToFrame? replay needs events)")
            layout = _layout_of_fields(fields)
        self.layout = layout or "dvs"

    def _item(self, i: int) -> tuple[Any, Any]:
        if self._cache is not None and self._cache[0] == i:
            return self._cache[1], self._cache[2]
        ev, target = self.source[i]
        if self.transform is not None:
            ev = self.transform(ev)
        self._cache = (i, ev, target)
        return ev, target

    # -- the Dataset protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        return self._item(i)

    def label(self, i: int) -> str | None:
        targets = getattr(self.source, "targets", None)
        target = targets[i] if targets is not None and len(targets) == len(self) else self._item(i)[1]
        if target is None:
            return None
        if isinstance(target, np.ndarray) and target.size == 1:
            target = target.item()
        return str(target)

    @property
    def labels(self) -> list[str | None]:
        return [self.label(i) for i in range(len(self))]

    def events(self, i: int) -> np.ndarray:
        ev = self._item(i)[0]
        try:
            ev = as_layout(ev, self.layout)
        except WireError as exc:
            raise DataError(f"tonic[{i}]", f"events do not fit the {self.layout!r} layout: {exc}") from None
        t = ev["t"]
        if len(t) > 1 and np.count_nonzero(t[1:] < t[:-1]):
            ev = ev[np.argsort(t, kind="stable")]
        self._last_t[i] = int(ev["t"][-1]) if len(ev) else None
        return ev

    def duration_us(self, i: int) -> int:
        if i not in self._last_t:
            self.events(i)
        return round_duration(self._last_t[i])

    def __repr__(self) -> str:
        return f"<TonicDataset of {type(self.source).__name__}: {len(self)} samples, layout {self.layout}>"


def _layout_of_fields(fields: tuple[str, ...]) -> str:
    have = set(fields)
    if {"t", "x", "y", "p"} <= have:
        return "dvs"
    if {"t", "x", "p"} <= have:
        return "cochlea"
    if {"t", "x"} <= have:
        return "spikes"
    raise DataError("tonic[0]", f"fields {list(fields)} hold no streamlsm layout (need t and x, "
                    f"optionally y and p)")

"""The control commands of ``streamlsm ctl`` (status, register, remove, snapshot, reload) and support files."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ControlError, WireError
from ..net import wire
from ..net.security import confine
from ..plugins import SOURCE_GROUP, load
from .config import ControlConfig
from .served import ServedModel

__all__ = ["Control", "load_support"]


_LAYOUT_MODALITY = {"dvs": "vision", "cochlea": "audio", "spikes": "neural"}


def load_support(path: Path, modality: str, req: dict) -> tuple[str, Any, str]:
    """Support samples of one class from a file: (kind, data, modality).

    An ``.npz`` holds ``embeddings`` (n, D), or ``features`` (n, F), or concatenated ``events`` (one
    streamlsm layout) with per-sample ``lengths`` and optional ``durations`` (us). With
    ``req["dataset"]`` the path is a data set root read by that source plug-in; the samples labelled
    ``req.get("from_label", req["label"])`` are used, at most ``req.get("limit", 20)``.
    """
    if req.get("dataset"):
        cls = load(SOURCE_GROUP, str(req["dataset"]))
        opts = {k: req[k] for k in ("split",) if k in req}
        ds = cls(path, **opts)
        want, limit = str(req.get("from_label", req.get("label"))), int(req.get("limit", 20))
        idx = [i for i in range(len(ds)) if ds.label(i) == want][:limit]
        if not idx:
            raise ControlError(f"no sample labelled {want!r} in {path}")
        return ("events", ([ds.events(i) for i in idx], [int(ds.duration_us(i)) for i in idx]),
                modality or ds.modality)
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read support file {path}: {exc}") from None
    if "embeddings" in arrays:
        return "embeddings", arrays["embeddings"], modality
    if not modality and "events" in arrays:
        from ..events import layout_of

        modality = _LAYOUT_MODALITY[layout_of(arrays["events"])]
    if not modality:
        raise ControlError("say which modality the support samples are ('modality')")
    if "features" in arrays:
        return "features", arrays["features"].astype(np.float32), modality
    if "events" in arrays and "lengths" in arrays:
        ev, lengths = arrays["events"], arrays["lengths"].astype(np.int64)
        if lengths.ndim != 1 or (lengths < 0).any() or lengths.sum() != len(ev):
            raise ControlError(f"{path}: lengths do not add up to the {len(ev)} events")
        edges = np.concatenate([[0], np.cumsum(lengths)])
        samples = [ev[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
        durations = arrays.get("durations")
        return "events", (samples, None if durations is None else [int(d) for d in durations]), modality
    raise ControlError(f"{path} holds none of: embeddings, features, events + lengths")


class Control:
    """The control commands over a served model.

    ``served`` is what the commands change; ``lock`` is the lock its owner holds around every
    pipeline call (a change waits for the call in flight, and the next call sees the change);
    ``status`` gives the owner's status reply; ``counters`` is the owner's counter table, where
    ``control`` and ``control_errors`` are counted.
    """

    def __init__(self, served: ServedModel, config: ControlConfig, lock: asyncio.Lock,
                 status: Callable[[], dict], counters: dict[str, int]) -> None:
        self.served = served
        self.config = config
        self.lock = lock
        self.status = status
        self.counters = counters

    def confine(self, raw: object, what: str = "path") -> Path:
        return confine(raw, self.config.allowed_dirs, what)

    async def serve(self, sock) -> None:
        """Answer requests on a REP socket for ever; a bad request gets an error reply, never an exit."""
        while True:
            frames = await sock.recv_multipart()  # all parts: REP cannot reply with parts unread
            self.counters["control"] += 1
            try:
                if len(frames) != 1:
                    raise ControlError(f"a control request is one message part, got {len(frames)}")
                req = wire.unpack_control(frames[0])
                if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                    raise ControlError("a control request is a map with a 'cmd' string")
                reply = await self.handle(req)
            except Exception as exc:  # noqa: BLE001 - a bad request must never kill the control loop
                self.counters["control_errors"] += 1
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            try:
                out = wire.pack_control(reply)
            except WireError as exc:  # a reply value msgpack cannot carry: say so, keep serving
                self.counters["control_errors"] += 1
                out = wire.pack_control({"ok": False, "error": f"WireError: {exc}"})
            await sock.send(out)

    async def handle(self, req: dict) -> dict:
        """Run one control command: status, register, remove, snapshot, reload."""
        cmd, served = req["cmd"], self.served
        if cmd == "status":
            return self.status()
        if cmd == "register":
            label = req.get("label")
            path = self.confine(req.get("path"))
            modality = req.get("modality") or ""
            if req.get("dataset"):  # a symlink inside the data set must not lead outside allowed_dirs
                await asyncio.to_thread(self._confine_tree, path)
            kind, data, mod = await asyncio.to_thread(load_support, path, modality, req)
            async with self.lock:  # Reservoir.encode may not run beside a feed (shared reservoir)
                emb = await asyncio.to_thread(served.embed_support, kind, data, mod)
            rule = "replace" if req.get("replace") else str(req.get("rule") or "mean")
            if rule not in ("mean", "ema", "replace"):
                raise ControlError(f"register rule must be 'mean', 'ema' or 'replace', got {rule!r}")
            async with self.lock:
                served.change(lambda m: m.enrol(label, emb, rule, source=str(path)))
            m = served.matcher
            return {"ok": True, "label": label, "samples": int(len(emb)), "modality": mod, "rule": rule,
                    "enrolled": m.count(label), "prototype_version": m.version,
                    "classes": m.labels, "calibration": m.calibration}
        if cmd == "remove":
            async with self.lock:
                served.change(lambda m: m.remove(req.get("label")))
            return {"ok": True, "classes": served.matcher.labels, "prototype_version": served.matcher.version}
        if cmd == "snapshot":
            async with self.lock:
                path = served.checkpoint()
            return {"ok": True, "path": str(path), "prototype_version": served.matcher.version}
        if cmd == "reload":
            path = self.confine(req["path"], "bundle") if req.get("path") else served.model_config.bundle
            bundle = await asyncio.to_thread(served.load_bundle, path)
            async with self.lock:  # between two pipeline calls: input keeps queueing meanwhile
                served.swap(bundle)
            return {"ok": True, "bundle_hash": bundle.hash, "path": str(path)}
        raise ControlError(f"unknown command {cmd!r}; known: status, register, remove, snapshot, reload")

    def _confine_tree(self, root: Path) -> None:
        """ControlError if any symlink under ``root`` resolves outside control.allowed_dirs."""
        import os

        for folder, dirs, files in os.walk(root, followlinks=False):
            for name in dirs + files:
                p = Path(folder) / name
                if p.is_symlink():
                    self.confine(str(p), "a link in the data set")

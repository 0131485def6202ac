"""The daemon's control side: support files for ``register``, and the commands of ``streamlsm ctl``."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import numpy as np

from . import wire
from .errors import ControlError, WireError
from .pipeline_parts import embed
from .plugins import SOURCE_GROUP, load
from .readout.bundle import Bundle
from .readout.calibration import bundle_calibration

__all__ = ["load_support", "ControlCommands"]


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
        from .events import layout_of

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


class ControlCommands:
    """The control commands of ``Daemon`` (a mixin: it uses the daemon's config, matcher, bundle,
    pipeline, counters and lock): status, register, remove, snapshot, reload, and checkpoints."""

    def _checkpoint(self, force: bool = True) -> Path | None:
        if not force and self.matcher.version == self._saved_version:
            return None
        path = Path(self.config.model.prototypes)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.matcher.save(path)
        self._saved_version = self.matcher.version
        self.counters["checkpoints"] += 1
        return path

    def _transact(self, change) -> None:
        """Apply a class change and checkpoint it; if either fails, the matcher is as before.

        A full disk or an unwritable path leaves the previous checkpoint intact (atomic writes) and
        the registered classes in memory equal to what a restart would restore.
        """
        backup = copy.deepcopy(self.matcher.__dict__)
        try:
            change()
            self._checkpoint()
        except BaseException:
            self.matcher.__dict__.clear()
            self.matcher.__dict__.update(backup)
            raise

    def confine(self, raw: object, what: str = "path") -> Path:
        """A path inside one of control.allowed_dirs (resolved, symlinks followed) or ControlError."""
        if not isinstance(raw, str) or not raw or "\x00" in raw:
            raise ControlError(f"{what} must be a non-empty path string")
        p = Path(raw).expanduser().resolve()
        for d in self.config.control.allowed_dirs:
            if p.is_relative_to(Path(d).expanduser().resolve()):
                return p
        raise ControlError(f"{what} {raw!r} lies outside the allowed directories")

    async def _control(self, sock) -> None:
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
        cmd = req["cmd"]
        if cmd == "status":
            return self.status()
        if cmd == "register":
            label = req.get("label")
            path = self.confine(req.get("path"))
            modality = req.get("modality") or ""
            kind, data, mod = await asyncio.to_thread(load_support, path, modality, req)
            emb = await asyncio.to_thread(self._embed, kind, data, mod)
            rule = "replace" if req.get("replace") else str(req.get("rule") or "mean")
            if rule not in ("mean", "ema", "replace"):
                raise ControlError(f"register rule must be 'mean', 'ema' or 'replace', got {rule!r}")
            async with self._lock:
                self._transact(lambda: self.matcher.enrol(label, emb, rule, source=str(path)))
            return {"ok": True, "label": label, "samples": int(len(emb)), "modality": mod, "rule": rule,
                    "enrolled": self.matcher.count(label), "prototype_version": self.matcher.version,
                    "classes": self.matcher.labels, "calibration": self.matcher.calibration}
        if cmd == "remove":
            async with self._lock:
                self._transact(lambda: self.matcher.remove(req.get("label")))
            return {"ok": True, "classes": self.matcher.labels, "prototype_version": self.matcher.version}
        if cmd == "snapshot":
            async with self._lock:
                path = self._checkpoint()
            return {"ok": True, "path": str(path), "prototype_version": self.matcher.version}
        if cmd == "reload":
            path = self.confine(req["path"], "bundle") if req.get("path") else self.config.model.bundle
            bundle = await asyncio.to_thread(Bundle.load, path)
            async with self._lock:  # between two batches: input keeps queueing meanwhile
                self.pipeline.swap_bundle(bundle, self._factory)
                self.bundle = bundle
                self.matcher.calibrate(bundle_calibration(bundle), bundle.seen_classes,
                                       self.config.model.error_target)
                self.counters["reloads"] += 1
            return {"ok": True, "bundle_hash": bundle.hash, "path": str(path)}
        raise ControlError(f"unknown command {cmd!r}; known: status, register, remove, snapshot, reload")

    def _embed(self, kind: str, data: Any, modality: str):
        if kind == "embeddings":
            return data
        if kind == "features":
            return embed(self.bundle, modality, data)
        samples, durations = data
        return self.pipeline.embed_support(modality, samples, durations)

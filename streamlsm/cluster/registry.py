"""The registry: the one source of truth for the registered classes (prototypes) of a cluster.

A named Ray actor (async) pinned to the gateway's node, where the daemon config's paths
(``model.prototypes``, ``control.allowed_dirs``) are the gateway's own. It runs the daemon's own
control commands (``register``, ``remove``, ``snapshot``: support files confined to
``control.allowed_dirs``, the change and its checkpoint as one transaction), restores the
checkpoint at start exactly as the daemon does, and hands its state (``version``, JSON, npz bytes)
to the shards, which refresh whenever the version the gateway sends with a batch differs from
theirs. Requests and replies cross the actor boundary as msgpack bytes with the daemon's limits.
"""

from __future__ import annotations

import asyncio
import time

from ..daemon.control import Control
from ..daemon.served import ServedModel
from ..errors import ControlError
from ..net import wire
from .model import bundle_from_files, check_cluster_config, config_from_plain, matcher_to_parts

__all__ = ["Registry", "CLUSTER_COMMANDS"]

CLUSTER_COMMANDS = ("register", "remove", "snapshot")


class Registry:
    """``state() -> (version, json, npz)``; ``control(request bytes) -> reply bytes``.

    The daemon's own parts: a ``ServedModel`` (checkpoint restored and written exactly as the
    daemon does; its pipeline embeds support samples) and ``Control`` (the commands).
    """

    def __init__(self, config: dict, bundle_files: dict, bundle_hash: str) -> None:
        self.config = config_from_plain(config)
        check_cluster_config(self.config)
        cfg = self.config
        self.served = ServedModel(cfg.model, cfg.pipeline, cfg.limits,
                                  bundle=bundle_from_files(bundle_files, bundle_hash))
        self.counters = {"control": 0, "control_errors": 0}
        self.commands = Control(self.served, cfg.control, asyncio.Lock(), self.status, self.counters)
        self._t0 = time.monotonic()

    @property
    def matcher(self):
        return self.served.matcher

    def version(self) -> int:
        return self.matcher.version

    def state(self) -> tuple[int, str, bytes]:
        state, arrays = matcher_to_parts(self.matcher)
        return self.matcher.version, state, arrays

    def status(self) -> dict:
        return {"prototype_version": self.matcher.version, "classes": self.matcher.labels,
                "calibration": self.matcher.calibration, "bundle_hash": self.served.bundle.hash,
                "prototypes": str(self.config.model.prototypes), "checkpoints": self.served.checkpoints,
                **self.counters}

    async def control(self, raw: bytes) -> bytes:
        """One control request (msgpack bytes, the daemon's limits) -> the reply (msgpack bytes)."""
        self.counters["control"] += 1
        try:
            req = wire.unpack_control(raw)
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise ControlError("a control request is a map with a 'cmd' string")
            if req["cmd"] not in CLUSTER_COMMANDS:
                raise ControlError(f"the registry runs {list(CLUSTER_COMMANDS)}, not {req['cmd']!r}")
            reply = await self.commands.handle(req)
        except Exception as exc:  # noqa: BLE001 - a bad request must never kill the registry
            self.counters["control_errors"] += 1
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        try:
            return wire.pack_control(reply)
        except Exception as exc:  # noqa: BLE001
            self.counters["control_errors"] += 1
            return wire.pack_control({"ok": False, "error": f"WireError: {exc}"})

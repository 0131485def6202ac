"""A shard: one ``Pipeline`` (the reservoir state of the streams it owns, the projection heads, the
matcher) run by the daemon's own processing loop (``streamlsm.loop.ProcessLoop``).

``Shard`` is a plain class; the gateway makes it a Ray actor (``ray.remote(...)(Shard)``, restarted
by Ray when its process or node dies). Everything that crosses a call is a plain value: the wire
frames as bytes, the receive stamps as ints, label frames back as bytes, counters as a dict of
numbers. The shard decodes every frame itself with the daemon's limits (``wire.decode``), so a
gateway cannot hand it anything the daemon would not take from a socket.
"""

from __future__ import annotations

import os
import secrets
import time

from ..daemon.served import vet_bundle
from ..errors import WireError
from ..events import EventPacket
from ..loop import ProcessLoop
from ..net import wire
from ..pipeline import Pipeline
from .model import bundle_from_files, check_cluster_config, config_from_plain, matcher_from_parts

__all__ = ["Shard"]


class Shard:
    """``process(frames, received_ns, prototype_version) -> (label frames, counters)``.

    ``frames`` is flat: topic, header, payload of each packet in turn (``wire.encode`` frames as
    bytes); ``received_ns`` one stamp per packet. The reply's label frames are flat too (topic,
    header of each label). When ``prototype_version`` differs from the shard's, the shard first
    takes the prototypes from the registry actor named ``registry`` (the one source of truth).
    """

    def __init__(self, config: dict, bundle_files: dict, bundle_hash: str, registry: str | None = None,
                 namespace: str | None = None, prototypes: tuple[str, bytes] | None = None) -> None:
        self.config = config_from_plain(config)
        check_cluster_config(self.config)
        self.bundle = bundle_from_files(bundle_files, bundle_hash)
        self._registry, self._namespace = registry, namespace
        self.incarnation = f"{os.getpid()}-{secrets.token_hex(4)}"  # new after every restart
        state, arrays = prototypes if prototypes is not None else self._fetch()
        self.matcher = matcher_from_parts(state, arrays, self.bundle, self.config.model.error_target)
        lim = self.config.limits
        vet_bundle(self.bundle, self.matcher.dim, lim.max_neurons, lim.model_mb)
        self.limits = wire.WireLimits(max_events=lim.max_events)
        self.pipeline = Pipeline(self.bundle, self.matcher, self.config.pipeline)
        self.loop = ProcessLoop(self.pipeline, lim.max_call_us)
        self.counters = {"calls": 0, "packets": 0, "wire_errors": 0, "refreshes": 0}
        self._cpu0 = time.process_time()
        if lim.warm_up:
            self.pipeline.warm_up()

    def _fetch(self) -> tuple[str, bytes]:
        import ray  # only inside a Ray actor

        reg = ray.get_actor(self._registry, namespace=self._namespace)
        _version, state, arrays = ray.get(reg.state.remote())
        return state, arrays

    def _refresh(self) -> None:
        state, arrays = self._fetch()
        m = matcher_from_parts(state, arrays, self.bundle, self.config.model.error_target)
        # the pipeline keeps its matcher object: its class table is replaced (as a rollback would)
        self.matcher.set_classes_state(m.classes_state())
        self.counters["refreshes"] += 1

    def ping(self) -> dict:
        """Who answers: the incarnation (new after each restart), pid, node and prototype version."""
        node = ""
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - outside Ray (a plain object in tests): no node
            pass
        return {"incarnation": self.incarnation, "pid": os.getpid(), "node": node,
                "prototype_version": self.matcher.version}

    def process(self, frames: list, received_ns: list, prototype_version: int = -1) -> tuple[list, dict]:
        if prototype_version >= 0 and prototype_version != self.matcher.version and self._registry:
            self._refresh()
        items = []
        if len(frames) != 3 * len(received_ns):
            raise ValueError(f"{len(frames)} frames for {len(received_ns)} stamps (3 frames a packet)")
        for i, recv in enumerate(received_ns):
            try:
                msg = wire.decode(frames[3 * i:3 * i + 3], self.limits)
            except WireError:
                self.counters["wire_errors"] += 1
                continue
            if type(msg) is EventPacket:
                items.append((msg, int(recv)))
            else:
                self.counters["wire_errors"] += 1  # a label is no input
        labels = self.loop(items)
        out: list = []
        for lab in labels:
            topic, header, _empty = wire.encode_label(lab)
            out += (topic, header)
        self.counters["calls"] += 1
        self.counters["packets"] += len(items)
        return out, self.stats()

    def stats(self) -> dict:
        return {**self.counters, "incarnation": self.incarnation, "loop": self.loop.stats.as_dict(),
                "pipeline": self.pipeline.stats.as_dict(), "streams": len(self.pipeline.streams),
                "prototype_version": self.matcher.version, "cpu_s": time.process_time() - self._cpu0}

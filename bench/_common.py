"""Helpers the benchmarks share: a label subscriber thread and a small N-MNIST-preset model."""

from __future__ import annotations

import threading
import time

import numpy as np
import zmq

__all__ = ["LabelThread", "LabelCollector", "nmnist_model"]


class LabelThread:
    """A SUB socket on the label topic, read in a daemon thread: ``on_label(arrival_ns, frames)`` each."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"lb/")
        self.sock.connect(endpoint)
        self._run = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def on_label(self, arrival_ns: int, frames: list) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while self._run:
            if self.sock.poll(50):
                frames = self.sock.recv_multipart()
                self.on_label(time.time_ns(), frames)

    def close(self) -> None:
        self._run = False
        self.thread.join()
        self.sock.close(0)


class LabelCollector(LabelThread):
    """Collects (arrival_ns, frames) of every label; ``take`` / ``wait`` return them decoded."""

    def __init__(self, endpoint: str, settle_s: float = 0.3) -> None:
        self.got: list = []
        super().__init__(endpoint)
        time.sleep(settle_s)  # the subscription reaches the publisher

    def on_label(self, arrival_ns: int, frames: list) -> None:
        self.got.append((arrival_ns, frames))

    def take(self) -> list:
        from streamlsm.net import wire

        out, self.got = self.got, []
        return [(t, wire.decode(f)) for t, f in out]

    def wait(self, n: int, timeout: float) -> list:
        """Up to ``timeout`` s for ``n`` labels (then 0.2 s more for stragglers); all taken."""
        t0 = time.monotonic()
        while len(self.got) < n and time.monotonic() - t0 < timeout:
            time.sleep(0.02)
        time.sleep(0.2)
        return self.take()


def nmnist_model(dim: int, events: int = 400, sample_us: int = 100_000, packet_us: int = 10_000):
    """(bundle, matcher): random heads on the N-MNIST reservoir preset, one prototype per class
    from six synthetic support samples (seed 99)."""
    from streamlsm.config import to_dict
    from streamlsm.events import DVS_DTYPE
    from streamlsm.model.prototypes import PrototypeMatcher
    from streamlsm.reservoir import Reservoir, preset
    from streamlsm.testing import make_bundle
    from streamlsm.testing.procs import packets_from_samples, random_samples

    cfg = preset("nmnist")
    res = Reservoir(cfg)
    bundle = make_bundle(res.n_features, dim, reservoirs={"vision": to_dict(cfg)})
    matcher = PrototypeMatcher(dim)
    for i, (ev, label) in enumerate(random_samples(6, DVS_DTYPE, 100_000, events=events, seed=99)):
        feats = res.feed(packets_from_samples([(ev, label)], f"support{i}", packet_us, duration_us=sample_us))
        matcher.add(label, bundle.embed("vision", np.stack([f.counts for f in feats])))
    return bundle, matcher

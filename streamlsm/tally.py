"""What a reader of the streams keeps count of: packets per stream (gaps, duplicates), labels
(accuracy overall, on seen and unseen classes, abstentions) and latency. Pure bookkeeping, no I/O:
``streamlsm subscribe``, its ``--pretty`` view and the console sink all count with one ``Tally``.
"""

from __future__ import annotations

import numpy as np

from .events import EventPacket, LabelEvent
from .model.prototypes import UNKNOWN

__all__ = ["Tally", "distribution"]


def distribution(values: list[float]) -> dict:
    """p50, p99, max and count of a list (None when empty)."""
    v = np.asarray(values, dtype=np.float64)
    if not v.size:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    return {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)), "max": float(v.max()),
            "n": int(v.size)}


class Tally:
    """Running counts of packets and labels; ``unseen`` names the classes never trained on.

    Latencies, in milliseconds: ``packet`` (a packet's ``sent_ns`` -> here), ``server`` (the
    server received a sample's last packet -> its label here) and ``end_to_end`` (that packet was
    sent -> its label here).
    """

    def __init__(self, unseen: list[str] | tuple[str, ...] = ()) -> None:
        self.unseen = {str(c) for c in unseen}
        self.streams: dict[str, dict] = {}
        self.packets = self.events = 0
        self.labels = self.abstained = 0
        self.n_truth = self.correct = self.n_unseen = self.correct_unseen = 0
        self.packet_ms: list[float] = []
        self.server_ms: list[float] = []
        self.end_to_end_ms: list[float] = []
        self.first_ns = self.last_ns = 0

    # ------------------------------------------------------------ counting
    def packet(self, pkt: EventPacket, now_ns: int) -> float | None:
        """Count an event packet; its latency (ms) if the sender stamped it."""
        s = self.streams.get(pkt.stream_id)
        if s is None:
            s = self.streams[pkt.stream_id] = {"packets": 0, "events": 0, "gaps": 0, "duplicates": 0,
                                               "first_seq": pkt.seq, "last_seq": pkt.seq,
                                               "next": pkt.seq, "samples": 0}
        if pkt.seq > s["next"]:
            s["gaps"] += pkt.seq - s["next"]
        elif pkt.seq < s["next"]:
            s["duplicates"] += 1
        s["next"] = max(s["next"], pkt.seq + 1)
        s["last_seq"] = max(s["last_seq"], pkt.seq)
        s["packets"] += 1
        s["events"] += len(pkt.events)
        s["samples"] += int(pkt.sample_end)
        self.packets += 1
        self.events += len(pkt.events)
        if pkt.sent_ns:
            lat = (now_ns - pkt.sent_ns) / 1e6
            self.packet_ms.append(lat)
            return lat
        return None

    def label(self, lab: LabelEvent, now_ns: int) -> bool | None:
        """Count a label: True / False against its ground truth (None: no truth, or abstained)."""
        self.first_ns = self.first_ns or now_ns
        self.last_ns = now_ns
        self.labels += 1
        if lab.received_ns:
            self.server_ms.append((now_ns - lab.received_ns) / 1e6)
        if lab.source_ns:
            self.end_to_end_ms.append((now_ns - lab.source_ns) / 1e6)
        abstained = lab.label == UNKNOWN
        self.abstained += abstained
        if lab.truth is None:
            return None
        self.n_truth += 1
        ok = lab.label == lab.truth
        self.correct += ok
        if lab.truth in self.unseen:
            self.n_unseen += 1
            self.correct_unseen += ok
        return None if abstained else bool(ok)

    # ------------------------------------------------------------ reading
    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n_truth if self.n_truth else None

    @property
    def gaps(self) -> int:
        return sum(s["gaps"] for s in self.streams.values())

    @property
    def duplicates(self) -> int:
        return sum(s["duplicates"] for s in self.streams.values())

    def summary(self) -> dict:
        seen_n = self.n_truth - self.n_unseen
        wall = (self.last_ns - self.first_ns) / 1e9
        server = distribution(self.server_ms)
        return {
            "packets": self.packets, "events": self.events, "labels": self.labels,
            "streams": {sid: {k: v for k, v in s.items() if k != "next"} for sid, s in self.streams.items()},
            "gaps": self.gaps, "duplicates": self.duplicates,
            "accuracy": self.accuracy,
            "seen_accuracy": (self.correct - self.correct_unseen) / seen_n if seen_n else None, "seen_n": seen_n,
            "unseen_accuracy": self.correct_unseen / self.n_unseen if self.n_unseen else None,
            "unseen_n": self.n_unseen, "abstained": self.abstained,
            "latency_ms": distribution(self.packet_ms),
            "label_latency_ms": distribution(self.end_to_end_ms),
            "server_latency_ms": server,
            "latency_p50_ms": server["p50"] if server["n"] else 0.0,
            "latency_p99_ms": server["p99"] if server["n"] else 0.0,
            "labels_per_s": (self.labels - 1) / wall if wall > 0 else 0.0,
        }

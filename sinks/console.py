"""Console live view: recent labels, running accuracy on seen / unseen classes, rates and latency."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from streamlsm.events import LabelEvent
from streamlsm.model.prototypes import UNKNOWN
from streamlsm.tally import Tally

__all__ = ["ConsoleSink"]


def _pct(x: float | None) -> str:
    return "  -  " if x is None else f"{100 * x:5.1f}%"


class ConsoleSink:
    """Prints each label (``show_labels``) and a status line at most every ``every_s`` seconds."""

    def __init__(self, unseen: list[str] | tuple[str, ...] = (), every_s: float = 0.5,
                 show_labels: bool = True, stream: TextIO | None = None) -> None:
        self.tally = Tally(unseen)
        self.every_s = float(every_s)
        self.show_labels = show_labels
        self.out = stream or sys.stdout
        self._last_print = 0.0
        self._status: dict = {}

    def write(self, label: LabelEvent, arrival_ns: int | None = None) -> None:
        self.tally.label(label, arrival_ns if arrival_ns is not None else (label.published_ns or time.time_ns()))
        if self.show_labels:
            mark = "" if label.truth is None else ("  ok" if label.label == label.truth else "  MISS")
            if label.label == UNKNOWN and label.topk:  # abstained: say so, with the best guess
                mark = f"  abstained (best {label.topk[0][0]})"
            tag = " (unseen)" if label.truth in self.tally.unseen else ""
            prob = "" if label.probability is None else f" p={label.probability:.2f}"
            self.out.write(f"{label.stream_id:>10} #{label.sample_id:<5} -> {label.label:<8} "
                           f"{label.score:+.3f}{prob}  truth {label.truth}{tag}{mark}\n")
        now = time.monotonic()
        if now - self._last_print >= self.every_s:
            self._last_print = now
            self.out.write(self.line() + "\n")
            self.out.flush()

    def observe(self, status: dict) -> None:
        """Daemon status (packets, drops, queue, real-time factor) for the status line."""
        self._status = status

    def line(self) -> str:
        s = self.tally.summary()
        extra = ""
        if self._status:
            extra = (f" | queue {self._status.get('queue_depth', 0)} drops {self._status.get('dropped', 0)}"
                     f" rtf {self._status.get('real_time_factor', 0.0):.3f}")
        return (f"[{s['labels']} labels] acc {_pct(s['accuracy'])} seen {_pct(s['seen_accuracy'])} "
                f"unseen {_pct(s['unseen_accuracy'])} | {s['labels_per_s']:.1f} labels/s | latency p50 "
                f"{s['latency_p50_ms']:.2f} ms p99 {s['latency_p99_ms']:.2f} ms{extra}")

    def close(self) -> None:
        self.out.write(self.line() + "\n")
        self.out.flush()

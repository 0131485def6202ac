"""`streamlsm demo`: the whole system on built-in data: replay -> daemon -> subscriber over loopback ZeroMQ."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run replay -> daemon -> subscriber on built-in data, then a summary",
                       description=__doc__)
    p.add_argument("--speed", default="1", help="1 = real time, k = k times faster, max (default 1)")
    p.add_argument("--data", default=None, help="real N-MNIST root (Train/<digit>/*.bin) instead of the default")
    p.add_argument("--limit", type=int, default=200, help="samples to stream (default 200)")
    p.add_argument("--streams", type=int, default=4, help="concurrent replay streams (default 4)")
    p.add_argument("--packet-us", type=int, default=10_000, help="replay packet length in us")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", action="store_true", help="ignore a cached model")
    p.add_argument("--quiet", action="store_true", help="no per-label lines, only status and summary")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line too")
    p.add_argument("--error-target", type=float, default=0.05,
                   help="error of emitted labels the abstention is certified for (default 0.05); below "
                        "the certified probability a label is published as 'unknown'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import tempfile
    import time
    from pathlib import Path

    from ..errors import ConfigError
    from ..stream.replay import parse_speed
    from ._demo_plan import make_plan, say

    speed = parse_speed(args.speed)
    if args.limit < 1 or args.streams < 1:
        raise ConfigError("limit", "--limit and --streams must be >= 1")
    t0 = time.monotonic()
    plan = make_plan(args.data, args.limit, args.seed, args.retrain)
    for note in plan.notes:
        say(note)
    with tempfile.TemporaryDirectory(prefix="streamlsm-demo-") as work:  # the daemon's checkpoint: removed after
        summary = asyncio.run(_stream(plan, args, speed, Path(work)))
    summary["wall_s"] = round(time.monotonic() - t0, 1)
    _table(summary, plan)
    if args.json:
        print(json.dumps(summary))
    return 0 if summary["labels"] == summary["expected"] else 1


async def _stream(plan, args, speed, work) -> dict:
    import asyncio
    import dataclasses
    import time

    from ..daemon.config import DaemonConfig, InputConfig, LimitsConfig, ModelConfig, OutputConfig
    from ..daemon.daemon import Daemon
    from ..net.peers import HandshakeWatch
    from ..net.transport import Receiver, Sender
    from ..pipeline import PipelineConfig
    from ..plugins import SINK_GROUP, load
    from ..stream.pacing import pace
    from ..stream.replay import ReplayConfig, merge, schedule
    from ._demo_plan import Subset, say

    cfg = DaemonConfig(model=ModelConfig(bundle=work / "unused", prototypes=work / "prototypes.json",
                                         error_target=args.error_target),
                       inputs=[InputConfig("tcp://127.0.0.1:*", "pull", hwm=100_000)],
                       outputs=OutputConfig(labels="tcp://127.0.0.1:*", hwm=100_000),
                       limits=LimitsConfig(overflow="block"),
                       pipeline=PipelineConfig(topk=min(64, max(5, len(plan.bundle.classes)))))
    daemon = Daemon(cfg, bundle=plan.bundle, sinks=[])
    say(f"registering {len(plan.support)} class prototypes from support samples ...")
    for lab, (modality, events, durations) in sorted(plan.support.items()):
        daemon.matcher.add(lab, daemon.pipeline.embed_support(modality, events, durations),
                           source=f"{len(events)} {modality} support samples")
    task = asyncio.create_task(daemon.run())
    await daemon.started()  # raises the start-up error (an endpoint in use...)
    k = min(args.streams, len(plan.test))
    parts = [Subset(plan.test.ds, plan.test.ids[i::k]) for i in range(k)]
    rcfg = ReplayConfig(packet_us=args.packet_us, speed=speed)
    items = merge([schedule(part, f"cam{i}", dataclasses.replace(rcfg, seed=i)) for i, part in enumerate(parts)])
    expected = len(plan.test)
    console = load(SINK_GROUP, "console")(unseen=plan.unseen, every_s=1.0, show_labels=not args.quiet)
    say(f"streaming {expected} samples on {k} streams at speed {speed} over tcp loopback: replay -> "
        f"{daemon.input_endpoints[0]} -> daemon -> {daemon.label_endpoint} -> subscriber")
    t0 = time.monotonic()

    async def send() -> None:
        async with Sender(daemon.input_endpoints[0], "push", bind=False, hwm=100_000, linger_ms=5000) as tx:
            async for pkt in pace(items, speed):
                await tx.send(pkt)

    got, streamed, ranked, records = 0, [], [], []
    joined = HandshakeWatch()
    async with Receiver(daemon.label_endpoint, "sub", topics=(b"lb/",), hwm=100_000, setup=joined) as sub:
        await asyncio.to_thread(joined.wait, 30.0)  # subscribed before the first label leaves
        sender = asyncio.create_task(send())
        while got < expected:
            lab = await sub.recv(timeout=30.0)
            if lab is None:
                say("no label for 30 s: stopping")
                break
            console.write(lab, time.time_ns())
            streamed.append((lab.stream_id, lab.sample_id, lab.label))
            ranked.append((lab.truth, [c for c, _ in lab.topk]))
            records.append((lab.truth, lab.label, list(lab.topk), lab.probability))
            got += 1
        await sender
    wall = time.monotonic() - t0
    status = daemon.status()
    daemon.request_stop()
    await task
    console.close()
    agree = await asyncio.to_thread(_offline_agreement, plan, parts, streamed, daemon.matcher)
    say(f"offline check: {agree} of {len(streamed)} streamed labels equal the offline evaluation "
        "(Reservoir.encode + embed + the same prototypes)")
    s = console.tally.summary()
    within = _within(ranked, plan.bundle.seen_classes, plan.unseen)
    trust = _generalised(records, plan.bundle.seen_classes, plan.unseen, daemon.matcher.calibration)
    headline = {"seen": _p(within["seen_within"]), "unseen_2way": _p(within["unseen_within"]), **trust,
                "p50_ms": round(s["latency_p50_ms"], 3), "p99_ms": round(s["latency_p99_ms"], 3),
                "units": "percent (seen .. coverage), ms (p50_ms, p99_ms); the *_accuracy keys are fractions"}
    return {**headline, **within, "labels": got, "expected": expected, "streams": k, "speed": speed, "packet_us": args.packet_us,
            "seen_accuracy": s["seen_accuracy"], "seen_n": s["seen_n"], "unseen_accuracy": s["unseen_accuracy"],
            "unseen_n": s["unseen_n"], "unseen_classes": plan.unseen, "accuracy": s["accuracy"],
            "latency_p50_ms": s["latency_p50_ms"], "latency_p99_ms": s["latency_p99_ms"],
            "events_per_s": status["pipeline"]["events"] / wall if wall > 0 else 0.0,
            "labels_per_s": got / wall if wall > 0 else 0.0, "stream_s": wall, "drops": status["dropped"],
            "bundle_hash": plan.bundle.hash, "classes": daemon.matcher.labels, "offline_agreement": agree}


def _p(x) -> float | None:
    return None if x is None else round(100.0 * x, 2)


def _class_mean(pairs: list, classes: list) -> float | None:
    accs = []
    for c in classes:
        got = [pred == truth for truth, pred in pairs if truth == c]
        if got:
            accs.append(sum(got) / len(got))
    return sum(accs) / len(accs) if accs else None


def _hm(a, b):
    return None if a is None or b is None else (0.0 if a + b <= 0 else 2 * a * b / (a + b))


def _generalised(records: list, seen: list, unseen: list, calibration: dict | None) -> dict:
    """Generalised zero-shot from the streamed labels, as a live user sees them: the best class among
    all registered prototypes (``topk[0]``, after the calibrated offset), per-class mean accuracy on
    seen and unseen classes and their harmonic mean H; the same without the offset (scores of the seen
    classes plus the offset again); and abstention: the error of the labels emitted (not ``unknown``)
    and the fraction emitted (coverage)."""
    seen = [c for c in seen if c not in unseen]
    off = (calibration or {}).get("offset", 0.0)
    cal, raw, emitted = [], [], []
    for truth, label, topk, _prob in records:
        if truth is None or not topk:
            continue
        cal.append((truth, topk[0][0]))
        raw.append((truth, max(topk, key=lambda t: t[1] + (off if t[0] in seen else 0.0))[0]))
        if label != "unknown":
            emitted.append(label == truth)
    out = {}
    for tag, pairs in (("", cal), ("_uncalibrated", raw)):
        a, b = _class_mean(pairs, seen), _class_mean(pairs, list(unseen))
        out.update({f"gzsl_seen{tag}": _p(a), f"gzsl_unseen{tag}": _p(b), f"gzsl_H{tag}": _p(_hm(a, b))})
    n = len(cal)
    out["emitted_error"] = _p(1.0 - sum(emitted) / len(emitted)) if emitted else None
    out["coverage"] = _p(len(emitted) / n) if n else None
    out["error_target"] = _p((calibration or {}).get("error_target"))
    return out


def _within(ranked: list, seen: list, unseen: list) -> dict:
    """The paper's protocol from the streamed top-k: a seen-class sample is scored among the seen
    classes' prototypes only, an unseen-class sample among the unseen classes' only."""
    out = {}
    for part, classes in (("seen", [c for c in seen if c not in unseen]), ("unseen", list(unseen))):
        hits = n = 0
        for truth, order in ranked:
            if truth in classes:
                best = next((c for c in order if c in classes), None)
                n, hits = n + 1, hits + (best == truth)
        out[f"{part}_within"] = hits / n if n else None
        out[f"{part}_within_chance"] = 1 / len(classes) if classes else None
    return out


def _offline_agreement(plan, parts, streamed, matcher) -> int:
    """How many streamed labels equal the offline evaluation of the same samples."""
    from ..pipeline import offline_labels

    agree = 0
    for i, part in enumerate(parts):
        got = {sid: lab for stream, sid, lab in streamed if stream == f"cam{i}"}
        ids = sorted(got)
        if not ids:
            continue
        samples = [part.events(j) for j in ids]
        durations = [max(part.duration_us(j), int(ev["t"][-1]) + 1 if len(ev) else 1)
                     for j, ev in zip(ids, samples, strict=True)]
        offline = offline_labels(plan.bundle, matcher, plan.test.modality, samples, durations, sample_ids=ids)
        agree += sum(got[j] == lab for j, lab in zip(ids, offline, strict=True))
    return agree


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _table(s: dict, plan) -> None:
    def pc(x) -> str:
        return "n/a" if x is None else f"{x:.1f}%"

    rows = [
        ("samples labelled", f"{s['labels']} / {s['expected']} on {s['streams']} streams, speed {s['speed']}, "
                             f"{s['packet_us'] // 1000} ms packets"),
        (f"live labels, {len(s['classes'])}-way", f"seen {pc(s['gzsl_seen'])}, unseen {pc(s['gzsl_unseen'])}, H "
                                                  f"{pc(s['gzsl_H'])} (generalised zero-shot: all prototypes compete, "
                                                  f"as the daemon labels; chance {_pct(1 / max(1, len(s['classes'])))}"
                                                  "; accuracy per class of the best class, calibrated stacking)"),
        ("  without calibration", f"seen {pc(s['gzsl_seen_uncalibrated'])}, unseen "
                                  f"{pc(s['gzsl_unseen_uncalibrated'])}, H {pc(s['gzsl_H_uncalibrated'])}"),
        ("  labels emitted", f"{pc(s['coverage'])} of samples; error of emitted labels {pc(s['emitted_error'])} "
                             f"(target {pc(s['error_target'])}); the rest published as 'unknown'"),
        ("paper's metric, seen", f"{_pct(s['seen_within'])} (n={s['seen_n']}; chance "
                                 f"{_pct(s['seen_within_chance'])}): top-1 among the seen classes only"),
        ("paper's metric, unseen", f"{_pct(s['unseen_within'])} (n={s['unseen_n']}, classes "
                                   f"{', '.join(s['unseen_classes'])}, never trained on; chance "
                                   f"{_pct(s['unseen_within_chance'])}): top-1 among the unseen classes only (2-way)"),
        ("latency p50 / p99", f"{s['latency_p50_ms']:.2f} / {s['latency_p99_ms']:.2f} ms "
                              "(sample's last packet at the daemon -> label at the subscriber)"),
        ("events/s", f"{s['events_per_s']:,.0f} (labels/s {s['labels_per_s']:.1f})"),
        ("streamed == offline", f"{s['offline_agreement']} / {s['labels']} labels"),
        ("drops", str(s["drops"])),
        ("bundle", s["bundle_hash"][:23]),
        ("wall time", f"{s.get('wall_s', 0)} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\nstreamlsm demo summary")
    for note in plan.notes:
        print(f"  {note}")
    print("  " + "-" * (width + 60))
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    sys.stdout.flush()

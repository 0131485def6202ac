"""`streamlsm cluster router|worker`: spread the streams of many sensors over several hosts."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

__all__ = ["add_parser", "run_router", "run_worker"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="scale out: a stream router and workers on several hosts",
                       description=__doc__)
    csub = p.add_subparsers(dest="cluster_command", metavar="ROLE", required=True)
    r = csub.add_parser("router", help="bind the packet input, the worker socket and the label endpoint")
    r.add_argument("--input", default="tcp://127.0.0.1:5555", help="PULL: sources push packets here")
    r.add_argument("--workers", default="tcp://127.0.0.1:5570", help="ROUTER: workers connect here")
    r.add_argument("--labels-in", default="tcp://127.0.0.1:5571", help="XSUB: workers publish labels here")
    r.add_argument("--labels", default="tcp://127.0.0.1:5601", help="XPUB: the one label endpoint")
    r.add_argument("--keys", default=None, metavar="DIR",
                   help="CURVE keys (streamlsm keys make DIR); required to bind beyond loopback")
    r.add_argument("--heartbeat", type=float, default=0.2, help="worker heartbeat interval, s")
    r.add_argument("--timeout", type=float, default=1.0, help="a silent worker is dead after this, s")
    r.add_argument("--hwm", type=int, default=1000)
    r.add_argument("--status-every", type=float, default=5.0, help="print a JSON status line every S s")
    r.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: until signal)")
    r.set_defaults(func=run_router)
    w = csub.add_parser("worker", help="join a router; label the streams it assigns")
    w.add_argument("--bundle", required=True, help="model bundle directory")
    w.add_argument("--prototypes", required=True, help="prototype checkpoint (PrototypeMatcher.save)")
    w.add_argument("--router", default="tcp://127.0.0.1:5570", help="the router's worker endpoint")
    w.add_argument("--labels-in", default="tcp://127.0.0.1:5571", help="the router's label input")
    w.add_argument("--name", default="", help="worker name (default host-pid)")
    w.add_argument("--keys", default=None, metavar="DIR", help="CURVE keys: DIR/<key-name>.key_secret "
                   "and the router's DIR/server.key")
    w.add_argument("--key-name", default="client")
    w.add_argument("--modality", default="", help="modality of packets that name none")
    w.add_argument("--queue", type=int, default=256)
    w.add_argument("--heartbeat", type=float, default=0.2)
    w.set_defaults(func=run_worker)


def _signals(handler) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: handler())


def run_router(args: argparse.Namespace) -> int:
    from ..cluster import Router, RouterConfig

    cfg = RouterConfig(input=args.input, workers=args.workers, labels_in=args.labels_in,
                       labels=args.labels, heartbeat_s=args.heartbeat, timeout_s=args.timeout,
                       hwm=args.hwm, keys_dir=args.keys)
    router = Router(cfg)
    stopping = []
    _signals(lambda: stopping.append(1))
    t0 = time.monotonic()
    state = {"next": t0 + args.status_every}

    def stop() -> bool:
        now = time.monotonic()
        if args.status_every > 0 and now >= state["next"]:
            print(json.dumps(router.status()), flush=True)
            state["next"] = now + args.status_every
        return bool(stopping) or (args.duration > 0 and now - t0 >= args.duration)

    print(json.dumps({"ready": router.endpoints}), flush=True)
    try:
        router.run(stop)
    finally:
        print(json.dumps(router.status()), flush=True)
        router.close()
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from ..cluster import Worker, WorkerConfig, load_pipeline
    from ..pipeline import PipelineConfig

    pipeline = load_pipeline(args.bundle, args.prototypes, PipelineConfig(modality=args.modality))
    worker = Worker(WorkerConfig(router=args.router, labels_in=args.labels_in, name=args.name,
                                 queue=args.queue, heartbeat_s=args.heartbeat, keys_dir=args.keys,
                                 key_name=args.key_name), pipeline)
    _signals(worker.stop)
    print(json.dumps({"worker": worker.name, "router": args.router}), flush=True)
    counters = worker.run()
    print(json.dumps({"worker": worker.name, "counters": counters,
                      "pipeline": pipeline.stats.as_dict()}), file=sys.stdout, flush=True)
    return 0

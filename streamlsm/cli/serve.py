"""`streamlsm serve --config deploy/edge.toml`: run the edge daemon until SIGINT/SIGTERM (then drain)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run", "missing_bundle", "status_line"]

MAKE_BUNDLE = ("make one with `streamlsm bundle train nmnist --root DATA/nmnist --unseen 8,9 --out {b}` "
               "(any source plug-in; needs the 'train' extra), or copy a trained bundle folder "
               "(weights.npz + manifest.json) there")


def missing_bundle(bundle) -> str | None:
    """Why the configured bundle cannot be used (it is absent or not a bundle), with how to make one."""
    from pathlib import Path

    path = Path(bundle)
    if (path / "manifest.json").is_file():
        return None
    what = "does not exist" if not path.exists() else "is not a bundle (no manifest.json)"
    return f"model.bundle {str(bundle)!r} ({path.resolve()}) {what}: " + MAKE_BUNDLE.format(b=bundle)


def status_line(now: dict, before: dict | None, dt: float) -> str:
    """One status line for people from two daemon status dicts ``dt`` seconds apart."""
    def rate(key: str) -> str:
        if not before or dt <= 0:
            return ""
        return f" ({(now[key] - before[key]) / dt:,.0f}/s)"

    return (f"received {now['received']:,} packets{rate('received')}, {now['labels']:,} labels"
            f"{rate('labels')}; {now['streams']} streams; queue {now['queue_depth']}/"
            f"{now['queue_limit']}; dropped {now['dropped']}, wire errors {now['wire_errors']}, "
            f"sink errors {now['sink_errors']}; {len(now['classes'])} classes; "
            f"real-time factor {now['real_time_factor']:.3f}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the edge daemon (events in, labels out, control socket)",
                       description=__doc__)
    p.add_argument("--config", required=True, help="daemon TOML file (see deploy/edge.toml)")
    p.add_argument("--check", action="store_true",
                   help="validate the config and load the bundle, then exit (1 if either fails)")
    p.add_argument("--status-every", type=float, default=10.0, metavar="S",
                   help="log a status line (packets, labels, queue, drops) every S seconds; 0 = off")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import signal

    from ..config import load_toml, to_dict
    from ..daemon.config import DaemonConfig
    from ..daemon.daemon import Daemon
    from ..errors import ConfigError

    cfg = load_toml(args.config, DaemonConfig)
    if args.status_every < 0:
        raise ConfigError("status_every", f"must be >= 0 seconds, got {args.status_every}")
    why = missing_bundle(cfg.model.bundle)
    if args.check:
        report = {"ok": why is None, "config": to_dict(cfg)}
        if why is None:
            from ..model.bundle import Bundle

            report["bundle_hash"] = Bundle.load(cfg.model.bundle).hash
        else:
            report["error"] = why
        print(json.dumps(report, indent=1, default=str))
        if why is not None:
            print(f"streamlsm serve --check: {why}", file=sys.stderr)
            return 1
        return 0
    if why is not None:
        raise ConfigError("model.bundle", why.partition(": ")[2])

    from ..daemon.daemon import give_back_freed_memory

    give_back_freed_memory()  # a burst of big messages must not stay in the RSS (glibc)

    async def main() -> dict:
        daemon = Daemon(cfg)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, daemon.request_stop)
        task = asyncio.create_task(daemon.run())
        await daemon.started()  # raises the start-up error (an endpoint in use...): no ready line
        inputs = ", ".join(daemon.input_endpoints) or "none"
        print(f"streamlsm serve: inputs {inputs}; labels on {daemon.label_endpoint}; control on "
              f"{daemon.control_endpoint or 'off'}; {len(daemon.matcher)} classes; bundle "
              f"{daemon.bundle.hash[:19]}", flush=True)
        reporter = asyncio.create_task(_report(daemon, args.status_every)) if args.status_every else None
        try:
            await task
        finally:
            if reporter is not None:
                reporter.cancel()
        return daemon.status()

    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    status = asyncio.run(main())
    keep = ("received", "dropped", "labels", "label_drops", "wire_errors", "sink_errors",
            "prototype_version")
    print(json.dumps({"stopped": True, **{k: status[k] for k in keep}}), file=sys.stderr, flush=True)
    return 0


async def _report(daemon, every_s: float) -> None:
    """Log a status line every ``every_s`` seconds (logger ``streamlsm.serve``)."""
    import asyncio
    import logging
    import time

    log = logging.getLogger("streamlsm.serve")
    before, t_before = None, time.monotonic()
    while True:
        await asyncio.sleep(every_s)
        now, t_now = daemon.status(), time.monotonic()
        log.info(status_line(now, before, t_now - t_before))
        before, t_before = now, t_now

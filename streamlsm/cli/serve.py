"""`streamlsm serve --config deploy/edge.toml`: run the edge daemon until SIGINT/SIGTERM (then drain)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the edge daemon (events in, labels out, control socket)",
                       description=__doc__)
    p.add_argument("--config", required=True, help="daemon TOML file (see deploy/edge.toml)")
    p.add_argument("--check", action="store_true",
                   help="validate the config (and load the bundle when it exists), then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import signal
    from pathlib import Path

    from ..config import load_toml, to_dict
    from ..runtime import Daemon, DaemonConfig

    cfg = load_toml(args.config, DaemonConfig)
    if args.check:
        report = {"ok": True, "config": to_dict(cfg)}
        if Path(cfg.model.bundle).exists():  # a bundle made later (e.g. by `demo`) may be absent now
            from ..readout.bundle import Bundle

            report["bundle_hash"] = Bundle.load(cfg.model.bundle).hash
        print(json.dumps(report, indent=1, default=str))
        return 0

    from ..runtime_parts import give_back_freed_memory

    give_back_freed_memory()  # a burst of big messages must not stay in the RSS (glibc)

    async def main() -> dict:
        daemon = Daemon(cfg)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, daemon.request_stop)
        task = asyncio.create_task(daemon.run())
        await daemon.ready.wait()
        if task.done():  # start-up failed (e.g. an endpoint in use): report it, no ready line
            task.result()
        inputs = ", ".join(daemon.input_endpoints) or "none"
        print(f"streamlsm serve: inputs {inputs}; labels on {daemon.label_endpoint}; control on "
              f"{daemon.control_endpoint or 'off'}; {len(daemon.matcher)} classes; bundle "
              f"{daemon.bundle.hash[:19]}", flush=True)
        await task
        return daemon.status()

    status = asyncio.run(main())
    keep = ("received", "dropped", "labels", "label_drops", "wire_errors", "sink_errors",
            "prototype_version")
    print(json.dumps({"stopped": True, **{k: status[k] for k in keep}}), file=sys.stderr, flush=True)
    return 0

"""`streamlsm cluster up|status|down|serve`: scale out on Ray (needs the 'cluster' extra).

`up` starts this host's Ray node (`ray start --head`, or `--address HEAD:PORT` to join a head);
`status` and `down` wrap `ray status` and `ray stop`. `serve` runs the gateway (ZeroMQ in, one
label PUB, the control socket) in this process and the shard actors on the Ray cluster, from the
same config file as `streamlsm serve`; without `--address` it starts a local Ray (`ray.init()`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["add_parser", "run_up", "run_status", "run_down", "run_serve", "ray_command"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="scale out on Ray: start nodes, run a gateway and shards",
                       description=__doc__)
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    u = csub.add_parser("up", help="start this host's Ray node (head, or join one with --address)")
    u.add_argument("--address", default="", metavar="HEAD:PORT",
                   help="join the cluster whose head listens there (default: start a head)")
    u.add_argument("--port", type=int, default=6379, help="the head's port (head only)")
    u.add_argument("--node-ip-address", default="127.0.0.1", metavar="IP",
                   help="the private interface Ray binds and announces (never a public one)")
    u.add_argument("--num-cpus", type=int, default=None, help="CPUs this node offers (default: all)")
    u.add_argument("--dry-run", action="store_true", help="print the ray command, run nothing")
    u.set_defaults(func=run_up)
    s = csub.add_parser("status", help="`ray status`: nodes, CPUs used by shards")
    s.add_argument("--address", default="", metavar="HEAD:PORT", help="default: the local head")
    s.add_argument("--wait", type=float, default=20.0, metavar="S",
                   help="while a node just started reports no status yet, ask again for this long")
    s.set_defaults(func=run_status)
    d = csub.add_parser("down", help="`ray stop`: stop this host's Ray node (every Ray process of this user)")
    d.set_defaults(func=run_down)
    v = csub.add_parser("serve", help="run the gateway here and the shards on the cluster")
    v.add_argument("--config", required=True, help="the daemon TOML file (as `streamlsm serve --config`)")
    v.add_argument("--address", default="", metavar="auto|HEAD:PORT",
                   help="a running cluster ('auto': the one on this host); default: a local ray.init()")
    v.add_argument("--num-cpus", type=int, default=None, help="local Ray only: CPUs it may use")
    v.add_argument("--shards", type=int, default=2, help="shard actors; 0 = one per --shard-cpus of the "
                   "cluster's CPUs, growing as nodes join")
    v.add_argument("--shard-cpus", type=float, default=1.0, help="CPUs Ray reserves per shard")
    v.add_argument("--batch-ms", type=float, default=5.0, help="packets of a shard leave together this often")
    v.add_argument("--deadline-s", type=float, default=10.0,
                   help="a shard call not answered by then: the shard is killed and restarted")
    v.add_argument("--registry", default="streamlsm-registry", metavar="NAME",
                   help="the prototype registry actor, shared by every gateway started with this name "
                   "and the same config (several gateways: start each with it); '' = one of its own")
    v.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: until SIGINT/SIGTERM)")
    v.add_argument("--status-every", type=float, default=10.0, metavar="S",
                   help="print a JSON status line every S seconds (0 = off)")
    v.set_defaults(func=run_serve)


def ray_command() -> list[str]:
    """The `ray` executable beside this Python (a venv), else on PATH; ConfigError without ray."""
    from ..cluster import require_ray

    require_ray()
    exe = Path(sys.executable).parent / "ray"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("ray")
    if found is None:
        from ..errors import ConfigError

        raise ConfigError("cluster", "the `ray` command is not on PATH: install streamlsm[cluster]")
    return [found]


def _ray(argv: list[str], dry_run: bool = False) -> int:
    from ..cluster import RAY_ENV

    cmd = ray_command() + argv
    if dry_run:
        print(" ".join([f"{k}={v}" for k, v in RAY_ENV.items()] + cmd), flush=True)
        return 0
    return subprocess.run(cmd, env={**RAY_ENV, **os.environ}, check=False).returncode


def _have_token() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())


def run_up(args: argparse.Namespace) -> int:
    argv = ["start", "--node-ip-address", args.node_ip_address, "--disable-usage-stats"]
    if args.address:
        argv += ["--address", args.address]
    else:
        argv += ["--head", "--port", str(args.port), "--include-dashboard", "false"]
    if args.num_cpus is not None:
        argv += ["--num-cpus", str(args.num_cpus)]
    if not args.dry_run and not _have_token():
        if args.address:
            from ..errors import ConfigError

            raise ConfigError("cluster", "no Ray token on this host: copy the head's ~/.ray/auth_token "
                              "here (mode 0600) or set RAY_AUTH_TOKEN")
        # the head makes the cluster's token (~/.ray/auth_token); it is not printed
        r = subprocess.run(ray_command() + ["get-auth-token", "--generate"], capture_output=True,
                           check=False)
        if r.returncode != 0:
            print(r.stderr.decode(errors="replace"), file=sys.stderr)
            return r.returncode
    return _ray(argv, args.dry_run)


def run_status(args: argparse.Namespace) -> int:
    """`ray status`; right after `cluster up` Ray may not report yet ("No cluster status"): asked
    again every half second for up to ``--wait`` seconds before its answer is printed."""
    import time

    from ..cluster import RAY_ENV

    cmd = ray_command() + ["status"] + (["--address", args.address] if args.address else [])
    deadline = time.monotonic() + args.wait
    while True:
        r = subprocess.run(cmd, env={**RAY_ENV, **os.environ}, capture_output=True, text=True, check=False)
        if "No cluster status" not in r.stdout or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r.returncode


def run_down(args: argparse.Namespace) -> int:
    return _ray(["stop"])


def run_serve(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import time

    from ..cluster import ray_env, require_ray
    from ..config import load_toml
    from ..daemon.config import DaemonConfig
    from .serve import missing_bundle

    ray = require_ray()
    cfg = load_toml(args.config, DaemonConfig)
    why = missing_bundle(cfg.model.bundle)
    if why is not None:
        from ..errors import ConfigError

        raise ConfigError("model.bundle", why.partition(": ")[2])
    from ..cluster.gateway import ClusterConfig, Gateway

    cluster = ClusterConfig(shards=args.shards, shard_cpus=args.shard_cpus, batch_ms=args.batch_ms,
                            call_deadline_s=args.deadline_s, registry=args.registry)
    cluster.validate()
    ray_env()
    if args.address:
        ray.init(address=args.address, namespace="streamlsm", logging_level="ERROR", log_to_driver=False)
    else:
        ray.init(num_cpus=args.num_cpus, namespace="streamlsm", include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False)
    try:
        async def main() -> dict:
            gw = Gateway(cfg, cluster)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, gw.request_stop)
            task = asyncio.create_task(gw.run())
            await gw.ready.wait()
            if task.done():
                task.result()
            print(f"streamlsm cluster serve: inputs {', '.join(gw.input_endpoints) or 'none'}; labels on "
                  f"{gw.label_endpoint}; control on {gw.control_endpoint or 'off'}; "
                  f"{len(gw.slots)} shards on {len({s.node for s in gw.slots})} node(s); bundle "
                  f"{gw.bundle_hash[:19]}", flush=True)
            t0 = time.monotonic()
            every = args.status_every
            next_status = t0 + every
            while not task.done():
                await asyncio.sleep(0.1)
                now = time.monotonic()
                if every and now >= next_status:
                    print(json.dumps(_brief(gw.status())), flush=True)
                    next_status = now + every
                if args.duration and now - t0 >= args.duration:
                    gw.request_stop()
            await task
            return gw.status()

        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
        logging.getLogger("ray").setLevel(logging.ERROR)  # Ray logs through its own handlers
        status = asyncio.run(main())
    finally:
        ray.shutdown()
    print(json.dumps({"stopped": True, **_brief(status)}), flush=True)
    return 0


def _brief(st: dict) -> dict:
    keep = ("received", "labels", "label_drops", "dropped", "wire_errors", "lost_samples", "streams",
            "live_shards", "call_failures", "deadline_kills", "prototype_version")
    return {**{k: st[k] for k in keep}, "lost_by_stream": st["lost_by_stream"],
            "shards": [{k: s[k] for k in ("name", "live", "node", "failures", "restarts")} for s in st["shards"]]}

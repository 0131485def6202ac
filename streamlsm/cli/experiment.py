"""`streamlsm experiment <name>`: run one of the paper's experiments and write results.json + report.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run", "EXPERIMENTS"]

EXPERIMENTS = ("nmnist", "zeroshot-av", "cochlea", "neural", "zeroshot-bmi", "device", "fewshot")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="run a paper experiment (results.json, report.md, PNGs)",
                       description=__doc__)
    p.add_argument("name", choices=EXPERIMENTS)
    p.add_argument("--data", default=None, help="data root (default $STREAMLSM_DATA or ../shared/data)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    p.add_argument("--out", default=None, help="output folder (default results/<name>)")
    p.add_argument("--quick", action="store_true", help="small subset, 1 seed, few epochs (a smoke test)")
    p.add_argument("--cache", default=None, help="feature / emulated-data cache folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--first-seed", type=int, default=0,
                   help="nmnist, zeroshot-av (--parts main): run seeds first-seed.. (processes over disjoint seeds)")
    p.add_argument("--neurons", default=None,
                   help="nmnist/cochlea/neural: reservoir sizes of the reservoir-vs-input study (comma list; "
                        "default 200,500,1000,2048)")
    p.add_argument("--sessions", default=None,
                   help="neural: only these sessions (comma list of CSV names, e.g. D_A_I,D_E_I; default all)")
    p.add_argument("--no-sequence-models", action="store_true",
                   help="cochlea/neural: skip the trained sequence baselines (GRU/SRNN)")
    p.add_argument("--parts", default=None,
                   help="zeroshot-av: comma-separated parts to run (main, classfold, srnn; default all; 'report' "
                        "only rewrites the report from out/parts), e.g. in separate processes on one --out")
    p.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                   help="nmnist: merge the results.json of runs over disjoint seeds into --out")
    p.set_defaults(func=run)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ..config import data_root
    from ..errors import DataError

    root = Path(args.data) if args.data else data_root()
    out = Path(args.out or f"results/{args.name}")
    seeds = 1 if args.quick else max(1, args.seeds)
    common = {"cache_dir": args.cache, "progress": not args.no_progress, "log": _log}
    study = {}
    if args.neurons:
        try:
            study["neurons"] = tuple(int(v) for v in args.neurons.split(",") if v)
        except ValueError:
            raise DataError("--neurons", f"a comma list of integers, got {args.neurons!r}") from None
    if args.name == "nmnist":
        from ..experiments import nmnist
        from . import _experiment_data as data

        if args.merge:

            res = nmnist.merge([json.loads((Path(d) / "results.json").read_text()) for d in args.merge], out)
            print(f"report: {out / 'report.md'}")
            return 0
        train = data.nmnist_samples(root, "train")
        test = data.nmnist_samples(root, "test") if (root / "nmnist" / "Test").is_dir() else None
        _log(f"N-MNIST: {len(train)} training samples" + (f", {len(test)} test samples" if test else ""))
        res = nmnist.run(train, out, seeds=seeds, quick=args.quick, test=test, first_seed=args.first_seed, **study,
                         **common)
        s = res["summary"]
        for name, v in s.items():
            print(f"{name:24s} {v['mean'] * 100:6.2f} ± {v['std'] * 100:.2f}")
        for k, v in res.get("headline", {}).items():
            print(f"{k:28s} {v}")
    elif args.name == "zeroshot-av":
        from ..experiments import zeroshot_av
        from . import _experiment_data as data

        images, audio = data.av_samples(root, args.cache, quick=args.quick, log=_log)
        parts = zeroshot_av.PARTS if not args.parts else tuple(p for p in args.parts.split(",") if p != "report")
        res = zeroshot_av.run(images, audio, out, seeds=seeds, quick=args.quick, parts=parts,
                              first_seed=args.first_seed, **common)
        for name, v in res.get("summary", {}).items():
            print(f"{name:40s} {v['mean'] * 100:6.2f} ± {v['std'] * 100:.2f}")
    elif args.name == "cochlea":
        from ..experiments import cochlea
        from . import _experiment_data as data

        parts = data.cochlea_parts(root, args.cache, log=_log)
        res = cochlea.run(parts["train"], parts["test"], out, seeds=seeds, quick=args.quick, **study,
                          sequence_models=not args.no_sequence_models, **common)
        for name, v in res["summary"].items():
            print(f"{name:24s} {v['mean'] * 100:6.2f} ± {v['std'] * 100:.2f}")
        for k, v in res["headline"].items():
            print(f"{k:24s} {v}")
    elif args.name == "neural":
        from ..experiments import neural
        from . import _experiment_data as data

        sessions = data.cortex_sessions(root, quick=args.quick,
                                        only=args.sessions.split(",") if args.sessions else None)
        res = neural.run(sessions, out, seeds=seeds, quick=args.quick, **study,
                         sequence_models=not args.no_sequence_models, **common)
        for sess, r in res["sessions"].items():
            for name, v in r["summary"].items():
                print(f"{sess:8s} {name:24s} {v['mean'] * 100:6.2f} ± {v['std'] * 100:.2f}")
            for k, v in r["headline"].items():
                print(f"{sess:8s} {k:24s} {v}")
    elif args.name == "device":
        from ..experiments import device
        from . import _experiment_data as data

        train = data.nmnist_samples(root, "train")
        _log(f"N-MNIST: {len(train)} training samples (device study)")
        res = device.run(train, out, seeds=seeds, quick=args.quick, **common)
        for k, v in res["headline"].items():
            print(f"{k:24s} {v}")
    elif args.name == "fewshot":
        from ..experiments import fewshot
        from . import _experiment_data as data

        train = data.nmnist_samples(root, "train")
        test = data.nmnist_samples(root, "test") if (root / "nmnist" / "Test").is_dir() else None
        if args.quick:
            keep = np.sort(np.random.default_rng(0).permutation(len(train))[:300])
            train, test = train.subset(keep), None
        res = fewshot.run(train, out, test=test, seeds=seeds, splits=2 if args.quick else 10, quick=args.quick,
                          **common)
        print(json.dumps(res["headline"]))
    elif args.name == "zeroshot-bmi":
        from ..experiments import zeroshot_bmi
        from . import _experiment_data as data

        neural, images = data.letters(args.cache, log=_log)
        res = zeroshot_bmi.run(neural, images, out, seeds=seeds, quick=args.quick, **common)
        for name, v in res["summary"].items():
            print(f"{name:50s} {v['mean'] * 100:6.2f} ± {v['std'] * 100:.2f}")
    else:
        raise DataError(args.name, "unknown experiment")
    print(f"report: {out / 'report.md'}")
    return 0

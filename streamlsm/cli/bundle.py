"""`streamlsm bundle train|support|info`: make the model bundle `serve` loads and the support files `ctl register` reads.

`bundle train DATASET --root R --out DIR` encodes class-balanced samples of a data set with the
reservoir preset of its modality, trains a projection head (SupCon) on the seen classes and saves
the bundle (weights.npz + manifest.json). `bundle support DATASET --root R --label L --out F.npz`
writes the samples of one class as a support file (events + lengths + durations) for
`streamlsm ctl register L F.npz`. `bundle info DIR` prints a bundle's hash, classes and heads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parser", "cmd_train", "cmd_support", "cmd_info", "PRESET_OF_MODALITY"]

#: the reservoir preset used for a data set whose name is not itself a preset
PRESET_OF_MODALITY = {"vision": "nmnist", "audio": "cochlea", "neural": "neural"}


def _say(msg: str) -> None:
    print(f"bundle: {msg}", file=sys.stderr, flush=True)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="train a model bundle for `serve`; write support files for "
                       "`ctl register`", description=__doc__)
    bsub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    t = bsub.add_parser("train", help="train a bundle (reservoir preset + projection head) on a data set",
                        description="Encode class-balanced samples of DATASET with the reservoir preset "
                        "of its modality, train a 64-d projection head (SupCon) on the seen classes and "
                        "save the bundle that `streamlsm serve` loads ([model] bundle). Needs the "
                        "'train' extra (torch).")
    t.add_argument("dataset", help="source plug-in name (see `streamlsm --help`)")
    t.add_argument("--root", required=True, help="data set root folder or file")
    t.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    t.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="data set option (repeatable)")
    t.add_argument("--unseen", default="", help="comma-separated classes left out of training "
                   "(registered later from support samples: zero-shot)")
    t.add_argument("--per-class", type=int, default=20, help="training samples per seen class")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--preset", default=None, help="reservoir preset (default: the data set's name "
                   "if it is one, else by modality)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--prototypes", type=Path, default=None, metavar="FILE",
                   help="also write the seen classes' prototypes (from the training samples) as a "
                        "daemon checkpoint ([model] prototypes, e.g. state/prototypes.json)")
    t.set_defaults(func=cmd_train)

    s = bsub.add_parser("support", help="write one class's samples as a support .npz for `ctl register`",
                        description="Write the samples of DATASET labelled LABEL as a support file "
                        "(events + lengths + durations) that `streamlsm ctl register LABEL FILE` reads; "
                        "put it under one of the daemon's control.allowed_dirs.")
    s.add_argument("dataset", help="source plug-in name")
    s.add_argument("--root", required=True, help="data set root folder or file")
    s.add_argument("--label", required=True, help="the class whose samples are written")
    s.add_argument("--out", required=True, type=Path, help="support file to write (.npz)")
    s.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="data set option (repeatable)")
    s.add_argument("--limit", type=int, default=5, help="at most this many samples")
    s.set_defaults(func=cmd_support)

    i = bsub.add_parser("info", help="hash, classes and heads of a bundle",
                        description="Print a bundle's hash, classes, seen classes and heads as JSON.")
    i.add_argument("path", type=Path, help="bundle folder")
    i.set_defaults(func=cmd_info)


def _by_class(ds) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in range(len(ds)):
        lab = ds.label(i)
        if lab is not None:
            out.setdefault(str(lab), []).append(i)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from ..config import to_dict
    from ..errors import ConfigError, StreamLSMError
    from ..model.bundle import Bundle
    from ..reservoir import Reservoir, preset
    from ..reservoir.presets import PRESETS
    from .replay import open_dataset, parse_options

    if args.per_class < 2 or args.epochs < 1:
        raise ConfigError("per_class", "--per-class must be >= 2 and --epochs >= 1")
    try:
        from ..training.train import TrainConfig, train_projections
    except ImportError as exc:  # the edge install has no torch
        raise StreamLSMError(f"training needs the 'train' extra (pip install 'streamlsm[train]'): "
                             f"{exc}") from None
    ds = open_dataset(args.dataset, args.root, parse_options(args.option))
    name = args.preset or (args.dataset if args.dataset in PRESETS
                           else PRESET_OF_MODALITY.get(ds.modality, ""))
    if name not in PRESETS:
        raise ConfigError("preset", f"no reservoir preset {name!r}; known: {sorted(PRESETS)}")
    cfg = preset(name)
    groups = _by_class(ds)
    unseen = [c for c in args.unseen.split(",") if c]
    missing = [c for c in unseen if c not in groups]
    if missing:
        raise ConfigError("unseen", f"classes {missing} are not in the data set; it has {sorted(groups)}")
    seen = sorted(c for c in groups if c not in unseen)
    if len(seen) < 2:
        raise ConfigError("unseen", f"training needs >= 2 seen classes, got {seen}")
    rng = np.random.default_rng(args.seed)
    ids = [int(i) for c in seen for i in rng.permutation(groups[c])[: args.per_class]]
    t0 = time.monotonic()
    _say(f"encoding {len(ids)} samples of {len(seen)} classes with the {name!r} reservoir preset ...")
    counts = Reservoir(cfg).encode([ds.events(i) for i in ids],
                                   [int(ds.duration_us(i)) for i in ids], sample_ids=ids)
    x = np.log1p(counts)
    y = [str(ds.label(i)) for i in ids]
    mod = ds.modality
    _say(f"training the {mod} projection head (SupCon, 64-d, up to {args.epochs} epochs) ...")
    b = train_projections(x, x, y, labels_b=y, modalities=(mod, f"{mod}_pair"), dim=64,
                          loss="supcon", temperature=0.1,
                          config=TrainConfig(epochs=args.epochs, batch_size=64, lr=3e-3,
                                             patience=10, seed=args.seed),
                          classes=seen, reservoirs={mod: to_dict(cfg), f"{mod}_pair": to_dict(cfg)})
    bundle = Bundle(heads={mod: b.heads[mod]}, classes=seen + unseen, seen_classes=seen,
                    reservoirs={mod: to_dict(cfg)}, seed=args.seed,
                    metrics={k: v for k, v in b.metrics.items() if k != "history"},
                    extra={"trained_by": "streamlsm bundle train", "dataset": args.dataset,
                           "preset": name, "feature_transform": "log1p"})
    path = bundle.save(args.out)
    if args.prototypes:
        from ..model.bundle import embed
        from ..model.prototypes import PrototypeMatcher

        emb = embed(bundle, mod, counts)
        matcher = PrototypeMatcher(int(emb.shape[1]))
        for c in seen:
            matcher.add(c, emb[[k for k, lab in enumerate(y) if lab == c]],
                        source=f"bundle train: {args.dataset} training samples")
        args.prototypes.parent.mkdir(parents=True, exist_ok=True)
        matcher.save(args.prototypes)
        _say(f"prototypes of {len(seen)} seen classes in {args.prototypes}")
    _say(f"trained in {time.monotonic() - t0:.1f} s (validation top-1 "
         f"{b.metrics.get('val_top1', float('nan')):.3f})")
    print(json.dumps({"bundle": str(path), "hash": bundle.hash, "classes": bundle.classes,
                      "seen_classes": bundle.seen_classes, "modality": mod}))
    return 0


def cmd_support(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import ConfigError, DataError
    from .replay import open_dataset, parse_options

    if args.limit < 1:
        raise ConfigError("limit", f"must be >= 1, got {args.limit}")
    ds = open_dataset(args.dataset, args.root, parse_options(args.option))
    groups = _by_class(ds)
    idx = groups.get(str(args.label), [])[: args.limit]
    if not idx:
        raise DataError(args.root, f"no sample labelled {args.label!r}; labels: {sorted(groups)}")
    samples = [ds.events(i) for i in idx]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.npz")
    np.savez(tmp, events=np.concatenate(samples), lengths=np.array([len(s) for s in samples]),
             durations=np.array([int(ds.duration_us(i)) for i in idx]))
    tmp.replace(out)
    print(json.dumps({"support": str(out), "label": str(args.label), "samples": len(idx),
                      "layout": ds.layout, "modality": ds.modality}))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..model.bundle import Bundle

    b = Bundle.load(args.path)
    print(json.dumps({"bundle": str(args.path), "hash": b.hash, "classes": b.classes,
                      "seen_classes": b.seen_classes, "heads": sorted(b.heads),
                      "metrics": {k: v for k, v in b.metrics.items() if isinstance(v, (int, float))}},
                     indent=1))
    return 0

"""Image-audio zero-shot: N-MNIST images vs spoken digits through the cochlea, seen 1-7 / unseen 8-9."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..reservoir import preset
from ..training.train import TrainConfig, stratified_split
from .features import Samples
from .report import (
    bar_png,
    confusion_png,
    fmt,
    json_numpy,
    risk_coverage_png,
    seen_unseen_png,
    summarise,
    tsne_png,
    write_report,
)
from .zeroshot import PAPER_EXACT, Variant, ZeroShotSetup, class_fold, run_zero_shot, srnn_baselines

__all__ = ["SEEN", "UNSEEN", "PAPER", "PAPER_ROW", "setup", "variants", "headline", "gzsl_tables", "curve_figures",
           "run"]

SEEN = [str(d) for d in range(1, 8)]
UNSEEN = ["8", "9"]
PAPER = {"LSM RRAM seen": 0.6742, "LSM RRAM unseen": 0.875, "LSM software seen": 0.661,
         "LSM software unseen": 0.88, "SRNN-CLIP seen": 0.8228, "SRNN-CLIP unseen": 0.74}


def image_cfg(windows: int = 1):
    return lambda seed: preset("nmnist", polarity="both", feature_windows=windows, seed=seed)


def audio_cfg(windows: int = 1):
    return lambda seed: preset("cochlea", feature_windows=windows, seed=seed + 1000)


def setup(images: Samples, audio: Samples, image_test_fraction: float = 0.3) -> ZeroShotSetup:
    """Digits 1-9 only. Audio: one speaker held out per seed (rotating) when groups (speakers) are known,
    else a stratified 30% split; images: a stratified ``image_test_fraction`` split per seed."""
    keep_i = np.flatnonzero(np.isin(images.labels, SEEN + UNSEEN))
    keep_a = np.flatnonzero(np.isin(audio.labels, SEEN + UNSEEN))
    images, audio = images.subset(keep_i), audio.subset(keep_a)
    speakers = sorted(set(audio.groups.tolist())) if audio.groups is not None else []

    def split(seed: int):
        if len(speakers) >= 2:
            held = speakers[seed % len(speakers)]
            a_te = np.flatnonzero(audio.groups == held)
            a_tr = np.flatnonzero(audio.groups != held)
        else:
            a_tr, a_te = stratified_split(audio.labels, 0.3, seed + 7)
        i_tr, i_te = stratified_split(images.labels, image_test_fraction, seed + 11)
        return a_tr, a_te, i_tr, i_te

    return ZeroShotSetup(query=audio, gallery=images, modalities=("audio", "vision"), seen=SEEN,
                         unseen=UNSEEN, split=split, extra={"speakers": speakers})


PAPER_ROW = "LSM, the paper's recipe exactly (soft-CLIP T=1, raw outputs, batch 8, 100 epochs)"
SUPCON = "lsm SupCon T=0.1"


def variants(quick: bool = False, extended: bool = False) -> dict[str, Variant]:
    tc = TrainConfig(epochs=60, batch_size=32, lr=1e-3, patience=10)
    v = {
        PAPER_ROW: Variant(audio_cfg(), image_cfg(), **PAPER_EXACT, calibrate=True),
        SUPCON: Variant(audio_cfg(), image_cfg(), "supcon", 0.1, train=tc, calibrate=True),
        "lsm CLIP T=0.1": Variant(audio_cfg(), image_cfg(), "clip", 0.1, train=tc),
        "lsm soft-CLIP T=1, L2-normalised, batch 32": Variant(audio_cfg(), image_cfg(), "soft_clip", 1.0, train=tc),
        "prototypical net on LSM features": Variant(audio_cfg(), image_cfg(), "proto", 0.1, train=tc),
    }
    if extended:  # also measured once (3 seeds): 5-window counts were no better
        v["lsm 5-window SupCon T=0.1"] = Variant(audio_cfg(5), image_cfg(5), "supcon", 0.1, train=tc)
    if quick:
        q = TrainConfig(epochs=4, batch_size=32, lr=1e-3, patience=4)
        v = {PAPER_ROW: dataclasses.replace(v[PAPER_ROW], train=TrainConfig(epochs=4, batch_size=8, lr=1e-3,
                                                                             patience=4)),
             SUPCON: dataclasses.replace(v[SUPCON], train=q)}
    return v


def headline(runs: dict, folds: dict, chance_unseen: float, paper_row: str = PAPER_ROW,
             deployed: str = SUPCON) -> dict:
    """The flat summary (percent): the paper's recipe, the class-fold protocol, generalised zero-shot of
    the deployed recipe (uncalibrated / calibrated) and its abstention (emitted error, coverage)."""
    def mean(name, key):
        vals = [r[key] for r in runs.get(name, []) if key in r and r[key] == r[key]]
        return round(100 * float(np.mean(vals)), 2) if vals else None

    def std(name, key):
        vals = [r[key] for r in runs.get(name, []) if key in r and r[key] == r[key]]
        return round(100 * float(np.std(vals, ddof=1)), 2) if len(vals) > 1 else None

    h = {"units": "percent", "paper_exact_seen": mean(paper_row, "seen_top1"),
         "paper_exact_unseen": mean(paper_row, "unseen_top1"),
         "paper_exact_unseen_std": std(paper_row, "unseen_top1")}
    for tag, rows in folds.items():
        un = [r["unseen_top1"] for r in rows]
        pre = "classfold" if tag == "paper" else f"classfold_{tag}"
        h[f"{pre}_unseen_mean"] = round(100 * float(np.mean(un)), 2) if un else None
        h[f"{pre}_unseen_std"] = round(100 * float(np.std(un, ddof=1)), 2) if len(un) > 1 else None
        h[f"{pre}_above_chance"] = round(100 * float(np.mean([u > chance_unseen for u in un])), 2) if un else None
        h[f"{pre}_splits"] = len(un)
    h.update({"gzsl_seen_uncalibrated": mean(deployed, "gzsl_seen_uncal"),
              "gzsl_unseen_uncalibrated": mean(deployed, "gzsl_unseen_uncal"),
              "gzsl_H_uncalibrated": mean(deployed, "gzsl_H_uncal"),
              "gzsl_seen_calibrated": mean(deployed, "gzsl_seen_cal"),
              "gzsl_unseen_calibrated": mean(deployed, "gzsl_unseen_cal"),
              "gzsl_H_calibrated": mean(deployed, "gzsl_H_cal"), "ausuc": mean(deployed, "ausuc"),
              "emitted_error": mean(deployed, "emitted_error"), "coverage": mean(deployed, "coverage"),
              "paper_exact_gzsl_H_uncalibrated": mean(paper_row, "gzsl_H_uncal"),
              "paper_exact_gzsl_H_calibrated": mean(paper_row, "gzsl_H_cal"),
              "paper_exact_emitted_error": mean(paper_row, "emitted_error"),
              "paper_exact_coverage": mean(paper_row, "coverage"), "deployed_recipe": deployed})
    return h


def gzsl_tables(runs: dict) -> tuple[list, list]:
    """Rows of the generalised zero-shot table and of the abstention table (mean ± std over seeds)."""
    gz, ab = [], []
    for name, rs in runs.items():
        if "gzsl_H_uncal" not in rs[0]:
            continue
        s = {k: summarise({k: [r.get(k, float("nan")) for r in rs]})[k]
             for k in ("gzsl_seen_uncal", "gzsl_unseen_uncal", "gzsl_H_uncal", "ausuc", "gzsl_seen_cal",
                       "gzsl_unseen_cal", "gzsl_H_cal", "emitted_error", "coverage", "error_all")}
        gz.append([name] + [fmt(s[k]) for k in ("gzsl_seen_uncal", "gzsl_unseen_uncal", "gzsl_H_uncal", "ausuc",
                                                "gzsl_seen_cal", "gzsl_unseen_cal", "gzsl_H_cal")])
        if "emitted_error" in rs[0]:
            ab.append([name, fmt(s["error_all"]), fmt(s["emitted_error"]), fmt(s["coverage"]),
                       ", ".join(f"{r['threshold']:.2f}" for r in rs)])
    return gz, ab


def curve_figures(out: Path, res: dict, title: str, target: float = 0.05) -> list:
    """Seen-unseen curves and risk-coverage curves of seed 0 of every variant that has them."""
    curves = {n: c[0]["_curve"] for n, c in res["curves"].items() if c and "_curve" in c[0]}
    points = {f"{n[:24]}: calibrated": c[0]["_calibrated_point"] for n, c in res["curves"].items()
              if c and "_calibrated_point" in c[0]}
    risks = {n: c[0]["_risk"] for n, c in res["curves"].items() if c and "_risk" in c[0]}
    chosen = {f"{n[:24]}: certified threshold": (res["runs"][n][0]["coverage"], res["runs"][n][0]["emitted_error"])
              for n in risks}
    figs = [seen_unseen_png(out / "seen_unseen.png", {n[:40]: c for n, c in curves.items()},
                            f"{title}: seen-unseen curve (seed 0, test split)", points),
            risk_coverage_png(out / "risk_coverage.png", {n[:40]: c for n, c in risks.items()},
                              f"{title}: risk vs coverage (seed 0, test split)", target, chosen)]
    return [f for f in figs if f]


PARTS = ("main", "classfold", "srnn")


def _save_part(out: Path, name: str, doc: dict) -> None:
    folder = out / "parts"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps(doc, default=json_numpy))
    tmp.replace(folder / f"{name}.json")


def _load_part(out: Path, name: str) -> dict | None:
    path = out / "parts" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run(images: Samples, audio: Samples, out: str | Path, *, seeds: int = 3, quick: bool = False,
        cache_dir=None, progress: bool = True, log=print, fold_splits: int | None = None,
        parts: tuple[str, ...] = PARTS, first_seed: int = 0) -> dict:
    """The parts (main runs, class-fold, SRNN baseline) can run in separate processes on one ``out``:
    each saves ``out/parts/<part>.json``; the report is written from every part present."""
    st = setup(images, audio)
    vs = variants(quick)
    keep = SUPCON
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = fold_splits if fold_splits is not None else (2 if quick else 12)
    if "main" in parts:  # seeds first_seed .. seeds - 1 (several processes may share the seeds)
        res = run_zero_shot(st, vs, seeds, cache_dir=cache_dir, log=log, keep_bundle=keep, first_seed=first_seed)
        if keep in res["bundles"]:
            kb = res["bundles"][keep]
            tsne_png(out / "tsne_shared_space.png", {"audio": kb["query"], "image": kb["gallery"]},
                     f"{keep}, seed 0 test split", unseen=UNSEEN)
            confusion_png(out / "confusion_prototype.png", kb["confusion"], SEEN + UNSEEN,
                          f"{keep}, seed 0: audio -> image prototypes (1-9)")
        _save_part(out, f"main-{first_seed}", {"runs": res["runs"],
                                               "curves": {n: c[:1] for n, c in res["curves"].items()}})
    for part in parts:  # "classfold" (both recipes, every split) or "classfold:<paper|supcon>:<first>:<end>"
        if not part.startswith("classfold"):
            continue
        bits = part.split(":")
        tags = [bits[1]] if len(bits) > 1 else ["paper", "supcon"]
        only = range(int(bits[2]), int(bits[3])) if len(bits) > 3 else range(splits)
        for tag in tags:
            name = PAPER_ROW if tag == "paper" else SUPCON
            log(f"class-fold protocol, {name}: splits {only.start}..{only.stop - 1} of {splits} of the 36 pairs")
            rows = class_fold(st, vs[name], splits=splits, seeds=seeds, cache_dir=cache_dir, log=log, only=only)
            _save_part(out, f"classfold-{tag}-{only.start}", {tag: rows})
    if "srnn" in parts and not quick:
        a_cfg = dataclasses.replace(preset("cochlea"), bin_us=32000)
        a_bins = int(np.ceil(np.percentile(st.query.durations, 95) / a_cfg.bin_us))
        _save_part(out, "srnn", srnn_baselines(st, seeds, quick, log, a_cfg, a_bins,
                                               preset("nmnist", polarity="both", pool=2, bin_us=12000),
                                               prototypical=False))
    return report(st, out, seeds, quick, splits, audio.name)


def report(st: ZeroShotSetup, out: Path, seeds: int, quick: bool, splits: int, audio_name: str) -> dict:
    """results.json + report.md from the parts saved in ``out/parts`` (main runs required)."""
    mains = sorted((out / "parts").glob("main-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    if not mains:
        return {}
    docs = [json.loads(p.read_text()) for p in mains]
    res = {"runs": {}, "curves": docs[0]["curves"]}
    for doc in docs:
        for name, rs in doc["runs"].items():
            res["runs"].setdefault(name, []).extend(rs)
    runs = res["runs"]
    main_runs = dict(runs)
    srnn = _load_part(out, "srnn") or {}
    runs.update(srnn)
    folds: dict[str, list] = {}
    for path in sorted((out / "parts").glob("classfold-*.json")):
        for tag, rows in json.loads(path.read_text()).items():
            folds.setdefault(tag, []).extend(rows)
    folds = {t: sorted(rows, key=lambda r: r.get("split", 0)) for t, rows in sorted(folds.items())}
    present = [f for f in ("tsne_shared_space.png", "confusion_prototype.png") if (out / f).is_file()]
    figs = present + curve_figures(out, res, "image-audio")
    keys = ["seen_top1", "unseen_top1", "seen_reverse_top1", "unseen_reverse_top1", "seen_prototype",
            "unseen_prototype", "all_top1", "unseen_top5"]
    summary = {f"{name} | {k}": summarise({k: [r.get(k, float("nan")) for r in rs]})[k]
               for name, rs in runs.items() for k in keys}
    rows = []
    for name, rs in runs.items():
        s = {k: summarise({k: [r.get(k, float("nan")) for r in rs]})[k] for k in keys}
        rows.append([name] + [fmt(s[k]) for k in keys[:6]] + [f"{np.mean([r['train_seconds'] for r in rs]):.1f}"])
    best = max(runs, key=lambda n: np.mean([r["unseen_top1"] for r in runs[n]]))
    ref = SUPCON
    cost = {n: {"train_seconds": float(np.mean([r["train_seconds"] for r in rs])),
                "train_macs": float(np.mean([r["train_macs"] for r in rs]))} for n, rs in runs.items()}
    for c in cost.values():
        c["ratio_seconds"] = c["train_seconds"] / max(cost[ref]["train_seconds"], 1e-12)
        c["ratio_macs"] = c["train_macs"] / max(cost[ref]["train_macs"], 1e-12)
    cost_rows = [[n, f"{c['train_seconds']:.2f}", f"{c['train_macs']:.3g}", f"{c['ratio_seconds']:.1f}x",
                  f"{c['ratio_macs']:.1f}x"] for n, c in cost.items()]
    fig = bar_png(out / "zeroshot_av.png",
                  {f"{n[:22]} {k.split('_')[0]}": summarise({k: [r[k] for r in rs]})[k]
                   for n, rs in runs.items() for k in ("seen_top1", "unseen_top1")},
                  "top-1 audio -> image", f"image-audio zero-shot ({seeds} seeds)",
                  reference={"paper unseen 88.0": 0.88, "paper seen 66.1": 0.661})
    head = headline(runs, folds, 0.5)
    gz_rows, ab_rows = gzsl_tables(runs)
    fold_rows = [[tag, " ".join("".join(r["unseen"]) for r in rows_),
                  " ".join(f"{100 * r['unseen_top1']:.0f}" for r in rows_),
                  f"{head[('classfold' if tag == 'paper' else 'classfold_' + tag) + '_unseen_mean']}",
                  f"{head[('classfold' if tag == 'paper' else 'classfold_' + tag) + '_above_chance']}"]
                 for tag, rows_ in folds.items()]
    paper_runs = runs[PAPER_ROW]
    loss_note = ", ".join(f"{r['loss_first_epoch']:.2f} -> {r['loss_last_epoch']:.2f}" for r in paper_runs)
    first = next(iter(runs.values()))[0]
    notes = [f"Audio: {len(st.query)} spoken digits 1-9 ({audio_name}); speakers {st.extra['speakers']}; per seed "
             "one speaker is held out for testing (never trained on). Images: real N-MNIST digits 1-9, a stratified "
             "30% test split per seed.",
             f"Test queries per seed (first seed): seen {first.get('seen_n_queries')}, unseen "
             f"{first.get('unseen_n_queries')}; gallery seen {first.get('seen_n_gallery')}, unseen "
             f"{first.get('unseen_n_gallery')}. Chance: 1/7 seen, 1/2 unseen (the paper's within-split metric); "
             "1/9 when all nine prototypes compete (generalised).",
             f"'{PAPER_ROW}' follows PAPER.md: one Linear 200 -> 64 + GELU per modality, no input standardisation, "
             "no output normalisation, soft-target CLIP at T = 1, batch 8, Adam 1e-3, 100 epochs without early "
             "stopping, input spike counts / T (T = the sample's 6 ms / 8 ms bins), each audio sample paired once "
             "and for all with the image of its class at the same position (cycling), dot-product retrieval. The "
             "epoch is picked on a 20% validation split of the training data, not on the test set. Training loss "
             f"first -> last epoch per seed: {loss_note}. Only this row is the paper's recipe.",
             "'lsm soft-CLIP T=1, L2-normalised, batch 32' is the row earlier reports called '(paper)': the same loss "
             "on unit-length outputs, batch 32, at most 60 epochs with early stopping. On unit vectors at T = 1 the "
             "logits lie in [-1, 1] and the loss can hardly move; it is not the paper's set-up.",
             "Other LSM rows: log(1 + counts), standardised, L2-normalised outputs, batch 32, at most 60 epochs, a "
             "random same-class partner per epoch, early stopping on validation top-1.",
             "Generalised zero-shot (GZSL): every test query is scored by cosine against the prototypes (mean test "
             "gallery embedding) of all nine classes, as the live matcher does; accuracy is averaged per class; "
             "H = harmonic mean of seen and unseen (Xian et al.). AUSUC = area under the seen-unseen curve swept by "
             "the calibrated-stacking offset (Chao et al.). 'calibrated': the seen-class offset chosen on "
             "validation data of the training split where 2 of the 7 training digits play the unseen ones "
             "(a second model trained without them); the test split is never used to choose it.",
             "Abstention: softmax of the calibrated scores at a temperature fitted on that validation data gives "
             "the probability; a label is emitted when it reaches the threshold certified by Learn-then-Test "
             "(binomial test per threshold, Bonferroni over 48 fixed thresholds, delta 0.1) for a 5% error target "
             "on the other half of the validation queries. The guarantee holds for queries exchangeable with "
             "those calibration queries; the test queries (a new speaker, the real unseen digits 8 and 9) are not, "
             "so the table reports the error actually measured on them.",
             f"Class-fold: {splits} fixed pairs of the 36 pairs of digits 1-9 are held out in turn (training on the "
             "other 7), same recipe; 'above chance' = the fraction of splits whose unseen top-1 exceeds 50%.",
             f"Best unseen top-1 (8/9 split): {best}.",
             "Paper (its own data; best epoch chosen on the test set, one seed): "
             + ", ".join(f"{k} {v * 100:.2f}" for k, v in PAPER.items())]
    seeds_run = sorted({r["seed"] for rs in main_runs.values() for r in rs})
    notes.insert(0, f"Parts in this report: main runs for seeds {seeds_run}; class-fold splits "
                    + ", ".join(f"{t}: {len(r)}" for t, r in folds.items())
                    + ("; SRNN-CLIP baseline: seeds " + str(sorted({r['seed'] for r in srnn.get('srnn-CLIP SupCon T=0.1', [])}))
                       if srnn else "; the SRNN-CLIP baseline part did not finish in this run") + ".")
    res.pop("bundles", None)
    curves = res.pop("curves", {})
    write_report(out, "Image-audio zero-shot", {"headline": head, "runs": runs, "summary": summary, "paper": PAPER,
                                                 "seeds": seeds, "quick": quick, "best": best, "cost": cost,
                                                 "class_fold": folds,
                                                 "curves_seed0": {n: c[0] for n, c in curves.items() if c}},
                 [("Headline (percent)", ["key", "value"], [[k, v] for k, v in head.items()]),
                  ("Top-1 (mean ± std over seeds), audio -> image unless 'reverse'; the paper's within-split metric",
                   ["model", "seen", "unseen", "seen reverse", "unseen reverse", "seen proto", "unseen proto",
                    "train s"], rows),
                  *trust_sections("all 9 prototypes compete), audio -> image prototypes", gz_rows, ab_rows,
                                  "unseen pairs", fold_rows, ref, cost_rows)],
                 notes, [f for f in (fig, *figs) if f])
    res.update(summary=summary, best=best, cost=cost, headline=head, class_fold=folds)
    return res


def trust_sections(competing: str, gz_rows: list, ab_rows: list, fold_unit: str, fold_rows: list, ref: str,
                   cost_rows: list) -> list[tuple]:
    """The report sections both zero-shot experiments share: generalised zero-shot, abstention,
    class-fold and training cost (``competing`` completes "Generalised zero-shot (...")."""
    return [("Generalised zero-shot (" + competing,
             ["model", "seen", "unseen", "H", "AUSUC", "seen calibrated", "unseen calibrated", "H calibrated"],
             gz_rows),
            ("Abstention at a 5% error target (test split, never seen by the calibration)",
             ["model", "error if all labelled", "error of emitted labels", "coverage", "threshold per seed"],
             ab_rows),
            ("Class-fold protocol (unseen top-1 per split, %)",
             ["recipe", fold_unit, "unseen top-1", "mean", "% splits above chance"], fold_rows),
            (f"Training cost to the selected epoch (ratio vs {ref}; reservoir forward pass not counted)",
             ["model", "seconds", "train MACs", "time ratio", "MAC ratio"], cost_rows)]

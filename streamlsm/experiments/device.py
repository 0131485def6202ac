"""RRAM device study on real N-MNIST: arrangement, breakdown, read noise, variation, faults, drift, quantisation.

Every point is the same reservoir (the N-MNIST preset, polarity 0: 256 input rows + 200 recurrent
rows = the paper's 456-row crossbar block; counts in 5 time windows) on a different device, scored
with the same readout, folds and seeds as the software row. Readout: ridge regression on one-hot
targets over log(1 + counts), penalty chosen by exact leave-one-out on each training fold
(``selection.fit_score``). Where the RRAM LSM breaks down is the result.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from ..reservoir import DeviceConfig, ReservoirConfig, preset
from ..reservoir.device import nominal_sigma
from .features import Samples, encode_cached, spike_stats
from .report import write_report
from .selection import fit_score, gram

__all__ = ["breakdown_for_sigma", "sweeps", "run", "PAPER_SIGMA_US", "DRIFT_NU", "DRIFT_NU_STD", "READ_NOISE"]

PAPER_SIGMA_US = 6.6  # PAPER.md: "zero-mean signed conductance statistics of sigma ~6.6 uS"
READ_NOISE = 0.02     # PAPER.md: "eta a few percent" (the nominal RRAM point)
DRIFT_NU, DRIFT_NU_STD = 0.02, 0.01  # assumed power-law drift exponent (PAPER.md gives no drift data)
WINDOWS = 5
HOUR, DAY, YEAR = 3600.0, 86400.0, 365.25 * 86400.0


_RRAM = DeviceConfig(mode="rram")


def breakdown_for_sigma(sigma_us: float, signed: str, dev: DeviceConfig = _RRAM) -> float:
    """The (lower) breakdown fraction f at which the signed conductance of the nominal device has
    standard deviation ``sigma_us``: var(cell) = f (g_on^2 + s_on^2) + (1 - f)(g_off^2 + s_off^2) - mean^2
    and var(signed) = 2 var(cell) (differential pair) or var(cell) (reference column)."""
    target = sigma_us ** 2 / (2.0 if signed == "differential" else 1.0)
    a2 = dev.g_on_us ** 2 + dev.g_on_std_us ** 2
    b2 = dev.g_off_us ** 2 + dev.g_off_std_us ** 2
    d = dev.g_on_us - dev.g_off_us
    # var(f) = f a2 + (1 - f) b2 - (g_off + f d)^2 = -d^2 f^2 + (a2 - b2 - 2 g_off d) f + b2 - g_off^2
    qa, qb, qc = -d * d, a2 - b2 - 2 * dev.g_off_us * d, b2 - dev.g_off_us ** 2 - target
    disc = qb * qb - 4 * qa * qc
    if disc < 0:
        raise ValueError(f"no breakdown fraction gives sigma {sigma_us} uS ({signed})")
    roots = sorted(((-qb + s * math.sqrt(disc)) / (2 * qa)) for s in (1, -1))
    return float(roots[0])


def _base(seed: int, **kw) -> ReservoirConfig:
    return preset("nmnist", polarity="0", feature_windows=WINDOWS, seed=seed, **kw)


def nominal(signed: str) -> DeviceConfig:
    """The nominal RRAM device of an arrangement: breakdown derived from the paper's 6.6 uS."""
    return DeviceConfig(mode="rram", signed=signed, breakdown=round(breakdown_for_sigma(PAPER_SIGMA_US, signed), 4))


def sweeps(quick: bool = False) -> dict[str, dict]:
    """{sweep: {"x": values, "label": axis label, "arrangements": [...], "point": (dev, eta, cfg kw, x) ->
    (DeviceConfig, eta, config overrides, drift time or None)}}."""
    ref = nominal("reference")
    s: dict[str, dict] = {
        "breakdown": {"x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "label": "breakdown fraction",
                      "set": lambda d, x: (dataclasses.replace(d, breakdown=x), READ_NOISE, {})},
        "read_noise": {"x": [0.0, 0.02, 0.05, 0.1, 0.2, 0.5], "label": "read noise eta",
                       "set": lambda d, x: (d, x, {})},
        "d2d": {"x": [0.0, 0.05, 0.1, 0.2, 0.3, 0.5], "label": "device-to-device sigma (log-normal)",
                "set": lambda d, x: (dataclasses.replace(d, d2d=x), READ_NOISE, {})},
        "stuck": {"x": [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3], "label": "stuck-at cells (half off, half on)",
                  "set": lambda d, x: (dataclasses.replace(d, stuck_off=x / 2, stuck_on=x / 2), READ_NOISE, {})},
        "stuck_off": {"x": [0.0, 0.05, 0.1, 0.2, 0.3], "label": "stuck-at-off (pristine) cells",
                      "set": lambda d, x: (dataclasses.replace(d, stuck_off=x), READ_NOISE, {})},
        "stuck_on": {"x": [0.0, 0.05, 0.1, 0.2, 0.3], "label": "stuck-at-on (broken-down) cells",
                     "set": lambda d, x: (dataclasses.replace(d, stuck_on=x), READ_NOISE, {})},
        "drift": {"x": [1.0, HOUR, DAY, 7 * DAY, 30 * DAY, YEAR], "label": "time since programming (s)",
                  "set": lambda d, x: (dataclasses.replace(d, drift_nu=DRIFT_NU, drift_nu_std=DRIFT_NU_STD,
                                                           drift_time_s=x), READ_NOISE, {})},
        "input_bits": {"x": [1, 2, 3, 4, 0], "label": "input bits per channel and bin (0 = no clip)",
                       "set": lambda d, x: (d, READ_NOISE, {"input_max": (2 ** x - 1) if x else 0})},
        "weight_bits": {"x": [1, 2, 3, 4, 6, 0], "label": "weight grid 2^-k (k; 0 = automatic, ~16 bits)",
                        "set": lambda d, x: (dataclasses.replace(d, grid_bits=x), READ_NOISE, {})},
    }
    both = {"breakdown", "read_noise"}
    for name, sw in s.items():
        sw["arrangements"] = ["reference", "differential"] if name in both else ["reference"]
    if quick:
        for sw in s.values():
            sw["x"] = [sw["x"][0], sw["x"][-1]]
    s["_nominal"] = {"reference": ref, "differential": nominal("differential")}
    return s


def _score(samples: Samples, cfg: ReservoirConfig, seed: int, folds: int, cache_dir, train_cfg=None) -> dict:
    """Accuracy over the outer folds (readout trained on ``train_cfg``'s features when given: the
    chip at programming time, scored on ``cfg``'s), with firing statistics of ``cfg``."""
    from .classify import _folds

    classes = sorted(set(samples.labels.tolist()))
    y = np.asarray([classes.index(c) for c in samples.labels])
    counts = encode_cached(cfg, samples, cache_dir)
    x = np.log1p(counts)
    g = gram(x)
    stats = spike_stats(counts, cfg, samples.durations)
    test_gram = None
    if train_cfg is not None:
        x0 = np.log1p(encode_cached(train_cfg, samples, cache_dir))
        g, test_gram = gram(x0), (x.astype(np.float32) @ x0.T.astype(np.float32)).astype(np.float64)
    accs = [fit_score(g, y, tr, te, len(classes), test_gram=test_gram)["accuracy"]
            for tr, te in _folds(samples.labels, folds, seed)]
    return {"accuracy": float(np.mean(accs)), "folds": accs, **stats}


def _mean(rows: list[dict], key: str) -> dict:
    v = [r[key] for r in rows]
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}


def run(samples: Samples, out: str | Path, *, seeds: int = 3, quick: bool = False, folds: int = 5,
        cache_dir=None, progress: bool = True, log=print) -> dict:
    """Run every sweep for seeds 0..seeds-1; write results.json (flat ``headline``), report.md, PNGs."""
    if quick and len(samples) > 300:
        rng = np.random.default_rng(0)
        samples = samples.subset(np.sort(rng.permutation(len(samples))[:300]))
        folds = 3
    sw = sweeps(quick)
    nominal_dev = sw.pop("_nominal")
    seed_list = list(range(seeds))
    memo: dict[str, dict] = {}

    def point(dev: DeviceConfig | None, eta: float, kw: dict, train_dev: DeviceConfig | None = None) -> dict:
        key = repr((dev, eta, sorted(kw.items()), train_dev))
        if key not in memo:
            rows = []
            for s in seed_list:
                cfg = _base(s, read_noise=eta, **kw, **({"device": dev} if dev is not None else {}))
                tcfg = dataclasses.replace(cfg, device=train_dev) if train_dev is not None else None
                rows.append({"seed": s, **_score(samples, cfg, s, folds, cache_dir, tcfg)})
            memo[key] = {"runs": rows, "accuracy": _mean(rows, "accuracy"), "rate": _mean(rows, "rate"),
                         "silent": _mean(rows, "silent"), "silent_in_sample": _mean(rows, "silent_in_sample")}
        return memo[key]

    log("software model (ideal Gaussian weights, no read noise) ...")
    software = point(None, 0.0, {})
    log(f"  software: {software['accuracy']['mean']:.4f}")
    nominal_rows = {a: point(d, READ_NOISE, {}) for a, d in nominal_dev.items()}
    for a, r in nominal_rows.items():
        log(f"  nominal RRAM {a}: {r['accuracy']['mean']:.4f} (breakdown {nominal_dev[a].breakdown})")
    results: dict[str, dict] = {}
    for name, spec in sw.items():
        results[name] = {"x": spec["x"], "label": spec["label"], "arrangements": {}}
        for arr in spec["arrangements"]:
            pts = []
            for x in spec["x"]:
                dev, eta, kw = spec["set"](nominal_dev[arr], x)
                r = point(dev, eta, kw)
                entry = {"x": x, **{k: r[k] for k in ("accuracy", "rate", "silent", "silent_in_sample")}}
                if name == "drift":  # the readout trained on the chip at t0 = 1 s, scored at time x
                    t0_dev = dataclasses.replace(dev, drift_time_s=1.0)
                    r0 = point(dev, eta, kw, train_dev=t0_dev)
                    entry["accuracy_retrained"] = entry["accuracy"]
                    entry["accuracy"] = r0["accuracy"]
                pts.append(entry)
                log(f"  {name:12s} {arr:12s} x={x!s:10s} acc {entry['accuracy']['mean']:.4f} "
                    f"rate {entry['rate']['mean']:.4f} silent {entry['silent']['mean']:.3f}")
            results[name]["arrangements"][arr] = pts
    acc_sw = software["accuracy"]["mean"]
    headline = {
        "acc_software": acc_sw,
        "acc_rram_ref_column": nominal_rows["reference"]["accuracy"]["mean"],
        "acc_rram_diff_pair": nominal_rows["differential"]["accuracy"]["mean"],
        "eta_at_1pt_loss": _crossing(results["read_noise"], "reference", acc_sw - 0.01),
        "stuck_at_1pt_loss": _crossing(results["stuck"], "reference", acc_sw - 0.01),
        "d2d_at_1pt_loss": _crossing(results["d2d"], "reference", acc_sw - 0.01),
        "drift_s_at_1pt_loss": _crossing(results["drift"], "reference", acc_sw - 0.01),
        "breakdown_ref_column": nominal_dev["reference"].breakdown,
        "breakdown_diff_pair": nominal_dev["differential"].breakdown,
        "rate_software": software["rate"]["mean"], "silent_software": software["silent"]["mean"],
        "rate_rram_ref_column": nominal_rows["reference"]["rate"]["mean"],
        "silent_rram_ref_column": nominal_rows["reference"]["silent"]["mean"],
    }
    res = {"headline": headline, "software": software, "nominal": nominal_rows, "sweeps": results,
           "seeds": seed_list, "folds": folds, "n_samples": len(samples), "quick": quick,
           "nominal_devices": {a: dataclasses.asdict(d) for a, d in nominal_dev.items()},
           "drift_nu": [DRIFT_NU, DRIFT_NU_STD], "read_noise_nominal": READ_NOISE,
           "nominal_sigma_us": {a: nominal_sigma(d) for a, d in nominal_dev.items()}}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = [f for f in (_plot(out, name, r, software) for name, r in results.items()) if f]
    write_report(out, "RRAM device study (real N-MNIST)", res, _tables(res), _notes(res), figs)
    return res


def _crossing(sweep: dict, arr: str, level: float) -> float | None:
    """The smallest stressor value at which the accuracy falls to ``level`` (linear interpolation
    between sweep points; None when it never does within the sweep)."""
    pts = sweep["arrangements"][arr]
    xs = [p["x"] for p in pts]
    ys = [p["accuracy"]["mean"] for p in pts]
    if ys[0] <= level:
        return float(xs[0])
    for i in range(1, len(xs)):
        x0, y0, x1, y1 = xs[i - 1], ys[i - 1], xs[i], ys[i]
        if y1 <= level:
            return float(x0 + (x1 - x0) * (y0 - level) / (y0 - y1)) if y0 != y1 else float(x1)
    return None


def _pct(s: dict) -> str:
    return f"{s['mean'] * 100:.2f} ± {s['std'] * 100:.2f}"


def _tables(res: dict) -> list:
    sw = res["software"]
    rows = [["software (ideal Gaussian, eta 0)", _pct(sw["accuracy"]), f"{sw['rate']['mean']:.4f}",
             f"{sw['silent']['mean']:.3f}", f"{sw['silent_in_sample']['mean']:.3f}"]]
    for a, r in res["nominal"].items():
        b = res["nominal_devices"][a]["breakdown"]
        rows.append([f"RRAM {a} (breakdown {b}, eta {res['read_noise_nominal']})", _pct(r["accuracy"]),
                     f"{r['rate']['mean']:.4f}", f"{r['silent']['mean']:.3f}", f"{r['silent_in_sample']['mean']:.3f}"])
    tables = [("Nominal devices", ["model", "accuracy %", "rate (spikes/neuron/bin)", "silent neurons",
                                   "silent within a sample"], rows)]
    for name, r in res["sweeps"].items():
        trs = []
        for arr, pts in r["arrangements"].items():
            for p in pts:
                extra = f" (retrained at t: {_pct(p['accuracy_retrained'])})" if "accuracy_retrained" in p else ""
                trs.append([arr, p["x"], _pct(p["accuracy"]) + extra, f"{p['rate']['mean']:.4f}",
                            f"{p['silent']['mean']:.3f}", f"{p['silent_in_sample']['mean']:.3f}"])
        tables.append((f"Sweep: {r['label']}", ["arrangement", name, "accuracy %", "rate", "silent", "silent in sample"],
                       trs))
    return tables


def _notes(res: dict) -> list[str]:
    h = res["headline"]
    nd = res["nominal_devices"]

    def cross(v, unit=""):
        return "not reached within the sweep" if v is None else f"{v:.3g}{unit}"

    return [
        f"{res['n_samples']} real N-MNIST training samples, stratified {res['folds']}-fold CV, seeds {res['seeds']} "
        "(seed = reservoir weights/device draw and fold split); mean ± std over seeds of the fold-mean accuracy. "
        "Every point uses the same folds and seeds as the software row.",
        "Reservoir: the N-MNIST preset (200 LIF neurons, decay 0.9, threshold 5, 6 ms bins, weight scale 0.3536), "
        "polarity 0 (256 inputs: 256 + 200 rows = the paper's 456-row block), counts in 5 time windows.",
        "Readout: ridge regression on one-hot targets over log(1 + counts) (kernel form), penalty chosen by exact "
        "leave-one-out on each training fold only. It is not the softmax regression of results/nmnist; absolute "
        "figures differ from there, comparisons within this study are like for like.",
        f"Breakdown fraction: derived from PAPER.md's signed-conductance sigma ~{PAPER_SIGMA_US} uS with the cell "
        f"priors N(14.25, 2.46) uS / 0.1 uS: reference column f = {nd['reference']['breakdown']}, differential pair "
        f"f = {nd['differential']['breakdown']} (the lower root of the variance equation; the upper roots "
        f"1 - f are as consistent); PAPER.md gives no programming voltage, so the Weibull voltage model "
        "(V63 = 3.2 V, beta = 8) is not used. The breakdown sweep covers 0.1-0.9.",
        "Weights: signed conductance / nominal sigma (of the fault-free device) x weight scale, so faults, drift "
        "and variation change the weights the reservoir sees (they are not normalised away). Reference column: "
        "one mid-level cell per row programmed to the cell mean, with the same d2d variation and drift as the "
        "array cells (no stuck faults on it).",
        f"Read noise eta: w (1 + eta N(0,1)) fresh at every read (kernel); nominal eta {res['read_noise_nominal']} "
        "on every RRAM point except the read-noise sweep.",
        f"Drift: g(t) = g(t0) (t / 1 s)^-nu per cell, nu ~ N({res['drift_nu'][0]}, {res['drift_nu'][1]}) clipped "
        ">= 0 (an assumption: PAPER.md gives no drift data). The readout is trained on the chip at t0 = 1 s and "
        "scored on the same chip at time t (the accuracy column); 'retrained at t' refits it on the drifted chip.",
        f"Headline: software {h['acc_software'] * 100:.2f} %, RRAM reference column {h['acc_rram_ref_column'] * 100:.2f} %, "
        f"RRAM differential pairs {h['acc_rram_diff_pair'] * 100:.2f} %. One point below the software model "
        f"(reference column): read noise eta {cross(h['eta_at_1pt_loss'])}, stuck-at fraction "
        f"{cross(h['stuck_at_1pt_loss'])}, d2d sigma {cross(h['d2d_at_1pt_loss'])}, drift "
        f"{cross(h['drift_s_at_1pt_loss'], ' s')}.",
    ]


def _plot(out: Path, name: str, r: dict, software: dict) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for arr, pts in r["arrangements"].items():
        xs = np.arange(len(pts)) if name in ("input_bits", "weight_bits") else np.asarray([p["x"] for p in pts], float)
        m = np.asarray([p["accuracy"]["mean"] for p in pts])
        s = np.asarray([p["accuracy"]["std"] for p in pts])
        ax.errorbar(xs, m, yerr=s, marker="o", capsize=3, label=f"RRAM {arr}")
        ax2.plot(xs, [p["rate"]["mean"] for p in pts], marker="o", label=f"rate, {arr}")
        ax2.plot(xs, [p["silent"]["mean"] for p in pts], marker="x", ls="--", label=f"silent neurons, {arr}")
        if name == "drift":
            ax.plot(xs, [p["accuracy_retrained"]["mean"] for p in pts], marker="s", ls=":",
                    label=f"RRAM {arr}, readout retrained at t")
        if name in ("input_bits", "weight_bits"):
            ax.set_xticks(xs, [str(p["x"]) for p in pts])
            ax2.set_xticks(xs, [str(p["x"]) for p in pts])
    sw = software["accuracy"]
    ax.axhline(sw["mean"], color="k", lw=1, label="software model")
    ax.axhspan(sw["mean"] - sw["std"], sw["mean"] + sw["std"], color="k", alpha=0.1)
    ax.axhline(sw["mean"] - 0.01, color="tab:red", lw=0.8, ls="--", label="software - 1 point")
    if name == "drift":
        ax.set_xscale("log")
        ax2.set_xscale("log")
    ax.set_xlabel(r["label"])
    ax.set_ylabel("accuracy (5-fold CV)")
    ax.legend(fontsize=7)
    ax2.axhline(software["rate"]["mean"], color="k", lw=1, label="software rate")
    ax2.set_xlabel(r["label"])
    ax2.set_ylabel("spikes/neuron/bin; fraction")
    ax2.legend(fontsize=7)
    fig.suptitle(f"N-MNIST LSM on RRAM: {name}", fontsize=10)
    fig.tight_layout()
    path = out / f"device_{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name

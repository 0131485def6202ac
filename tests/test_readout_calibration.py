"""Calibrated stacking, temperature scaling and risk-controlled abstention (readout.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from streamlsm.errors import ModelError
from streamlsm.model.calibration import (
    Calibration,
    choose_offset,
    confidence,
    fit_calibration,
    fit_temperature,
    gzsl_accuracy,
    harmonic_mean,
    risk_threshold,
    seen_unseen_curve,
)


def _biased(rng, n, n_seen=6, n_unseen=2, bias=0.45, noise=0.12):
    """Cosine-like scores: the true class +0.3, seen-class columns +bias for every query (a trained model's
    preference for its own classes), Gaussian noise."""
    c = n_seen + n_unseen
    y = rng.integers(0, c, n)
    s = noise * rng.normal(size=(n, c))
    s[np.arange(n), y] += 0.3
    mask = np.arange(c) < n_seen
    s[:, mask] += bias
    return s, y, mask


def test_harmonic_mean():
    assert harmonic_mean(0.9, 0.075) == pytest.approx(2 * 0.9 * 0.075 / 0.975)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_calibrated_stacking_raises_h_on_a_biased_case():
    rng = np.random.default_rng(0)
    val, test = _biased(rng, 2000), _biased(rng, 2000)
    before = gzsl_accuracy(test[0], test[1], test[2])
    assert before["unseen"] < 0.05 and before["H"] < 0.1  # the seen classes swallow the unseen queries
    off = choose_offset(*val)  # chosen on validation data only
    assert off == pytest.approx(0.45, abs=0.1)
    after = gzsl_accuracy(test[0], test[1], test[2], off)
    assert after["H"] > 0.8 and after["unseen"] > 0.75 and after["seen"] > 0.75


def test_seen_unseen_curve_spans_both_ends_and_its_area():
    rng = np.random.default_rng(1)
    s, y, mask = _biased(rng, 1500)
    c = seen_unseen_curve(s, y, mask)
    assert c["unseen"][0] == 0.0 and c["seen"][0] > 0.8  # lowest offset: every query goes to a seen class
    assert c["seen"][-1] == 0.0 and c["unseen"][-1] > 0.8  # highest: to an unseen class
    assert 0.75 < c["auc"] < 1.0
    blind = seen_unseen_curve(rng.normal(size=s.shape), y, mask)  # scores that know nothing
    assert blind["auc"] < 0.2


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4000, 5))
    t_true = 0.25
    p = np.exp(logits / t_true)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(t_true, rel=0.1)
    conf = confidence(logits, 0.25)
    assert conf.shape == (4000,) and np.all((conf >= 0.2) & (conf <= 1.0))


def _calibrated_stream(rng, n):
    """Confidences with P(correct | conf) = conf (a perfectly calibrated model that is mostly confident)."""
    conf = rng.uniform(0.0, 1.0, n) ** 0.25
    return conf, rng.random(n) < conf


def test_risk_threshold_keeps_the_error_of_emitted_labels_under_the_target():
    rng = np.random.default_rng(3)
    errs, covs = [], []
    for _ in range(20):
        a, b = _calibrated_stream(rng, 3000), _calibrated_stream(rng, 3000)
        lam = risk_threshold(b[0], b[1], 0.05, 0.1, a[0], a[1])
        fresh = _calibrated_stream(rng, 20000)
        emit = fresh[0] >= lam
        errs.append(1.0 - fresh[1][emit].mean() if emit.any() else np.nan)
        covs.append(emit.mean())
    errs, covs = np.asarray(errs), np.asarray(covs)
    # the guarantee: error <= 5% (or nothing emitted) in at least 90% of calibration draws
    assert np.mean(np.where(covs > 0, errs, 0.0) <= 0.05) >= 0.9
    # and not trivially conservative: labels are emitted in most draws, at an error near the target
    assert np.mean(covs > 0.02) >= 0.8 and np.nanmean(errs) > 0.015


def test_risk_threshold_emits_nothing_when_nothing_can_be_certified():
    conf = np.linspace(0.2, 1.0, 300)
    assert risk_threshold(conf, np.zeros(300, bool), 0.05) == float("inf")
    assert risk_threshold(conf[:10], np.ones(10, bool), 0.05) == float("inf")  # too few to certify 5%
    with pytest.raises(ModelError):
        risk_threshold(conf, np.ones(300, bool), 0.0)


def test_fit_calibration_round_trips_and_validates():
    rng = np.random.default_rng(4)
    s, y, mask = _biased(rng, 1200)
    cal = fit_calibration(s, y, mask, seed=0, info={"pseudo_unseen": "6,7"})
    assert dict(cal.offsets)[2] == pytest.approx(0.45, abs=0.1)
    assert cal.offset_for(0) == 0.0 and cal.offset_for(5) == dict(cal.offsets)[2]
    assert len(cal.confidence) + len(cal.order_confidence) == 1200
    again = Calibration.from_dict(cal.to_dict())
    assert again == cal
    assert cal.threshold(0.05) <= 1.0 and cal.threshold(0.5) <= cal.threshold(0.05)
    with pytest.raises(ModelError):
        Calibration.from_dict({"offsets": [[1, 0.1]], "temperature": -1, "confidence": [], "correct": []})
    with pytest.raises(ModelError):
        Calibration.from_dict({"offsets": []})

"""Exact evaluation metrics over a whole evaluation set (numpy)."""
from __future__ import annotations

import numpy as np


def exact_auc(labels, scores) -> float:
    """ROC AUC from ranks (Mann-Whitney U), ties counted as one half. NaN if one class is absent."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    n_pos = float(np.sum(y > 0.5))
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Average ranks over runs of equal scores.
    boundaries = np.flatnonzero(np.diff(s_sorted)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [s.size]])
    avg_rank = (starts + ends + 1) / 2.0  # 1-based ranks
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    rank_sum_pos = float(np.sum(ranks[y > 0.5]))
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def logloss(labels, probabilities, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1-eps])."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probabilities, dtype=np.float64).reshape(-1), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def normalized_entropy(labels, probabilities) -> float:
    """NE (He et al. 2014): the logloss divided by the entropy of the labels' own base rate, i.e.
    by the logloss of always predicting the split's click rate. 1 is no better than that constant;
    lower is better. NaN when the split has one class only."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if not y.size:
        return float("nan")
    rate = float(np.mean(y))
    if rate <= 0.0 or rate >= 1.0:
        return float("nan")
    base = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    return logloss(y, probabilities) / base


CALIBRATION_BINS = 20


def reliability(labels, probabilities, bins: int = CALIBRATION_BINS) -> dict:
    """Equal-mass bins of the predictions (sorted by probability, split into `bins` runs of equal
    row counts, ±1): per bin the mean predicted probability, the observed click rate and the rows."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    order = np.argsort(p, kind="mergesort")
    parts = [part for part in np.array_split(order, min(bins, y.size)) if part.size]
    return {"predicted": [float(np.mean(p[i])) for i in parts],
            "observed": [float(np.mean(y[i])) for i in parts],
            "rows": [int(i.size) for i in parts]}


def expected_calibration_error(labels, probabilities, bins: int = CALIBRATION_BINS) -> float:
    """ECE over equal-mass bins: sum over bins of (bin rows / rows) * |mean predicted - observed|."""
    r = reliability(labels, probabilities, bins)
    n = sum(r["rows"])
    if not n:
        return float("nan")
    return float(sum(c * abs(a - b) for a, b, c in zip(r["predicted"], r["observed"], r["rows"])) / n)


def summary(labels, probabilities) -> dict:
    """AUC, logloss, NE, the equal-mass calibration error, the predicted/actual CTR ratio and the
    row count."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    actual = float(np.mean(y)) if y.size else float("nan")
    return {"auc": exact_auc(y, p), "logloss": logloss(y, p) if y.size else float("nan"),
            "ne": normalized_entropy(y, p), "ece": expected_calibration_error(y, p),
            "ctr_ratio": float(np.mean(p)) / actual if actual > 0 else float("nan"),
            "rows": int(y.size)}

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


def summary(labels, probabilities) -> dict:
    """AUC, logloss, the predicted/actual CTR ratio and the row count."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    actual = float(np.mean(y)) if y.size else float("nan")
    return {"auc": exact_auc(y, p), "logloss": logloss(y, p) if y.size else float("nan"),
            "ctr_ratio": float(np.mean(p)) / actual if actual > 0 else float("nan"),
            "rows": int(y.size)}

"""Synthetic Criteo: Kaggle-shaped text from a planted model, with the true click probabilities.

Each categorical field draws value ranks from a truncated power law (Zipf-like: rank r has
probability ~ 1/(r+1)) over a Kaggle-like cardinality; integer fields are heavy-tailed counts.
Missing rates follow Kaggle's. Labels come from a known teacher, a factorization machine over
the raw values (first-order weights, 4-d latent vectors per value, weights on log1p(I)), with
the bias calibrated for the target positive rate; the default strength puts the Bayes-optimal
AUC near 0.81, about where the best models on the real Criteo data stand. The teacher's probability of each row is
written to `<output>.proba`: the Bayes-optimal scores, so the best achievable AUC and logloss of
any split are known.
"""
from __future__ import annotations

import numpy as np

from ctr_tf import fs

KAGGLE_CARDINALITIES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593,
                        3194, 27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
INT_MISSING = (0.45, 0.0, 0.21, 0.22, 0.026, 0.22, 0.04, 0.0005, 0.04, 0.45, 0.04, 0.77, 0.22)
CAT_MISSING = (0, 0, 0.03, 0.03, 0, 0.12, 0, 0, 0, 0, 0, 0.03, 0, 0, 0, 0.03, 0, 0,
               0.44, 0.44, 0.03, 0.76, 0, 0.03, 0.44, 0.44)
INT_SCALE = (3, 100, 20, 7, 18000, 110, 16, 12, 100, 0.6, 2.7, 1, 8)
LATENT_DIM = 4
PARAM_ROWS = 1 << 16  # teacher parameters per field; ranks beyond share rows by modulo


def cardinalities(scale: float) -> np.ndarray:
    return np.maximum(np.round(np.asarray(KAGGLE_CARDINALITIES) * scale), 2).astype(np.int64)


class Teacher:
    """The planted FM that labels the synthetic rows; deterministic given its seed."""

    def __init__(self, seed: int, strength: float = 0.6):
        rng = np.random.default_rng([seed, 1])
        self.w_cat = rng.normal(0, 0.35 * strength, (26, PARAM_ROWS))
        self.v_cat = rng.normal(0, 0.22 * strength, (26, PARAM_ROWS, LATENT_DIM))
        self.w_int = rng.normal(0, 0.15 * strength, 13)
        self.v_int = rng.normal(0, 0.08 * strength, (13, LATENT_DIM))
        self.bias = 0.0

    def logits(self, ints: np.ndarray, int_missing: np.ndarray, ranks: np.ndarray, cat_missing: np.ndarray):
        rows = ranks % PARAM_ROWS
        f = np.arange(26)[None, :]
        present = ~cat_missing
        w = np.where(present, self.w_cat[f, rows], 0.0).sum(1)
        v = np.where(present[..., None], self.v_cat[f, rows], 0.0)  # [n, 26, k]
        x = np.where(int_missing, 0.0, np.log1p(np.maximum(ints, 0)))
        w = w + (x * self.w_int).sum(1)
        v = np.concatenate([v, x[..., None] * self.v_int[None]], axis=1)
        fm = 0.5 * ((v.sum(1) ** 2) - (v ** 2).sum(1)).sum(1)
        return self.bias + w + fm

    def calibrate(self, logits: np.ndarray, positive_rate: float):
        lo, hi = -30.0, 30.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if np.mean(1 / (1 + np.exp(-(logits + mid)))) > positive_rate:
                hi = mid
            else:
                lo = mid
        self.bias = (lo + hi) / 2


def _sample(rng, n, card):
    """Ranks in [0, card) with P(r) ~ 1/(r+1)."""
    u = rng.random((n, len(card)))
    return np.minimum(np.floor(np.exp(u * np.log(card + 1.0))) - 1, card - 1).astype(np.int64)


def _hex_values(field: int, ranks: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = (ranks.astype(np.uint64) * np.uint64(2654435761) + np.uint64(field * 0x9E3779B1 + 12345))
        h = (h ^ (h >> np.uint64(15))) & np.uint64(0xFFFFFFFF)
    return np.char.mod("%08x", h.astype(np.uint32)).astype(object)


def generate_block(rng, n: int, card: np.ndarray):
    int_missing = rng.random((n, 13)) < np.asarray(INT_MISSING)
    ints = np.floor(rng.exponential(1.0, (n, 13)) ** 1.5 * np.asarray(INT_SCALE)).astype(np.int64)
    ints[:, 1] -= (rng.random(n) < 0.1).astype(np.int64) * rng.integers(1, 4, n)  # I2 can be negative
    ranks = _sample(rng, n, card)
    cat_missing = rng.random((n, 26)) < np.asarray(CAT_MISSING)
    return ints, int_missing, ranks, cat_missing


def format_lines(labels, ints, int_missing, ranks, cat_missing) -> list[str]:
    cols = [labels.astype(np.int64).astype(str).astype(object)]
    for j in range(13):
        c = ints[:, j].astype(str).astype(object)
        c[int_missing[:, j]] = ""
        cols.append(c)
    for j in range(26):
        c = _hex_values(j, ranks[:, j])
        c[cat_missing[:, j]] = ""
        cols.append(c)
    return ["\t".join(r) for r in zip(*cols)]


def write(path: str, rows: int, seed: int = 0, scale: float = 0.001, positive_rate: float = 0.25,
          block: int = 100_000, strength: float = 0.6, data_seed: int | None = None) -> dict:
    """Writes `rows` Criteo TSV lines to `path` and the true probabilities to `path.proba`.

    `seed` fixes the planted model; `data_seed` (default: seed) the rows, so a second file with
    the same seed and another data_seed is held-out data from the same distribution.
    """
    if rows < 1:
        raise ValueError(f"--rows={rows}: must be >= 1")
    if not 0 < scale <= 1:
        raise ValueError(f"--scale={scale}: must be in (0, 1]")
    card = cardinalities(scale)
    teacher = Teacher(seed, strength)
    rng = np.random.default_rng([seed, 2])
    teacher.calibrate(teacher.logits(*generate_block(rng, 20_000, card)), positive_rate)
    rng = np.random.default_rng([seed if data_seed is None else data_seed, 3])
    positives = 0
    with fs.open(path, "w") as data, fs.open(path + ".proba", "w") as proba:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            ints, int_missing, ranks, cat_missing = generate_block(rng, n, card)
            p = 1 / (1 + np.exp(-teacher.logits(ints, int_missing, ranks, cat_missing)))
            labels = (rng.random(n) < p).astype(np.int64)
            positives += int(labels.sum())
            data.write("\n".join(format_lines(labels, ints, int_missing, ranks, cat_missing)) + "\n")
            proba.write("\n".join(f"{x:.6g}" for x in p) + "\n")
    return {"rows": rows, "positive_rate": positives / rows, "cardinalities": card.tolist()}


def read_probabilities(path: str, files=None) -> np.ndarray | None:
    """The true probabilities `write` put beside `path` (`<path>.proba`), or None if there are none;
    `files` is how the inputs are opened (ctr_tf.data.reader.InputFiles; default TensorFlow's)."""
    proba = path + ".proba"
    if files is None:
        return np.array(fs.read_text(proba).split(), dtype=np.float64) if fs.exists(proba) else None
    if not files.isfile(proba):
        return None
    with files.open(proba) as f:
        return np.array(f.read().split(), dtype=np.float64)

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


FIELDS = tuple(f"I{i}" for i in range(1, 14)) + tuple(f"C{j}" for j in range(1, 27))
TEACHERS = ("fm", "cubic")


class Teacher:
    """The planted model that labels the synthetic rows; deterministic given its seed.

    kind "fm": a factorization machine over the raw values, first-order weights and 4-d latent
    vectors per value (and per integer field, times log1p(I)). kind "cubic": the same plus a
    third-order term, sum over field triples f < g < h of sum_k u_fk u_gk u_hk with latent vectors
    u of their own (cubic_strength scales them): interactions no second-order model represents.
    `null_fields` get no weight at all: they carry no signal (the importance tests' planted zeros).
    """

    def __init__(self, seed: int, strength: float = 0.6, kind: str = "fm", cubic_strength: float = 1.0,
                 null_fields=()):
        if kind not in TEACHERS:
            raise ValueError(f"--teacher={kind!r}: expected one of {', '.join(TEACHERS)}")
        unknown = sorted(set(null_fields) - set(FIELDS))
        if unknown:
            raise ValueError(f"--null_fields names {', '.join(unknown)}, not a Criteo field (I1-I13, C1-C26)")
        rng = np.random.default_rng([seed, 1])
        self.w_cat = rng.normal(0, 0.35 * strength, (26, PARAM_ROWS))
        self.v_cat = rng.normal(0, 0.22 * strength, (26, PARAM_ROWS, LATENT_DIM))
        self.w_int = rng.normal(0, 0.15 * strength, 13)
        self.v_int = rng.normal(0, 0.08 * strength, (13, LATENT_DIM))
        self.kind = kind
        if kind == "cubic":  # a stream of its own: the second-order part is the fm teacher's
            rng3 = np.random.default_rng([seed, 4])
            self.u_cat = rng3.normal(0, 0.30 * strength * cubic_strength, (26, PARAM_ROWS, LATENT_DIM))
            self.u_int = rng3.normal(0, 0.10 * strength * cubic_strength, (13, LATENT_DIM))
        self.null_fields = tuple(null_fields)
        for name in null_fields:
            j = FIELDS.index(name)
            integer = j < 13
            arrays = (self.w_int, self.v_int) if integer else (self.w_cat, self.v_cat)
            if kind == "cubic":
                arrays += (self.u_int if integer else self.u_cat,)
            for a in arrays:
                a[j if integer else j - 13] = 0.0
        self.bias = 0.0

    def parts(self, ints: np.ndarray, int_missing: np.ndarray, ranks: np.ndarray, cat_missing: np.ndarray):
        """Per row: each field's first-order term [n, 39] (I1..I13, C1..C26), each field's latent
        vector [n, 39, k] (0 when missing), and the third-order vectors (cubic) or None."""
        rows = ranks % PARAM_ROWS
        f = np.arange(26)[None, :]
        present = ~cat_missing
        x = np.where(int_missing, 0.0, np.log1p(np.maximum(ints, 0)))
        first = np.concatenate([x * self.w_int, np.where(present, self.w_cat[f, rows], 0.0)], axis=1)
        v = np.concatenate([x[..., None] * self.v_int[None], np.where(present[..., None], self.v_cat[f, rows], 0.0)],
                           axis=1)
        u = None
        if self.kind == "cubic":
            u = np.concatenate([x[..., None] * self.u_int[None],
                                np.where(present[..., None], self.u_cat[f, rows], 0.0)], axis=1)
        return first, v, u

    def logits(self, ints: np.ndarray, int_missing: np.ndarray, ranks: np.ndarray, cat_missing: np.ndarray):
        first, v, u = self.parts(ints, int_missing, ranks, cat_missing)
        fm = 0.5 * ((v.sum(1) ** 2) - (v ** 2).sum(1)).sum(1)
        out = self.bias + first.sum(1) + fm
        if u is not None:  # e_3 of each latent dimension: (p1^3 - 3 p1 p2 + 2 p3) / 6 over the fields
            p1, p2, p3 = u.sum(1), (u ** 2).sum(1), (u ** 3).sum(1)
            out = out + ((p1 ** 3 - 3 * p1 * p2 + 2 * p3) / 6).sum(1)
        return out

    def field_shares(self, ints, int_missing, ranks, cat_missing) -> dict:
        """Each field's share of the teacher's logit variance: the variance of the field's own
        part of the logit (its first-order term, half of each pair it is in, a third of each
        triple), over the sum of those variances; a null field's share is 0."""
        first, v, u = self.parts(ints, int_missing, ranks, cat_missing)
        total = v.sum(1, keepdims=True)
        own = first + 0.5 * ((v * (total - v)).sum(2))  # <v_f, sum of the others>
        if u is not None:
            p1, p2 = u.sum(1, keepdims=True), (u ** 2).sum(1, keepdims=True)
            rest1, rest2 = p1 - u, p2 - u ** 2  # e_2 of the other fields, per dimension
            own = own + (u * (rest1 ** 2 - rest2) / 2).sum(2) / 3
        var = own.var(axis=0)
        return dict(zip(FIELDS, (var / var.sum()).tolist()))

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
          block: int = 100_000, strength: float = 0.6, data_seed: int | None = None, teacher: str = "fm",
          cubic_strength: float = 1.0, null_fields=(), explain: bool = False) -> dict:
    """Writes `rows` Criteo TSV lines to `path` and the true probabilities to `path.proba`.

    `seed` fixes the planted model; `data_seed` (default: seed) the rows, so a second file with
    the same seed and another data_seed is held-out data from the same distribution. `teacher`,
    `cubic_strength`, `null_fields`: the planted model (Teacher). `explain`: each field's share of
    the teacher's logit variance (Teacher.field_shares, on 20,000 rows) in the result and in
    `<path>.explain.json`.
    """
    if rows < 1:
        raise ValueError(f"--rows={rows}: must be >= 1")
    if not 0 < scale <= 1:
        raise ValueError(f"--scale={scale}: must be in (0, 1]")
    card = cardinalities(scale)
    if fs.dirname(path):
        fs.makedirs(fs.dirname(path))
    model = Teacher(seed, strength, teacher, cubic_strength, null_fields)
    rng = np.random.default_rng([seed, 2])
    sample = generate_block(rng, 20_000, card)
    model.calibrate(model.logits(*sample), positive_rate)
    info = {"teacher": teacher, "null_fields": list(null_fields)}
    if explain:
        info["field_shares"] = model.field_shares(*sample)
        fs.write_json(path + ".explain.json", info)
    teacher = model
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
    return {"rows": rows, "positive_rate": positives / rows, "cardinalities": card.tolist(), **info}


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


# The id-like fields (Kaggle's largest: C3, C4, C10, C12, C16, C21, C24, C26), which gain values daily.
ID_FIELDS = (2, 3, 9, 11, 15, 20, 23, 25)


def day_paths(path: str, days: int) -> list[str]:
    """The files write_days writes for `path`: <stem>_000<ext>, <stem>_001<ext>, ... (sorted by day)."""
    stem, dot, ext = path.rpartition(".") if "." in fs.basename(path) else (path, "", "")
    return [f"{stem}_{d:03d}{dot}{ext}" for d in range(days)]


def write_days(path: str, days: int, rows: int, seed: int = 0, scale: float = 0.001, positive_rate: float = 0.25,
               new_share: float = 0.5, recency: float = 0.6, drift: float = 0.3, strength: float = 0.6,
               data_seed: int | None = None, teacher: str = "fm", null_fields=()) -> list[dict]:
    """Day-by-day logs from one planted model, one file a day (`day_paths`), each with its true
    probabilities in <file>.proba, as a production click log arrives.

    Every day the id-like fields (ID_FIELDS) gain values: a row's value there is, with probability
    `new_share`, one born on day d - k, k drawn with P(k) ~ recency^k (k <= d): most of those
    values are a day or two old, and those born today are new to every model. A day's new values
    number a fifth of the field's cardinality (at least 10), drawn Zipf-like among themselves;
    the teacher gives each its own parameters (as any value: by its rank). The click rate drifts:
    the teacher's bias moves by drift * sin(2 pi d / 7) logits around the one calibrated for
    `positive_rate` (a weekly cycle).
    """
    if days < 1:
        raise ValueError(f"--days={days}: must be >= 1")
    if rows < 1:
        raise ValueError(f"--rows={rows}: must be >= 1")
    if not 0 <= new_share < 1 or not 0 < recency < 1:
        raise ValueError("new_share must be in [0, 1) and recency in (0, 1)")
    card = cardinalities(scale)
    model = Teacher(seed, strength, teacher, null_fields=null_fields)
    model.calibrate(model.logits(*generate_block(np.random.default_rng([seed, 2]), 20_000, card)), positive_rate)
    base_bias = model.bias
    pool = np.maximum(card // 5, 10)
    if fs.dirname(path):
        fs.makedirs(fs.dirname(path))
    out = []
    for d, day_path in enumerate(day_paths(path, days)):
        rng = np.random.default_rng([seed if data_seed is None else data_seed, 5, d])
        ints, int_missing, ranks, cat_missing = generate_block(rng, rows, card)
        for j in ID_FIELDS:
            young = rng.random(rows) < new_share
            k = np.minimum(rng.geometric(1 - recency, rows) - 1, d)  # P(k) ~ recency^k, k = 0..d
            born = d - k
            r = _sample(rng, rows, pool[j:j + 1])[:, 0]
            ranks[:, j] = np.where(young, card[j] + born * pool[j] + r, ranks[:, j])
        model.bias = base_bias + drift * np.sin(2 * np.pi * d / 7)
        p = 1 / (1 + np.exp(-model.logits(ints, int_missing, ranks, cat_missing)))
        labels = (rng.random(rows) < p).astype(np.int64)
        with fs.open(day_path, "w") as data, fs.open(day_path + ".proba", "w") as proba:
            data.write("\n".join(format_lines(labels, ints, int_missing, ranks, cat_missing)) + "\n")
            proba.write("\n".join(f"{x:.6g}" for x in p) + "\n")
        out.append({"path": day_path, "rows": rows, "positive_rate": float(labels.mean()),
                    "new_values_born": int(pool[list(ID_FIELDS)].sum())})
    return out

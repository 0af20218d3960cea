"""From a model's logit to a probability a bidder can use: the negative-downsampling correction
and a calibration map fitted after training, the same in numpy (evaluation) and in TensorFlow
(the serving signature).

Negative downsampling keeps every positive and a fraction r of the negatives, so the model learns
odds r times too high for the full data. The correction q = p / (p + (1 - p) / r) is, in logit
space, z + log(r): a shift applied to every logit before anything else, here and in the export.

A refit intercept (--refit_intercept) is one more shift b, fitted after training on the training
split so that the mean probability there equals its click rate: the bias term at its optimum for
the trained weights. A constant learning rate leaves the snapshot taken at an epoch's end off that
optimum (under Adam, DeepFM's mean prediction moves by several percent from one epoch to the
next, on the training rows as on held-out ones); the refit removes that drift and nothing else
(every order, hence the AUC, is kept). It uses no validation row.

Calibration maps the (corrected) logit z to a probability:
- platt:    sigma(a * z + b), a and b fitted by maximum likelihood (Newton's method);
- isotonic: a monotone correction of the model's own log-odds, z + d(z). Pool adjacent violators
  fits the click rate as a non-decreasing function of z; its blocks are joined into about 20
  (each at least rows / 20 and sqrt(rows) rows), and each block's offset d_b, the log-odds of its
  click rate less those of its mean predicted probability, is shrunk toward 0 by empirical Bayes:
  by tau^2 / (tau^2 + s_b^2), s_b^2 the offset's sampling variance and tau^2 the spread of the
  offsets beyond what sampling explains (with a margin of 1.5). A model that is already
  calibrated keeps its probabilities (tau^2 = 0), where a step function fitted to the rows raised
  the held-out error; one that is off is corrected where the rows show it. d is interpolated
  linearly between the blocks' centres (mean z) and held at the end blocks' offsets beyond them,
  and the corrected logits at the centres never decrease, so the map keeps every order but where
  two centres' corrected logits tie. It needs ISOTONIC_MIN_ROWS rows: on fewer the offsets are
  mostly noise (platt, two parameters, is the choice there).
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from ctr_tf import fs

from ctr_tf.config import CalibrationMethod as Method

CALIBRATION_FILE = "calibration.json"
ISOTONIC_MIN_ROWS = 10_000
ISOTONIC_BLOCKS = 20
_EPS = 1e-6  # a fitted probability is kept inside [eps, 1 - eps]


def downsampling_shift(rate: float) -> float:
    """The logit shift that undoes keeping a fraction `rate` of the negatives: log(rate)."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"negative downsampling rate {rate} is not in (0, 1]")
    return math.log(rate)


INTERCEPT_FILE = "intercept.json"


def fit_intercept(logit_chunks, positives: float, shift: float = 0.0, iterations: int = 100) -> float:
    """The logit offset b with sum(sigmoid(z + shift + b)) = positives over every logit z of
    `logit_chunks` (arrays, or one array): the output bias at its optimum for the given logits, where
    logistic loss has zero gradient in the bias. Newton's method safeguarded by bisection (the sum
    is increasing in b), in float64 a chunk at a time, so a training split's logits are held once,
    as they came (float32). Both classes must be present; b stays within +-30."""
    chunks = [logit_chunks] if isinstance(logit_chunks, np.ndarray) else list(logit_chunks)
    rows = sum(c.size for c in chunks)
    if rows == 0 or positives <= 0 or positives >= rows:
        raise ValueError(f"an intercept needs rows of both classes; got {positives:.0f} clicks in {rows} rows")

    def sums(b):
        total = slope = 0.0
        for c in chunks:
            p = _sigmoid(c.astype(np.float64) + (shift + b))
            total += p.sum()
            slope += (p * (1 - p)).sum()
        return total, slope
    lo, hi, b = -30.0, 30.0, 0.0
    for _ in range(iterations):
        total, slope = sums(b)
        gap = total - positives
        if gap > 0:
            hi = b
        else:
            lo = b
        step = b - gap / slope if slope > 0 else (lo + hi) / 2
        nxt = step if lo < step < hi else (lo + hi) / 2
        if abs(nxt - b) < 1e-12:
            return float(nxt)
        b = nxt
    return float(b)


@dataclasses.dataclass(frozen=True)
class Intercept:
    """--refit_intercept: the offset fitted on the training split for one epoch's weights."""
    offset: float
    fitted_on: dict  # split, epoch, rows, negative_downsampling, ctr_ratio_before

    @classmethod
    def fit(cls, batches, shift: float, fitted_on: dict) -> "Intercept":
        """Fitted over (labels, logits) batches (the logits unshifted, float32, kept as they come:
        4 bytes a row, no float64 copy of labels and logits); ValueError without labels or with
        one class only."""
        chunks, positives, predicted = [], 0.0, 0.0
        for y, z in batches:
            if np.isnan(y).any():
                raise ValueError("the split has no labels")
            chunks.append(z)
            positives += float(y.sum())
            predicted += float(_sigmoid(z.astype(np.float64) + shift).sum())
        offset = fit_intercept(chunks, positives, shift=shift)
        return cls(offset, {**fitted_on, "rows": sum(c.size for c in chunks), "ctr_ratio_before": predicted / positives})

    def save(self, model_dir: str) -> str:
        return _save_json(os.path.join(model_dir, INTERCEPT_FILE), dataclasses.asdict(self))

    @classmethod
    def load(cls, model_dir: str) -> "Intercept | None":
        d = _load_json(os.path.join(model_dir, INTERCEPT_FILE))
        return None if d is None else cls(float(d["offset"]), dict(d["fitted_on"]))


def fitted_for(stored, **conditions) -> bool:
    """Whether a stored fit (Intercept or Calibration) was made under these conditions of its
    `fitted_on` (epoch, negative_downsampling, logit_shift, ...); floats compare to 1e-12."""
    if stored is None:
        return False
    for key, want in conditions.items():
        got = stored.fitted_on.get(key)
        same = (got is not None and math.isclose(got, want, abs_tol=1e-12)) if isinstance(want, float) else got == want
        if not same:
            return False
    return True


def _save_json(path: str, d: dict) -> str:
    """Written whole or not at all (fs.publish_file)."""
    return fs.write_json(path, d)


def _load_json(path: str) -> dict | None:
    return fs.read_json(path) if fs.exists(path) else None


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A fitted map from a corrected logit to a probability (method none: the sigmoid)."""
    method: Method = Method.NONE
    a: float = 1.0
    b: float = 0.0
    knots: tuple = ()    # isotonic: block centres in logit space, increasing
    offsets: tuple = ()  # isotonic: the (shrunk) log-odds correction at each centre
    fitted_on: dict = dataclasses.field(default_factory=dict)  # split, epoch, rows

    # -- fitting
    @classmethod
    def fit(cls, method: Method, labels, logits, fitted_on: dict | None = None) -> "Calibration":
        y = np.asarray(labels, np.float64).reshape(-1)
        z = np.asarray(logits, np.float64).reshape(-1)
        if y.size == 0:
            raise ValueError("calibration needs labelled rows to fit on; the split is empty")
        if np.isnan(y).any():
            raise ValueError("calibration needs labelled rows; the split has no labels")
        info = dict(fitted_on or {}, rows=int(y.size))
        method = Method(method)
        if method == Method.NONE:
            return cls(fitted_on=info)
        if method == Method.PLATT:
            a, b = _fit_platt(y, z)
            return cls(Method.PLATT, a=a, b=b, fitted_on=info)
        if y.size < ISOTONIC_MIN_ROWS:
            raise ValueError(f"isotonic calibration needs at least {ISOTONIC_MIN_ROWS:,} rows to fit on, and the split "
                             f"has {y.size:,}: on fewer its block offsets are mostly noise; use platt (two parameters) "
                             "or more validation rows")
        knots, offsets = _fit_isotonic(y, z)
        return cls(Method.ISOTONIC, knots=tuple(knots), offsets=tuple(offsets), fitted_on=info)

    # -- applying
    def probability(self, logits) -> np.ndarray:
        """numpy: probabilities of (corrected) logits."""
        z = np.asarray(logits, np.float64)
        if self.method == Method.PLATT:
            return _sigmoid(self.a * z + self.b)
        if self.method == Method.ISOTONIC:
            return _sigmoid(z + np.interp(z, self.knots, self.offsets))
        return _sigmoid(z)

    def tf_probability(self, logits):
        """TensorFlow: the same map inside a graph (the serving signature); logits [B, 1] float32."""
        import tensorflow as tf
        if self.method == Method.PLATT:
            return tf.sigmoid(tf.constant(self.a, tf.float32) * logits + tf.constant(self.b, tf.float32))
        if self.method == Method.ISOTONIC:
            return tf.sigmoid(logits + _tf_interp(logits, self.knots, self.offsets))
        return tf.sigmoid(logits)

    # -- files
    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["method"] = self.method.value
        d["knots"], d["offsets"] = list(self.knots), list(self.offsets)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Calibration":
        if d["method"] == Method.ISOTONIC.value and "offsets" not in d:
            raise ValueError("an isotonic map of an earlier version (block rates, not log-odds offsets)")
        return cls(Method(d["method"]), float(d["a"]), float(d["b"]), tuple(d["knots"]), tuple(d.get("offsets", ())),
                   dict(d.get("fitted_on") or {}))

    def save(self, model_dir: str) -> str:
        return _save_json(os.path.join(model_dir, CALIBRATION_FILE), self.to_json())

    @classmethod
    def load(cls, model_dir: str) -> "Calibration | None":
        d = _load_json(os.path.join(model_dir, CALIBRATION_FILE))
        try:
            return None if d is None else cls.from_json(d)
        except ValueError:  # a map this version does not apply: fitted anew
            return None

    def describe(self) -> str:
        if self.method == Method.PLATT:
            return f"platt: sigmoid({self.a:.4f} * z {self.b:+.4f})"
        if self.method == Method.ISOTONIC:
            return (f"isotonic: {len(self.knots)} blocks, log-odds offsets {min(self.offsets):+.4f}.."
                    f"{max(self.offsets):+.4f}" if self.knots else "isotonic: empty")
        return "none"


def _fit_platt(y: np.ndarray, z: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Maximum-likelihood a, b of sigmoid(a z + b) by Newton's method (a 2x2 system), with a tiny
    ridge so that a split of one class or constant logits still gives finite numbers."""
    x = np.stack([z, np.ones_like(z)], axis=1)
    w = np.array([1.0, 0.0])
    ridge = 1e-9 * y.size
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1])


def _fit_isotonic(y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The isotonic map's block centres (mean logit, increasing) and shrunk log-odds offsets (see
    the module's docstring)."""
    order = np.argsort(z, kind="mergesort")
    zs, ys = z[order], y[order]
    uniq, start = np.unique(zs, return_index=True)
    counts = np.diff(np.append(start, zs.size)).astype(np.float64)
    sums = np.stack([counts, np.add.reduceat(ys, start), uniq * counts, np.add.reduceat(_sigmoid(zs), start)], 1)
    # Pool adjacent violators over runs of equal logit: (rows, clicks, sum z, sum p) per block,
    # pooled while a block's rate is not above the one before it.
    blocks = []
    for row in sums:
        blocks.append(row.copy())
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0]:
            last = blocks.pop()
            blocks[-1] += last
    # Join neighbouring blocks into ~ISOTONIC_BLOCKS blocks: a joined rate lies between its parts'.
    min_rows = max(math.sqrt(y.size), y.size / ISOTONIC_BLOCKS)
    joined, acc = [], np.zeros(4)
    for b in blocks:
        acc = acc + b
        if acc[0] >= min_rows:
            joined.append(acc)
            acc = np.zeros(4)
    if acc[0]:
        if joined:
            joined[-1] = joined[-1] + acc
        else:
            joined = [acc]
    n, clicks, sum_z, sum_p = np.array(joined).T
    rate = np.clip(clicks / n, 0.5 / n, 1 - 0.5 / n)
    predicted = np.clip(sum_p / n, _EPS, 1 - _EPS)
    offset = np.log(rate / (1 - rate)) - np.log(predicted / (1 - predicted))
    noise = 1.0 / (n * rate * (1 - rate))  # each offset's sampling variance
    weight = n / n.sum()
    spread = max(0.0, float(np.sum(weight * offset ** 2) - 1.5 * np.sum(weight * noise)))
    offset = offset * (spread / (spread + noise))
    centres = sum_z / n
    corrected = np.maximum.accumulate(centres + offset)  # the map never decreases
    return centres, corrected - centres


def _tf_interp(logits, knots, values):
    """Linear interpolation of `values` over increasing `knots`, held at the end values beyond."""
    import tensorflow as tf
    if len(knots) == 1:  # one block: one value for every row
        return tf.fill(tf.shape(logits), tf.constant(values[0], tf.float32))
    xs = tf.constant(np.asarray(knots, np.float32))
    ys = tf.constant(np.asarray(values, np.float32))
    z = tf.clip_by_value(logits, xs[0], xs[-1])
    flat = tf.reshape(z, [-1])
    i = tf.clip_by_value(tf.searchsorted(xs, flat, side="right") - 1, 0, len(knots) - 2)
    x0, x1 = tf.gather(xs, i), tf.gather(xs, i + 1)
    y0, y1 = tf.gather(ys, i), tf.gather(ys, i + 1)
    t = tf.math.divide_no_nan(flat - x0, x1 - x0)  # two centres equal in float32: take the first
    return tf.reshape(y0 + t * (y1 - y0), tf.shape(logits))

"""The promotion gate: whether a span's candidate may replace the served model.

The candidate is pushed when, on this span's holdout, its AUC is no more than `max_auc_drop`
below the served model's and its predicted/actual CTR lies in `ctr_ratio`; and, on the holdout
the served model was itself pushed on (the reference), its AUC is no more than
`max_reference_drop` below the served model's there (a span of broken labels can look fine on its
own rows). A NaN score refuses; the first span only needs an AUC above `first_min_auc`."""
from __future__ import annotations

import dataclasses
import math

from ctr_tf import config as cfg_lib


@dataclasses.dataclass(frozen=True)
class Gate:
    max_auc_drop: float = 0.001        # on this span's holdout, against the served model
    max_reference_drop: float = 0.01   # on the holdout the served model was pushed on
    ctr_ratio: tuple[float, float] = (0.9, 1.1)
    first_min_auc: float = 0.55        # the first span: no served model to beat

    def __post_init__(self):
        lo, hi = self.ctr_ratio
        if not (0 < lo <= 1 <= hi):
            raise cfg_lib.ConfigError(f"--gate_ctr_ratio={lo},{hi}: expected LOW,HIGH with 0 < LOW <= 1 <= HIGH")
        for name in ("max_auc_drop", "max_reference_drop"):
            if getattr(self, name) < 0:
                raise cfg_lib.ConfigError(f"--gate_{name}={getattr(self, name)}: must be >= 0")

    def decide(self, candidate: dict, served: dict | None, cand_ref: dict | None, served_ref: dict | None):
        """(push?, reason) from the candidate's and the served model's metrics."""
        values = [candidate.get(k) for k in ("auc", "logloss", "ctr_ratio")]
        for m in (served, cand_ref, served_ref):
            values += [m.get("auc")] if m else []
        if any(v is None or not math.isfinite(v) for v in values):
            return False, "a score is NaN"
        if served is None:
            if candidate["auc"] <= self.first_min_auc:
                return False, f"first span: holdout AUC {candidate['auc']:.4f} <= {self.first_min_auc}"
            return True, f"first span: holdout AUC {candidate['auc']:.4f} > {self.first_min_auc}"
        lo, hi = self.ctr_ratio
        if candidate["auc"] < served["auc"] - self.max_auc_drop:
            return False, (f"holdout AUC {candidate['auc']:.4f} < served {served['auc']:.4f} - "
                           f"{self.max_auc_drop:g}")
        if cand_ref is not None and cand_ref["auc"] < served_ref["auc"] - self.max_reference_drop:
            return False, (f"reference holdout AUC {cand_ref['auc']:.4f} < served {served_ref['auc']:.4f} - "
                           f"{self.max_reference_drop:g}")
        if not lo <= candidate["ctr_ratio"] <= hi:
            return False, f"holdout CTR ratio {candidate['ctr_ratio']:.4f} outside [{lo:g}, {hi:g}]"
        return True, (f"holdout AUC {candidate['auc']:.4f} vs served {served['auc']:.4f}"
                      + (f", reference {cand_ref['auc']:.4f} vs {served_ref['auc']:.4f}" if cand_ref else ""))

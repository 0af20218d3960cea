"""Permutation importance per field: how much the model's AUC drops, and its logloss rises, when
one field's values are shuffled across the rows (PaddleRec's slot shuffle; Breiman's permutation
importance), each field `repeats` times with seeded shuffles, against the unshuffled score.

A field is a raw input (I1, C3, ...): on converted rows, every feature computed from it (a dense
value and its missing indicator, say) moves with it, so the answer on a model_dir's split and on
its export fed the raw rows is the same when the rows are; a group is several fields shuffled by
one permutation together (their joint values kept).
"""
from __future__ import annotations

import dataclasses
import time
import zlib

import numpy as np

from ctr_tf import metrics


class ImportanceError(ValueError):
    """A field, group or split that cannot be measured; the message names it."""


@dataclasses.dataclass(frozen=True)
class Field:
    """A named unit to shuffle: the (block, column) pairs of the data it covers."""
    name: str
    columns: tuple[tuple[str, int | None], ...]  # (block key, column in it or None for a whole 1-d block)
    members: tuple[str, ...] = ()  # a group's fields


def parse_groups(spec: str) -> dict[str, list[str]]:
    """--groups='name=F1,F2;other=F3,F4' -> {name: [fields]}."""
    out = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(";"))):
        name, _, members = part.partition("=")
        fields = [m.strip() for m in members.split(",") if m.strip()]
        if not name.strip() or not fields:
            raise ImportanceError(f"--groups={spec!r}: {part!r} is not NAME=FIELD,FIELD")
        out[name.strip()] = fields
    return out


def select(fields: dict[str, Field], only: list[str], groups: dict[str, list[str]]) -> list[Field]:
    """The fields to measure (all, or `only`) and the groups, each checked against the data's."""
    unknown = sorted({f for f in list(only) + [m for ms in groups.values() for m in ms]} - set(fields))
    if unknown:
        raise ImportanceError(f"unknown field(s) {', '.join(unknown)}; the data's fields: {', '.join(fields)}")
    clash = sorted(set(groups) & set(fields))
    if clash:
        raise ImportanceError(f"group name(s) {', '.join(clash)} are field names too")
    chosen = [fields[n] for n in (only or fields)]
    for name, members in groups.items():
        chosen.append(Field(name, tuple(c for m in members for c in fields[m].columns), tuple(members)))
    return chosen


def permuted(data: dict, field: Field, order: np.ndarray) -> dict:
    """`data` with the field's columns taken in `order` (the other columns as they are)."""
    out = dict(data)
    for key in {k for k, _ in field.columns}:
        out[key] = np.array(data[key], copy=True)
    for key, col in field.columns:
        if col is None:
            out[key] = data[key][order]
        else:
            out[key][:, col] = data[key][order, col]
    return out


def measure(score, data: dict, labels: np.ndarray, fields: list[Field], repeats: int = 3, seed: int = 0,
            progress=None) -> dict:
    """score(data) -> probabilities, for the unshuffled data and for each field and repeat.
    Returns {"base": metrics, "fields": [{name, members, auc_drop_mean, auc_drop_std,
    logloss_rise_mean, logloss_rise_std, auc_drops, logloss_rises}], "seconds", "passes"}."""
    if repeats < 1:
        raise ImportanceError(f"--repeats={repeats}: must be >= 1")
    labels = np.asarray(labels, np.float64).reshape(-1)
    if labels.size == 0 or np.isnan(labels).any():
        raise ImportanceError("permutation importance needs labelled rows")
    t0 = time.perf_counter()
    base = metrics.summary(labels, score(data))
    rows = []
    for i, field in enumerate(fields):
        drops, rises = [], []
        for r in range(repeats):
            # seeded by the field's name: the same shuffle whatever order the fields come in
            order = np.random.default_rng([seed, zlib.crc32(field.name.encode()), r]).permutation(labels.size)
            m = metrics.summary(labels, score(permuted(data, field, order)))
            drops.append(base["auc"] - m["auc"])
            rises.append(m["logloss"] - base["logloss"])
        rows.append({"name": field.name, "members": list(field.members),
                     "auc_drop_mean": float(np.mean(drops)), "auc_drop_std": float(np.std(drops)),
                     "logloss_rise_mean": float(np.mean(rises)), "logloss_rise_std": float(np.std(rises)),
                     "auc_drops": drops, "logloss_rises": rises})
        if progress:
            progress(i + 1, len(fields), rows[-1])
    rows.sort(key=lambda r: -r["auc_drop_mean"])
    return {"base": base, "fields": rows, "repeats": repeats, "seed": seed,
            "passes": 1 + len(fields) * repeats, "seconds": time.perf_counter() - t0}


def table(result: dict, title: str) -> str:
    """The Markdown table (most important first)."""
    b = result["base"]
    lines = [f"# Permutation importance: {title}", "",
             f"Unshuffled: AUC {b['auc']:.5f}, logloss {b['logloss']:.5f} on {b['rows']:,} rows; each field shuffled "
             f"{result['repeats']} times ({result['passes']} scoring passes, {result['seconds']:.1f} s).", "",
             "| rank | field | AUC drop | ± | logloss rise | ± |", "|---:|---|---:|---:|---:|---:|"]
    for i, r in enumerate(result["fields"], 1):
        name = r["name"] + (f" ({', '.join(r['members'])})" if r["members"] else "")
        lines.append(f"| {i} | {name} | {r['auc_drop_mean']:.5f} | {r['auc_drop_std']:.5f} | "
                     f"{r['logloss_rise_mean']:.5f} | {r['logloss_rise_std']:.5f} |")
    return "\n".join(lines)


def chart(result: dict, path: str, title: str) -> str:
    """A PNG bar chart of the AUC drop per field with its spread, most important first."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ctr_tf import fs
    rows = result["fields"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * len(rows) + 2), 4.5))
    ax.bar([r["name"] for r in rows], [r["auc_drop_mean"] for r in rows], yerr=[r["auc_drop_std"] for r in rows],
           color="tab:blue", capsize=2)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("AUC drop when shuffled")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    with fs.open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path

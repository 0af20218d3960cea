"""The history of continuous training: one row per span, remade from the spans' result.json files
(so a killed run, resumed, neither loses nor doubles a row): history.tsv, history.json,
TensorBoard scalars per span, and a PNG of the progressive AUC per span."""
from __future__ import annotations

import math

import numpy as np

from ctr_tf import fs, metrics

COLUMNS = ("span", "rows", "admitted_ids", "vocabulary_rows", "progressive_auc", "progressive_logloss",
           "progressive_ne", "progressive_ece", "progressive_ctr_ratio", "bayes_auc", "candidate_auc", "served_auc",
           "reference_candidate_auc", "reference_served_auc", "decision", "version", "reason", "train_seconds",
           "overhead_seconds", "convert_seconds", "progressive_seconds", "gate_seconds", "push_seconds")


def row_of(result: dict) -> dict:
    """A span's result.json as one history row (COLUMNS)."""
    p = result.get("progressive") or {}
    gate = result.get("gate") or {}
    ref = gate.get("reference") or {}
    t = result.get("timings") or {}
    overhead = sum(t.get(f"{k}_seconds", 0.0) for k in ("convert", "progressive", "gate", "push"))
    nan = math.nan
    return {
        "span": result["span"], "rows": result.get("rows", 0), "admitted_ids": result.get("admitted_ids", 0),
        "vocabulary_rows": result.get("vocabulary_rows", 0),
        **{f"progressive_{k}": p.get(k, nan) for k in ("auc", "logloss", "ne", "ece", "ctr_ratio")},
        "bayes_auc": result.get("bayes_auc", nan),
        "candidate_auc": (gate.get("candidate") or {}).get("auc", nan),
        "served_auc": (gate.get("served") or {}).get("auc", nan),
        "reference_candidate_auc": (ref.get("candidate") or {}).get("auc", nan),
        "reference_served_auc": (ref.get("served") or {}).get("auc", nan),
        "decision": result["decision"], "version": result.get("version") or "", "reason": result.get("reason", ""),
        "train_seconds": t.get("train_seconds", 0.0), "overhead_seconds": overhead,
        **{f"{k}_seconds": t.get(f"{k}_seconds", 0.0) for k in ("convert", "progressive", "gate", "push")}}


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v).replace("\t", " ").replace("\n", " ")


def rebuild(work_dir: str, spans: list[dict], span_dir) -> list[dict]:
    """history.tsv and history.json from every span's result.json, in span order; the TensorBoard
    scalars and the PNG too. Returns the rows."""
    rows = []
    for entry in spans:
        path = fs.join(span_dir(entry), "result.json")
        if fs.exists(path):
            rows.append(row_of(fs.read_json(path)))
    lines = ["\t".join(COLUMNS)] + ["\t".join(_cell(r[c]) for c in COLUMNS) for r in rows]
    fs.publish_file(fs.join(work_dir, "history.tsv"), "\n".join(lines) + "\n")
    fs.write_json(fs.join(work_dir, "history.json"), [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                                       for k, v in r.items()} for r in rows], indent=1)
    _scalars(work_dir, rows)
    if rows:
        plot(rows, fs.join(work_dir, "progressive_auc.png"))
    return rows


def _scalars(work_dir: str, rows: list[dict]):
    """TensorBoard scalars, step = the span's place in the history; written anew each time."""
    import tensorflow as tf
    logdir = fs.join(work_dir, "tensorboard")
    fs.rmtree(logdir, ignore_errors=True)
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for step, r in enumerate(rows):
            for key in ("progressive_auc", "progressive_logloss", "progressive_ne", "progressive_ece",
                        "progressive_ctr_ratio", "candidate_auc", "served_auc", "admitted_ids", "vocabulary_rows",
                        "train_seconds", "overhead_seconds"):
                value = r[key]
                if isinstance(value, (int, float)) and not math.isnan(float(value)):
                    tf.summary.scalar(f"span/{key}", float(value), step=step)
            tf.summary.scalar("span/pushed", float(r["decision"] == "pushed"), step=step)
    writer.close()


def plot(rows: list[dict], path: str, series: dict | None = None) -> str:
    """The progressive AUC per span (and the Bayes-optimal AUC on planted data); `series` adds
    other runs' progressive AUC by name (the benchmark's baselines)."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.arange(len(rows))
    lines = {"continuous": [r["progressive_auc"] for r in rows], **(series or {})}
    for name, values in lines.items():
        ax.plot(x[:len(values)], values, marker="o", label=name)
    bayes = [r["bayes_auc"] for r in rows]
    if any(not math.isnan(b) for b in bayes):
        ax.plot(x, bayes, linestyle="--", color="gray", label="Bayes-optimal")
    refused = [i for i, r in enumerate(rows) if r["decision"] != "pushed"]
    for i in refused:
        ax.axvline(i, color="tab:red", alpha=0.2)
    ax.set_xticks(x)
    ax.set_xticklabels([r["span"] for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("span (red: not pushed)" if refused else "span")
    ax.set_ylabel("progressive AUC (scored before training on the span)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    with fs.open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def bayes_auc(span_path: str) -> float:
    """The Bayes-optimal AUC of a planted span (its .proba beside a Criteo TSV file), else NaN."""
    if not fs.isfile(span_path) or not fs.exists(span_path + ".proba"):
        return math.nan
    labels = np.array([float(line.split("\t", 1)[0]) for line in fs.read_text(span_path).splitlines() if line])
    truth = np.array(fs.read_text(span_path + ".proba").split(), np.float64)
    return metrics.exact_auc(labels, truth) if len(labels) == len(truth) else math.nan

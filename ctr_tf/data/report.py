"""What a conversion prints: the progress line while it runs and the summary table at the end."""
from __future__ import annotations

import sys
import time

from ctr_tf import console
from ctr_tf import schema as schema_lib


class Progress:
    def __init__(self, enabled: bool, total_bytes: int):
        self.enabled = enabled
        self.total = max(total_bytes, 1)
        self.tty = console.stderr_is_terminal()
        self.last = 0.0

    def update(self, label: str, rows: int, done_bytes: int, rejected: int, start: float, force=False):
        if not self.enabled:
            return
        now = time.time()
        if not force and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        frac = min(done_bytes / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = rows / max(now - start, 1e-9)
        msg = (f"{label} [{bar:<30}] {frac * 100:5.1f}%  {rows:,} rows  {rate:,.0f} rows/s  "
               f"rejected {rejected:,}")
        sys.stderr.write(("\r" + msg) if self.tty else (msg + "\n"))
        if force and self.tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


def summary_table(schema: schema_lib.Schema) -> str:
    """The end-of-run table: rows, positives, shards (and the Bayes ceiling) per split."""
    lines = [f"{'split':<6} {'rows':>12} {'pos. rate':>10} {'shards':>7} {'bayes AUC':>10} {'bayes logloss':>14} "
             f"{'bayes NE':>9}"]
    for s, e in schema.splits.items():
        b = e.get("bayes_optimal") or {}
        rate = e.get("positive_rate")
        lines.append(f"{s:<6} {e['rows']:>12,} {('%.4f' % rate) if rate is not None else '-':>10} "
                     f"{len(e['files']):>7} {('%.4f' % b['auc']) if b else '-':>10} "
                     f"{('%.4f' % b['logloss']) if b else '-':>14} {('%.4f' % b['ne']) if b.get('ne') else '-':>9}")
    info = schema.info
    lines.append(f"rows read {info['rows_read']:,}  written {info['rows_written']:,}  "
                 f"rejected {info['rejected_rows']:,}" + (f" -> {schema.path(info['rejects_file'])}"
                                                          if info['rejected_rows'] else ""))
    for reason, n in info.get("reject_reasons", {}).items():
        lines.append(f"  {n:>10,}  {reason}")
    cats = schema.categorical_features
    lines.append(f"features: {len(schema.dense_features)} dense, {len(cats)} categorical "
                 f"({sum(schema.vocab_sizes):,} embedding rows); format {info['format']}, "
                 f"{info['categorical_encoding']} encoding, dense {info['dense_transform']}; "
                 f"{info['conversion_seconds']:.1f} s")
    return "\n".join(lines)

"""Thin drivers: text -> TFRecords, synthetic data, model comparison, sweeps, benchmarks."""
import ctr_tf  # noqa: F401  (selects tf-keras before anything imports TensorFlow)

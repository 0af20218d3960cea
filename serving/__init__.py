"""Serving over the TensorFlow Serving APIs: a client, a local TF-Serving-compatible server, benchmarks."""
import ctr_tf  # noqa: F401  (selects tf-keras before anything imports TensorFlow)

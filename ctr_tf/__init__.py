"""ctr_tf: a click-through-rate pipeline for Criteo and Avazu on TensorFlow (tf-keras).

tensorflow-recommenders only imports under legacy Keras 2 (tf-keras), so the package selects it
before anything imports TensorFlow, and refuses to run if TensorFlow was already imported with
Keras 3 active (models built with the wrong Keras fail much later with obscure errors).
"""
import os
import sys

__version__ = "0.1.0"


def _select_legacy_keras():
    already_imported = "tensorflow" in sys.modules
    if not already_imported:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return
    if os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True"):
        raise ImportError(
            "ctr_tf needs tf-keras (legacy Keras 2), but TensorFlow was imported before ctr_tf "
            "with Keras 3 active. Import ctr_tf before tensorflow, or set TF_USE_LEGACY_KERAS=1 "
            "in the environment.")


_select_legacy_keras()

from ctr_tf import console  # noqa: E402  (after the Keras choice, before anything imports TensorFlow)

console.install()

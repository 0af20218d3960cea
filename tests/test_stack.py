"""The Keras flavour the project settles on: tf-keras, so tensorflow-recommenders works."""
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tf_keras_is_active_and_tfrs_layers_work_in_a_functional_model():
    import tensorflow_recommenders as tfrs
    assert tf.keras.__name__.startswith("tf_keras") or "tf_keras" in type(tf.keras.layers.Dense(1)).__module__
    x = tf.keras.Input((6,))
    v = tf.keras.Input((3, 4))
    cross = tfrs.layers.dcn.Cross()(x, x)
    dot = tfrs.layers.feature_interaction.DotInteraction()(tf.unstack(v, axis=1))
    model = tf.keras.Model([x, v], [cross, dot])
    xv = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    vv = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    c, d = model([xv, vv])
    assert c.shape == (2, 6)
    pairs = [np.sum(vv[:, i] * vv[:, j], axis=1) for i in range(3) for j in range(i)]
    np.testing.assert_allclose(d.numpy(), np.stack(pairs, axis=1), rtol=1e-5)


def test_importing_ctr_tf_after_tensorflow_with_keras_3_fails_loudly():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    proc = subprocess.run([sys.executable, "-c", "import tensorflow; import ctr_tf"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "ctr_tf needs tf-keras" in proc.stderr

"""FLEN's field-wise bi-interaction (Chen et al. 2019)."""
import itertools

import numpy as np
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldWiseBiInteraction(tf.keras.layers.Layer):
    """Bi-interactions between and within field groups (user, item, context, ...).

    e [B, F, K] with each feature in one of G groups (`groups`: a group index per feature) -> [B, K]:
      MF (between groups): h_mf = sum_{g<h} r_gh * (s_g * s_h),  s_g = sum_{f in g} e_f,  r [G(G-1)/2]
      FM (within groups):  h_fm = sum_g k_g * sum_{i<j in g} e_i * e_j,  k [G]
      output h_mf + h_fm, as in the paper; `mf_only` drops the FM part (PaddleRec computes it and
      throws it away).
    DiceFactor (`dice_factor` > 0, training only): each pairwise term e_i * e_j is dropped with
    probability dice_factor and the rest scaled by 1/(1 - dice_factor), so the expectation is the
    full interaction; at inference the closed forms above are used.
    """

    def __init__(self, groups, dice_factor=0.0, mf_only=False, **kwargs):
        super().__init__(**kwargs)
        self.groups = [int(g) for g in groups]
        self.dice_factor = float(dice_factor)
        self.mf_only = bool(mf_only)
        self.num_groups = max(self.groups) + 1
        if sorted(set(self.groups)) != list(range(self.num_groups)) or self.num_groups < 2:
            raise ValueError(f"FieldWiseBiInteraction needs at least two groups numbered 0..G-1, got {self.groups}")
        members = np.zeros((len(self.groups), self.num_groups), np.float32)
        members[np.arange(len(self.groups)), self.groups] = 1.0
        self.members = members                                              # [F, G]
        self.group_pairs = list(itertools.combinations(range(self.num_groups), 2))
        pairs = list(itertools.combinations(range(len(self.groups)), 2))
        self.pair_left = np.asarray([i for i, _ in pairs], np.int32)
        self.pair_right = np.asarray([j for _, j in pairs], np.int32)
        # Which weight each feature pair carries: r_gh between groups, k_g within (index G(G-1)/2 + g).
        index = {gp: n for n, gp in enumerate(self.group_pairs)}
        self.pair_weight = np.asarray([
            index[tuple(sorted((self.groups[i], self.groups[j])))] if self.groups[i] != self.groups[j]
            else len(self.group_pairs) + self.groups[i] for i, j in pairs], np.int32)

    def build(self, input_shape):
        if int(input_shape[1]) != len(self.groups):
            raise ValueError(f"FieldWiseBiInteraction has groups for {len(self.groups)} features, got {input_shape[1]}")
        self.mf_weights = self.add_weight(name="mf_weights", shape=(len(self.group_pairs),), initializer="ones")
        self.fm_weights = self.add_weight(name="fm_weights", shape=(self.num_groups,), initializer="ones")
        super().build(input_shape)

    def _pair_weights(self):
        fm = tf.zeros_like(self.fm_weights) if self.mf_only else self.fm_weights
        return tf.cast(tf.concat([self.mf_weights, fm], 0), self.compute_dtype)

    def call(self, e, training=None):
        if training and self.dice_factor > 0:
            return self._explicit_pairs(e)
        s = tf.einsum("bfk,fg->bgk", e, tf.cast(self.members, e.dtype))      # [B, G, K]
        weights = self._pair_weights()
        left = [g for g, _ in self.group_pairs]
        right = [h for _, h in self.group_pairs]
        mf = tf.reduce_sum(tf.gather(s, left, axis=1) * tf.gather(s, right, axis=1)
                           * weights[: len(self.group_pairs)][None, :, None], axis=1)
        within = 0.5 * (tf.square(s) - tf.einsum("bfk,fg->bgk", tf.square(e), tf.cast(self.members, e.dtype)))
        fm = tf.reduce_sum(within * weights[len(self.group_pairs):][None, :, None], axis=1)
        return mf + fm

    def _explicit_pairs(self, e):
        terms = tf.gather(e, self.pair_left, axis=1) * tf.gather(e, self.pair_right, axis=1)   # [B, P, K]
        keep = 1.0 - self.dice_factor
        mask = tf.cast(tf.random.uniform(tf.shape(terms)[:2]) < keep, terms.dtype) / keep
        weights = tf.gather(self._pair_weights(), self.pair_weight)
        return tf.reduce_sum(terms * (mask * weights[None, :])[..., None], axis=1)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "dice_factor": self.dice_factor,
                "mf_only": self.mf_only}

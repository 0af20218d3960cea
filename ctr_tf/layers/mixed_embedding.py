"""Categorical fields of sizes of their own (mixed-dimension embeddings, Ginart et al. 2019) and the
quotient-remainder trick (Shi et al. 2020), over the one FieldEmbedding kind of table."""
import numpy as np
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE, DEFAULT_INIT_STD, FieldEmbedding

QR_COMBINERS = ("product", "sum", "concat")


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class MixedEmbedding(tf.keras.layers.Layer):
    """ids [B, C] -> (vectors [B, C, dim], flat [B, sum_c w_c]).

    Field c's vector has its own width w_c = dims[c]. A plain field reads one row of a table shared
    by the fields of its width (one FieldEmbedding a width). A field with a collision factor
    m_c = qr[c] > 0 reads two: Q[id // m_c] of a table of ceil(V_c / m_c) rows and R[id % m_c] of
    one of m_c rows, combined by `qr_combiner`: product Q * R (the paper's default), sum Q + R, or
    concat [Q, R] (each w_c / 2 wide); every id keeps a vector of its own in about V / m + m rows.
    For the product, R starts at one, so Q * R starts as Q[id // m], a row shared by m ids as in
    hashing to V / m rows, and R learns what tells those ids apart. Drawn like Q, both factors near
    init_std, the product would start at init_std^2 and, under Adam's steps of about the learning
    rate a factor, move init_std times as fast as a plain row does.
    `vectors` is every field's vector projected to `dim` by a w_c x dim matrix of its own where
    w_c != dim (models whose interactions need one size); `flat` concatenates them as they are
    (models that concatenate). The work is per group of fields of one width and kind (one gather,
    one lookup, one batched projection), not per field.
    """

    def __init__(self, vocab_sizes, dims, dim, qr=None, qr_combiner="product", l2=0.0, init_std=DEFAULT_INIT_STD,
                 table_l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.dims = [int(d) for d in dims]
        self.dim = int(dim)
        self.qr = [int(m) for m in (qr or [0] * len(self.vocab_sizes))]
        self.qr_combiner = qr_combiner
        self.l2, self.init_std, self.table_l2 = float(l2), float(init_std), float(table_l2)
        if qr_combiner not in QR_COMBINERS:
            raise ValueError(f"qr_combiner must be one of {QR_COMBINERS}, got {qr_combiner!r}")
        if not len(self.vocab_sizes) == len(self.dims) == len(self.qr):
            raise ValueError("vocab_sizes, dims and qr need one entry a field")
        table = dict(l2=self.l2, init_std=self.init_std, table_l2=self.table_l2)
        self.groups = []  # (kind, width, fields, tables)
        for width in sorted(set(self.dims)):
            plain = [c for c, (w, m) in enumerate(zip(self.dims, self.qr)) if w == width and not m]
            if plain:
                self.groups.append(("plain", width, plain, [FieldEmbedding(
                    [self.vocab_sizes[c] for c in plain], width, name=f"table_d{width}", **table)]))
            split = [c for c, (w, m) in enumerate(zip(self.dims, self.qr)) if w == width and m]
            if split:
                part = width // 2 if qr_combiner == "concat" else width
                if qr_combiner == "concat" and width % 2:
                    raise ValueError(f"QR with concat needs even widths; fields of width {width}")
                quotient = [-(-self.vocab_sizes[c] // self.qr[c]) for c in split]
                self.groups.append(("qr", width, split, [
                    FieldEmbedding(quotient, part, name=f"quotient_d{width}", **table),
                    FieldEmbedding([self.qr[c] for c in split], part, name=f"remainder_d{width}",
                                   **{**table, **({"initializer": "ones"} if qr_combiner == "product" else {})})]))

    def build(self, input_shape):
        # One projection tensor a group of fields of one width other than `dim`: [fields, w, dim].
        self.projections = {f"{kind}_d{width}": self.add_weight(
            name=f"projection_{kind}_d{width}", shape=(len(fields), width, self.dim), initializer="glorot_uniform")
            for kind, width, fields, _ in self.groups if width != self.dim}
        order = [c for _, _, fields, _ in self.groups for c in fields]
        self._field_order = [order.index(c) for c in range(len(order))]  # group order -> schema order
        starts, at = {}, 0
        for _, width, fields, _ in self.groups:
            for c in fields:
                starts[c] = (at, width)
                at += width
        self._flat_order = [i for c in range(len(order)) for i in range(starts[c][0], starts[c][0] + starts[c][1])]
        super().build(input_shape)

    def call(self, ids):
        vectors, flats = [], []
        for kind, width, fields, tables in self.groups:  # a few groups: the ops do not grow with the fields
            sub = tf.gather(ids, fields, axis=1)
            if kind == "plain":
                vec = tables[0](sub)
            else:
                m = tf.constant(np.array([self.qr[c] for c in fields], np.int32))[None, :]
                sub = tf.cast(sub, tf.int32)
                q, r = tables[0](sub // m), tables[1](sub % m)
                vec = q * r if self.qr_combiner == "product" else q + r if self.qr_combiner == "sum" else \
                    tf.concat([q, r], axis=-1)
            flats.append(tf.reshape(vec, [-1, len(fields) * width]))
            key = f"{kind}_d{width}"
            if key in self.projections:
                vec = tf.einsum("bkw,kwd->bkd", vec, tf.cast(self.projections[key], vec.dtype))
            vectors.append(vec)
        vectors = vectors[0] if len(vectors) == 1 else tf.concat(vectors, axis=1)
        flat = flats[0] if len(flats) == 1 else tf.concat(flats, axis=1)
        return tf.gather(vectors, self._field_order, axis=1), tf.gather(flat, self._flat_order, axis=1)

    def get_config(self):
        return {**super().get_config(), "vocab_sizes": self.vocab_sizes, "dims": self.dims, "dim": self.dim,
                "qr": self.qr, "qr_combiner": self.qr_combiner, "l2": self.l2, "init_std": self.init_std,
                "table_l2": self.table_l2}


def rule_dims(rule: str, vocab_sizes: list[int]) -> list[int]:
    """--embedding_dim_rule=log:K:MAX -> each field's width ceil(K * log2(rows)), in [1, MAX]."""
    kind, _, rest = rule.partition(":")
    try:
        k, cap = (float(x) for x in rest.split(":"))
    except ValueError:
        raise ValueError(f"--embedding_dim_rule={rule!r}: expected log:K:MAX, e.g. log:1.5:16") from None
    if kind != "log" or k <= 0 or cap < 1:
        raise ValueError(f"--embedding_dim_rule={rule!r}: expected log:K:MAX with K > 0 and MAX >= 1")
    return [int(min(cap, max(1, np.ceil(k * np.log2(max(v, 2)))))) for v in vocab_sizes]

"""Pieces every model shares: inputs from the schema, the one embedding path, the linear term,
the MLP and the output head.

Field order, used by every view: the categorical features in schema order, then the dense
features in schema order.
"""
from __future__ import annotations

import tensorflow as tf

from ctr_tf import layers
from ctr_tf.config import ConfigError


def inputs_from_schema(schema) -> dict:
    return {"dense": tf.keras.Input(shape=(len(schema.dense_features),), dtype=tf.float32, name="dense"),
            "cat": tf.keras.Input(shape=(len(schema.categorical_features),), dtype=tf.int32, name="cat")}


def field_names(schema) -> list[str]:
    """The names of the fields in the order of every embedding view."""
    return [f.name for f in schema.categorical_features] + [f.name for f in schema.dense_features]


def table_layout(schema, cfg, dim: int | None = None) -> tuple[list[int], list[int]]:
    """Each categorical field's embedding size and collision factor (0: no QR) under the
    config's --embedding_dims / --embedding_dim_rule and --qr_fields / --qr_min_rows /
    --qr_collisions; a bad setting is refused naming its flag and value."""
    from ctr_tf.layers.mixed_embedding import rule_dims
    cats = schema.categorical_features
    names = [f.name for f in cats]
    width = int(dim or cfg.embedding_dim)
    dims = [width] * len(cats)
    if cfg.embedding_dims or cfg.embedding_dim_rule:
        if dim is not None and dim != cfg.embedding_dim:
            raise ConfigError(f"--embedding_dims/--embedding_dim_rule: --model={cfg.name}'s tables are "
                              f"{dim} wide for every field (field-aware vectors or per-id weights): it takes no "
                              "per-field sizes")
        if cfg.embedding_dim_rule:
            try:
                dims = rule_dims(cfg.embedding_dim_rule, [f.vocab_size for f in cats])
            except ValueError as e:
                raise ConfigError(str(e)) from None
        for part in filter(None, (p.strip() for p in cfg.embedding_dims.split(","))):
            name, _, value = part.partition("=")
            name = name.strip()
            try:
                size = int(value)
            except ValueError:
                raise ConfigError(f"--embedding_dims={cfg.embedding_dims!r}: {part!r} is not FIELD=N") from None
            if size < 1:
                raise ConfigError(f"--embedding_dims={cfg.embedding_dims!r}: {name}={size} must be >= 1")
            if name == "default":
                if size != cfg.embedding_dim:
                    raise ConfigError(f"--embedding_dims={cfg.embedding_dims!r}: default={size} differs from "
                                      f"--embedding_dim={cfg.embedding_dim} (the default size; set that one)")
                continue
            if name not in names:
                dense = [f.name for f in schema.dense_features]
                why = ("is a dense feature, which has no table" if name in dense
                       else f"is no field of the data; its categorical fields: {', '.join(names)}")
                raise ConfigError(f"--embedding_dims={cfg.embedding_dims!r}: {name} {why}")
            dims[names.index(name)] = size
    qr = [0] * len(cats)
    if cfg.qr_fields or cfg.qr_min_rows:
        chosen = [n.strip() for n in cfg.qr_fields.split(",") if n.strip()]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise ConfigError(f"--qr_fields={cfg.qr_fields!r}: {', '.join(unknown)} is no categorical field of the "
                              f"data; its fields: {', '.join(names)}")
        m = cfg.qr_collisions
        for c, f in enumerate(cats):
            if f.name in chosen or (cfg.qr_min_rows and f.vocab_size >= cfg.qr_min_rows):
                if f.vocab_size <= m:
                    raise ConfigError(f"--qr_fields={cfg.qr_fields!r}: {f.name} has {f.vocab_size} rows, not more "
                                      f"than --qr_collisions={m}: the trick would save nothing")
                if cfg.qr_combiner == "concat" and dims[c] % 2:
                    raise ConfigError(f"--qr_combiner=concat: {f.name}'s size {dims[c]} is odd (Q and R take half each)")
                qr[c] = m
    return dims, qr


class Embeddings:
    """A model's categorical table, built once; the views a builder asks for are made from it.

    `dim` is the width of a field's vector (FFM asks for K * (F - 1)); a view built twice is the
    same tensor, so two views of one model always share one table. With per-field sizes or the
    quotient-remainder trick (table_layout) the fields live in a MixedEmbedding: `categorical()`
    and `fields()` give every field projected to the common size, `flat_and_dense()` the vectors
    as they are.
    """

    def __init__(self, inputs, schema, cfg, dim: int | None = None, name: str = "embedding"):
        self.inputs, self.schema, self.cfg = inputs, schema, cfg
        self.dim = int(dim or cfg.embedding_dim)
        self.name = name
        self._cat = None
        self._flat_cat = None
        self._dense = None
        self._cache = {}
        if schema.categorical_features:
            dims, qr = table_layout(schema, cfg, dim)
            if all(d == self.dim for d in dims) and not any(qr):
                self._cat = layers.FieldEmbedding(schema.vocab_sizes, self.dim, l2=cfg.embedding_l2,
                                                  init_std=cfg.embedding_init_std, table_l2=cfg.embedding_table_l2,
                                                  name=name)(inputs["cat"])
            else:
                from ctr_tf.layers.mixed_embedding import MixedEmbedding
                self._cat, self._flat_cat = MixedEmbedding(
                    schema.vocab_sizes, dims, self.dim, qr, cfg.qr_combiner, l2=cfg.embedding_l2,
                    init_std=cfg.embedding_init_std, table_l2=cfg.embedding_table_l2, name=name)(inputs["cat"])

    def categorical(self) -> tf.Tensor | None:
        """[B, C, dim]: the categorical fields' vectors (None without categorical features)."""
        return self._cat

    def fields(self, dense_as_fields: bool = True) -> tf.Tensor:
        """[B, F, dim]: categorical vectors, then (optionally) dense fields as x_j * v_j."""
        key = ("fields", dense_as_fields)
        if key not in self._cache:
            parts = [self._cat] if self._cat is not None else []
            if dense_as_fields and self.schema.dense_features:
                if self._dense is None:
                    self._dense = layers.DenseFieldEmbedding(self.dim, init_std=self.cfg.embedding_init_std,
                                                             name=f"dense_{self.name}")(self.inputs["dense"])
                parts.append(self._dense)
            if not parts:
                raise ConfigError("the schema has no features to embed")
            self._cache[key] = parts[0] if len(parts) == 1 else tf.keras.layers.Concatenate(
                axis=1, name=f"{self.name}_fields")(parts)
        return self._cache[key]

    def flat_and_dense(self) -> tf.Tensor:
        """[B, C * dim + D]: flattened categorical vectors followed by the raw dense values."""
        if "flat" not in self._cache:
            parts = []
            if self._flat_cat is not None:
                parts.append(self._flat_cat)
            elif self._cat is not None:
                parts.append(tf.keras.layers.Flatten(name=f"{self.name}_flat")(self._cat))
            if self.schema.dense_features:
                parts.append(self.inputs["dense"])
            self._cache["flat"] = parts[0] if len(parts) == 1 else tf.keras.layers.Concatenate(
                axis=1, name=f"{self.name}_flat_and_dense")(parts)
        return self._cache["flat"]

    def group_indices(self, model_name: str) -> list[int]:
        """The group number of every categorical field (schema `group`, numbered by first use),
        for models that interact field groups (FLEN). A schema without groups is an error that
        says what the model needs."""
        cats = self.schema.categorical_features
        missing = [f.name for f in cats if not f.group]
        if not cats or missing:
            raise ConfigError(
                f"--model={model_name} needs field groups (user / item / context) in schema.json, but "
                f"{len(missing) if cats else 'all'} categorical feature(s) have none"
                f"{' (' + ', '.join(missing[:5]) + (', ...' if len(missing) > 5 else '') + ')' if missing else ''}; "
                "convert Avazu data (avazu_csv or avazu_slot), whose features the converter assigns to groups")
        order = list(dict.fromkeys(f.group for f in cats))
        if len(order) < 2:
            raise ConfigError(f"--model={model_name} needs at least two field groups; the schema has only {order}")
        return [order.index(f.group) for f in cats]


def linear_term(inputs, schema, cfg, name: str = "linear", use_bias: bool = True) -> tf.Tensor:
    """b + sum_c w[id_c] + u . x, [B, 1] (without b: the models whose reference has the model's one
    bias elsewhere)."""
    return layers.LinearTerm(schema.vocab_sizes, l2=cfg.embedding_l2, use_bias=use_bias, name=name)(inputs)


def mlp(x, cfg, name: str = "mlp", units=None) -> tf.Tensor:
    """The configured MLP (hidden_units, activation, dropout, batch_norm, dense_l2) on x."""
    return layers.MLP(cfg.hidden_units if units is None else units, cfg.activation, cfg.dropout,
                      cfg.batch_norm, cfg.dense_l2, name=name)(x)


def base_rate_logit(schema, split: str = "train") -> float:
    """log(p / (1 - p)) of the split's click rate (schema.json), 0 when unknown: a logit head that
    starts there predicts the base rate from the first step instead of 0.5."""
    import math
    rate = (schema.splits.get(split) or {}).get("positive_rate")
    if not rate or not 0 < rate < 1:
        return 0.0
    return math.log(rate / (1 - rate))


def logit_head(x, name="logit"):
    return tf.keras.layers.Dense(1, name=name)(x)


def finish(inputs, logits: list, name: str) -> tf.keras.Model:
    """Sums the model's logit terms; the output is float32 whatever the mixed-precision policy."""
    total = logits[0] if len(logits) == 1 else tf.keras.layers.Add(name="logit_sum")(logits)
    out = tf.keras.layers.Activation("linear", dtype="float32", name="logits")(total)
    return tf.keras.Model(inputs=inputs, outputs=out, name=name)


def embedding_tables(model: tf.keras.Model) -> list:
    """The categorical tables of a built model (every FieldEmbedding's, the linear term's too):
    the variables that get sparse gradients, and that --embedding_table_l2 regularises."""
    return [layer.embeddings for layer in model.submodules if isinstance(layer, layers.FieldEmbedding)]


def copy_weights(src: tf.keras.Model, dst: tf.keras.Model) -> None:
    """dst's weights := src's, for two builds of one model whose tables may be sharded over
    parameter servers in one and whole in the other (Keras lists a sharded table's shards as
    weights of their own, so get_weights/set_weights do not pair them up)."""
    def split(model):
        tables = embedding_tables(model)
        parts = {id(p) for t in tables for p in layers.table_shards(t)}
        return tables, [w for w in model.weights if id(w) not in parts]
    (src_tables, src_rest), (dst_tables, dst_rest) = split(src), split(dst)
    pairs = list(zip(dst_tables, src_tables)) + list(zip(dst_rest, src_rest))
    if len(src_tables) != len(dst_tables) or len(src_rest) != len(dst_rest) or any(
            a.shape != b.shape for a, b in pairs):
        raise ValueError(f"cannot copy the weights of {src.name} into {dst.name}: they differ in structure")
    for a, b in pairs:
        parts = layers.table_shards(b)
        a.assign(parts[0] if len(parts) == 1 else tf.concat([p.read_value() for p in parts], axis=0))


def copy_into_storage(src: tf.keras.Model, dst: tf.keras.Model) -> None:
    """dst's weights := src's, for a serving build whose tables store float16 or int8
    (layers.embedding.table_storage): each table quantised from src's, every other weight copied."""
    src_layers = [layer for layer in src.submodules if isinstance(layer, layers.FieldEmbedding)]
    dst_layers = [layer for layer in dst.submodules if isinstance(layer, layers.FieldEmbedding)]
    if len(src_layers) != len(dst_layers):
        raise ValueError(f"cannot quantise {src.name}'s tables into {dst.name}: they differ in structure")
    src_parts = {id(p) for layer in src_layers for p in layers.table_shards(layer.embeddings)}
    dst_parts = {id(w) for layer in dst_layers for w in layer.weights}
    for a, b in zip(src_layers, dst_layers):
        b.quantize_from(layers.table_shards(a.embeddings))  # read and written in chunks of rows
    rest_src = [w for w in src.weights if id(w) not in src_parts]
    rest_dst = [w for w in dst.weights if id(w) not in dst_parts]
    if len(rest_src) != len(rest_dst) or any(a.shape != b.shape for a, b in zip(rest_src, rest_dst)):
        raise ValueError(f"cannot copy the weights of {src.name} into {dst.name}: they differ in structure")
    for a, b in zip(rest_src, rest_dst):
        b.assign(a)

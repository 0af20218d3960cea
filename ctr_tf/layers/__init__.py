"""The shared layer library: one small file per interaction family."""
from ctr_tf.layers.embedding import DenseFieldEmbedding, FieldEmbedding
from ctr_tf.layers.fm import FMInteraction
from ctr_tf.layers.linear import LinearTerm
from ctr_tf.layers.mlp import MLP

__all__ = ["DenseFieldEmbedding", "FieldEmbedding", "FMInteraction", "LinearTerm", "MLP"]

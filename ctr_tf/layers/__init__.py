"""The shared layer library: one small file per interaction family."""
from ctr_tf.layers.cin import CIN
from ctr_tf.layers.cross import CrossNetV1
from ctr_tf.layers.dot import DotInteraction
from ctr_tf.layers.embedding import DenseFieldEmbedding, FieldEmbedding, table_shards
from ctr_tf.layers.fefm import FEFMInteraction
from ctr_tf.layers.ffm import FFMInteraction
from ctr_tf.layers.final import FactorizedInteraction, FieldGate, FinalBlock
from ctr_tf.layers.field_wise import FieldWiseBiInteraction
from ctr_tf.layers.fm import FMInteraction
from ctr_tf.layers.gate import EmbeddingGate, HiddenGate
from ctr_tf.layers.linear import LinearTerm
from ctr_tf.layers.mlp import MLP
from ctr_tf.layers.self_mask_cross import HalfSplitFlatten, SelfMaskCrossNet

__all__ = ["CIN", "CrossNetV1", "DenseFieldEmbedding", "DotInteraction", "EmbeddingGate", "FactorizedInteraction",
           "FEFMInteraction", "FFMInteraction", "FieldEmbedding", "FieldGate", "FieldWiseBiInteraction", "FinalBlock",
           "FMInteraction", "HalfSplitFlatten", "HiddenGate", "LinearTerm", "MLP", "SelfMaskCrossNet", "table_shards"]

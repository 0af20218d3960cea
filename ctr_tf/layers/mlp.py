"""The MLP block shared by the deep models."""
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class MLP(tf.keras.layers.Layer):
    """x [B, d] -> [B, hidden_units[-1]]: per layer Dense -> (BatchNorm) -> activation -> (Dropout).

    `l2` regularises the kernels. BatchNorm uses momentum 0.9 / epsilon 1e-5 (the PaddlePaddle
    and PyTorch defaults the CTR references were trained with).
    """

    def __init__(self, hidden_units, activation="relu", dropout=0.0, batch_norm=False, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.l2 = float(l2)
        reg = tf.keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.dense_layers = [tf.keras.layers.Dense(u, kernel_regularizer=reg, name=f"dense_{i}")
                             for i, u in enumerate(self.hidden_units)]
        self.norms = [tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"bn_{i}")
                      for i in range(len(self.hidden_units))] if self.batch_norm else []
        self.activations = [tf.keras.layers.Activation(activation) for _ in self.hidden_units]
        self.dropouts = [tf.keras.layers.Dropout(self.dropout) for _ in self.hidden_units] if self.dropout > 0 else []

    def call(self, x, training=None):
        for i, dense in enumerate(self.dense_layers):
            x = dense(x)
            if self.norms:
                x = self.norms[i](x, training=training)
            x = self.activations[i](x)
            if self.dropouts:
                x = self.dropouts[i](x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "activation": self.activation,
                "dropout": self.dropout, "batch_norm": self.batch_norm, "l2": self.l2}

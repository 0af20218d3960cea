"""Readers for the CTR text formats, TFRecord writing and tf.data input."""

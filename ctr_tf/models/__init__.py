"""The CTR model zoo: a registry of builders over the shared layer library."""
from ctr_tf.models import registry
from ctr_tf.models import zoo  # noqa: F401  (registers the builders)
from ctr_tf.models.common import copy_weights, embedding_tables

build = registry.build
names = registry.names
__all__ = ["build", "names", "embedding_tables", "copy_weights"]

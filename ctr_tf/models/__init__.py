"""The CTR model zoo: a registry of builders over the shared layer library.

Every module of this package that registers a model is found by `registry.discover` (no list of
them is kept): `names()` and `build()` import them on first use.
"""
from ctr_tf.models import registry
from ctr_tf.models.common import copy_into_storage, copy_weights, embedding_tables

build = registry.build
names = registry.names
__all__ = ["build", "names", "embedding_tables", "copy_weights", "copy_into_storage"]

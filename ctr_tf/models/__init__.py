"""The CTR model zoo: a registry of builders over the shared layer library."""
from ctr_tf.models import registry
from ctr_tf.models import zoo  # noqa: F401  (registers the builders)

build = registry.build
names = registry.names

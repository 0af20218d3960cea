# Loaded by pytest before any test module: select tf-keras before anything imports TensorFlow.
import ctr_tf  # noqa: F401

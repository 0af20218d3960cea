"""`python -m ctr_tf.models`: every registered model, what it is, and its own options (flags)."""
import dataclasses
import sys

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)
from ctr_tf.models import options as options_lib
from ctr_tf.models import registry


def describe() -> str:
    lines = []
    for name in registry.names():
        e = registry.entry(name)
        lines.append(f"{name}: {e.summary}")
        for f in dataclasses.fields(e.options):
            lines.append(f"    --{f.name}={options_lib.flag_text(f.default)}  {f.metadata.get('help', '')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(describe() + "\n")

"""The private Keras attributes tfseg training relies on, each checked before use.

Keras has no public API for these: the seed generators of a layer (their states go into the step
checkpoints, so a resumed run draws the same dropout masks), batch norm's moments (replaced to
synchronise them across replicas) and the strategy a model recorded at build time (cleared for
MultiWorkerMirroredStrategy). ``requirements.txt`` pins the Keras versions these were tested
with; under another one a renamed attribute raises here instead of silently changing a run.
"""

from __future__ import annotations

import keras

# (class, attribute, what tfseg needs it for)
USED = (
    (keras.layers.Layer, "_flatten_layers", "every nested layer, for seed generator states"),
    (keras.layers.Layer, "_seed_generators", "dropout and other seed states in step checkpoints (exact resume)"),
    (keras.layers.BatchNormalization, "_moments", "batch norm moments synchronised across replicas"),
    (keras.layers.BatchNormalization, "_reduction_axes", "batch norm moments synchronised across replicas"),
    (keras.Model, "_distribute_strategy", "fit() under MultiWorkerMirroredStrategy (keras-team/keras#20585)"),
)


def require(instance, attribute):
    """``getattr(instance, attribute)``, or ``RuntimeError`` naming the Keras version and what needs it."""
    if not hasattr(instance, attribute):
        purpose = next((why for cls, name, why in USED if name == attribute and isinstance(instance, cls)), "training")
        raise RuntimeError(
            f"keras {keras.__version__}: {type(instance).__name__} has no attribute {attribute} ({purpose}); "
            "install the keras version requirements.txt names"
        )
    return getattr(instance, attribute)

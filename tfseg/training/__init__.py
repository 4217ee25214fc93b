"""Training and evaluation: ``model.fit`` under a ``tf.distribute`` strategy, DeepLab's recipe.

``train(config)`` and ``evaluate(...)`` are the Python entry points of ``tfseg train`` and
``tfseg eval``; ``TrainConfig`` is the configuration, read from YAML/JSON files and flags.
"""

from tfseg.training.config import TrainConfig, load_config  # noqa: F401

"""The model zoo: cards in ``zoo/``, pretrained weights, the official DeepLab checkpoint converter.

    tfseg.zoo.list()                      # every card's name
    tfseg.zoo.card(name)                  # builder, classes, palette, figures, tuned CRF parameters
    tfseg.zoo.load(name, weights="pretrained", num_classes=None)
"""

import sys

from tfseg import catalogue as _catalogue
from tfseg.zoo.cards import CardError, ModelCard
from tfseg.zoo.load import card, list_models, load

list = list_models  # noqa: A001  (tfseg.zoo.list(), as the issue and keras-hub's list_presets read)

_catalogue.register(sys.modules[__name__])  # zoo names for inference, export and training (tfseg.catalogue)

__all__ = ["CardError", "ModelCard", "card", "list", "list_models", "load"]

"""The model zoo: cards in ``zoo/``, pretrained weights, the official DeepLab checkpoint converter.

    tfseg.zoo.list()                      # every card's name
    tfseg.zoo.card(name)                  # builder, classes, palette, figures, tuned CRF parameters
    tfseg.zoo.load(name, weights="pretrained", num_classes=None)
"""

from tfseg.zoo.cards import CardError, ModelCard
from tfseg.zoo.load import card, list_models, load

list = list_models  # noqa: A001  (tfseg.zoo.list(), as the issue and keras-hub's list_presets read)

__all__ = ["CardError", "ModelCard", "card", "list", "list_models", "load"]

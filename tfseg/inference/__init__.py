"""Running a model on images: ``predict``, one runner per format, image sources and outputs."""

from tfseg.inference.predict import Predictor, predict  # noqa: F401
from tfseg.inference.runners import load_runner  # noqa: F401

"""Running a model on images, the same way for every format (Keras model, ``.keras``, SavedModel, ``.tflite``,
zoo name): the serving graph the exports hold, one runner per format, the inference modes
(input protocol, multi-scale + flip, sliding window, dense CRF), ``predict``, batch-independent
``evaluate``, image sources and outputs, and the metadata a model carries. Nothing here imports
``tfseg.export``, which builds on it."""

from tfseg.inference.evaluation import EvaluationResult, evaluate  # noqa: F401
from tfseg.inference.metadata import ModelInfo  # noqa: F401
from tfseg.inference.modes import DEEPLAB_EVAL_SCALES, InferenceOptions  # noqa: F401
from tfseg.inference.predict import Predictor, predict  # noqa: F401
from tfseg.inference.protocol import WHOLE_IMAGE, InputProtocol  # noqa: F401
from tfseg.inference.runners import load_runner  # noqa: F401

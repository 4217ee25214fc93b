"""tfseg: semantic segmentation for TensorFlow 2 / Keras 3.

FCN, U-Net and DeepLab v1/v2/v3/v3+ as functional Keras builders, with metrics, losses and a
dense CRF built from standard TF ops.
"""

from tfseg._startup import import_tensorflow_quietly

import_tensorflow_quietly()

# These imports register every custom Keras object (layers, initializer, backbone model, metrics,
# losses, schedules), so keras.saving.load_model reads any tfseg .keras file after `import tfseg` alone.
import tfseg.backbones  # noqa: E402, F401
import tfseg.layers  # noqa: E402, F401
import tfseg.training.schedules  # noqa: E402, F401
from tfseg import losses, metrics  # noqa: E402, F401
from tfseg.registry import build_model, list_models, model_options  # noqa: E402, F401
from tfseg.inference.predict import predict  # noqa: E402, F401

__version__ = "0.1.0"
from tfseg import zoo  # noqa: E402, F401

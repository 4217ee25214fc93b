"""Reusable Keras layers and blocks (all custom layers and initializers are registered as serializable)."""

from tfseg.layers.initializers import BilinearUpsampling  # noqa: F401
from tfseg.layers.preprocessing import ImagePreprocessing  # noqa: F401
from tfseg.layers.spatial import CropLike, PadToMultiple, ResizeLike  # noqa: F401
from tfseg.layers.dense_crf import DenseCRF  # noqa: F401

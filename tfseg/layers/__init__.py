"""Reusable Keras layers and blocks (all custom layers and initializers are registered as serializable)."""

from tfseg.layers.initializers import BilinearUpsampling  # noqa: F401
from tfseg.layers.preprocessing import ImagePreprocessing  # noqa: F401
from tfseg.layers.spatial import CropLike, PadToMinimumSize, PadToMultiple, ResizeLike  # noqa: F401
from tfseg.layers.dense_crf import DenseCRF  # noqa: F401
from tfseg.layers.unpooling import MaxPoolingWithMask2D, MaxUnpooling2D  # noqa: F401

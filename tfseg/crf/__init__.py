"""Fully connected CRF (Krähenbühl & Koltun, NIPS 2011) in standard TensorFlow ops.

``dense_crf`` reproduces pydensecrf's DenseCRF2D (Gaussian + bilateral kernels, symmetric
normalisation) on a permutohedral lattice (Adams et al. 2010) built once per image; the
trainable CRF-as-RNN layer (Zheng et al. 2015) is ``tfseg.layers.DenseCRF``.
"""

from tfseg.crf.lattice import IMPLEMENTATIONS, PermutohedralLattice  # noqa: F401
from tfseg.crf.mean_field import (  # noqa: F401
    GAUSSIAN_FILTERS,
    ConvolutionGaussianFilter,
    PairwiseFilters,
    dense_crf,
    mean_field_inference,
    message_transform,
)
from tfseg.crf.synthetic import corrupted_unary  # noqa: F401

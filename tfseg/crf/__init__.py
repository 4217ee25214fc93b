"""Fully connected CRF (Krähenbühl & Koltun, NIPS 2011) in standard TensorFlow ops.

``dense_crf`` reproduces pydensecrf's DenseCRF2D (Gaussian + bilateral kernels, symmetric
normalisation) on a permutohedral lattice (Adams et al. 2010) built once per image; the
trainable CRF-as-RNN layer (Zheng et al. 2015) is ``tfseg.layers.DenseCRF``. The building
blocks (lattice, hash table, pairwise filters, mean field) are public for tests and for custom
kernels.
"""

from tfseg.crf.hashing import HashTable, hash_unique
from tfseg.crf.lattice import HASHINGS, IMPLEMENTATIONS, PermutohedralLattice
from tfseg.crf.mean_field import (
    GAUSSIAN_FILTERS,
    ConvolutionGaussianFilter,
    GridGaussianFilter,
    PairwiseFilters,
    dense_crf,
    mean_field_inference,
    message_transform,
)

__all__ = [
    "dense_crf",
    "mean_field_inference",
    "message_transform",
    "PairwiseFilters",
    "PermutohedralLattice",
    "ConvolutionGaussianFilter",
    "GridGaussianFilter",
    "HashTable",
    "hash_unique",
    "IMPLEMENTATIONS",
    "GAUSSIAN_FILTERS",
    "HASHINGS",
]

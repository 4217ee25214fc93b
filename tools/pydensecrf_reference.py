"""pydensecrf2's dense CRF on one image: the peer the CRF benchmarks time and compare labels against.

Kept out of the ``tfseg`` package: pydensecrf2 is a benchmark peer, never a dependency of tfseg.
"""

from __future__ import annotations

import numpy as np


def pydensecrf_marginals(image, unary, iterations, params):
    """Marginals [H, W, C] of pydensecrf's DenseCRF2D on uint8 RGB ``image`` and -log p ``unary`` [H, W, C].

    ``params``: gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat, as
    pydensecrf's addPairwiseGaussian and addPairwiseBilateral take them; a term whose compat is None
    is left out.
    """
    import pydensecrf.densecrf as dcrf

    height, width, labels = unary.shape
    crf = dcrf.DenseCRF2D(width, height, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(-1, labels).T))
    if params["gaussian_compat"] is not None:
        crf.addPairwiseGaussian(sxy=params["gaussian_sxy"], compat=params["gaussian_compat"])
    if params["bilateral_compat"] is not None:
        crf.addPairwiseBilateral(sxy=params["bilateral_sxy"], srgb=params["bilateral_srgb"],
                                 rgbim=np.ascontiguousarray(image), compat=params["bilateral_compat"])
    return np.array(crf.inference(iterations)).T.reshape(height, width, labels)

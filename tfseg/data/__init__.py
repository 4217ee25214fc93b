"""Datasets on disk: one reader per layout, all returning a ``SegmentationDataset``.

``open_dataset(name, root, **options)`` opens any of ``DATASETS``; ``read_pair`` reads one
example as (RGB image, training ids). OpenCV is imported only when pixels are read or written.
"""

from tfseg.data.base import SegmentationDataset, read_image, read_label, read_pair  # noqa: F401
from tfseg.data.registry import DATASETS, dataset_options, list_datasets, open_dataset  # noqa: F401

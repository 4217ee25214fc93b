"""Dataset registry: public name -> reader function (``module:function``), imported when opened."""

from __future__ import annotations

import importlib
import inspect

DATASETS = {
    "voc": "tfseg.data.voc:open_voc",
    "cityscapes": "tfseg.data.cityscapes:open_cityscapes",
    "ade20k": "tfseg.data.ade20k:open_ade20k",
    "camvid": "tfseg.data.camvid:open_camvid",
    "folder": "tfseg.data.folder:open_folder",
    "synthetic": "tfseg.data.synthetic:open_synthetic",
}


def list_datasets():
    """Names accepted by :func:`open_dataset`."""
    return sorted(DATASETS)


def get_reader(name):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    module, function = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), function)


def dataset_options(name):
    """Keyword options a dataset reader accepts, with their defaults."""
    parameters = inspect.signature(get_reader(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def open_dataset(name, root=None, **options):
    """Open dataset ``name`` (see ``DATASETS``) at ``root``: a checked ``SegmentationDataset``.

    ``root`` None means the reader's default (``$TFSEG_<NAME>_DIR``; CamVid's shared copy).
    An unknown option raises ``TypeError`` listing the valid ones.
    """
    reader = get_reader(name)
    parameters = inspect.signature(reader).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        valid = dataset_options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise TypeError(
                f"{name}: unknown option(s) {unknown}; valid options: "
                + (", ".join(f"{k}={v!r}" for k, v in valid.items()) or "none")
            )
    return reader(root, **options)

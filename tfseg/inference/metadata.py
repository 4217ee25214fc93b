"""What a model's outputs mean, carried with the model in every format.

``ModelInfo``: class names, palette, ignore label, the dataset (and its reader options) the classes
come from, the input protocol (``tfseg.inference.protocol``) and, for an exported file, the dense
CRF it holds. Where it lives:

- a ``keras.Model`` in memory: ``attach(model, info)`` / ``info_of(model)`` (``tfseg.zoo.load``
  attaches the card's);
- a ``.keras`` file: a ``tfseg_info.json`` entry in its zip, written by ``save_keras_model``
  (``keras.saving.load_model`` ignores it; ``tfseg.inference.models.load_keras_model`` reads it);
- a SavedModel folder: ``assets.extra/tfseg_info.json`` (TensorFlow's place for extra files);
- a ``.tflite`` file: a flatbuffer metadata entry named ``tfseg_info`` (the schema's ``metadata``
  table, where the converter keeps ``min_runtime_version``).
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from tfseg.inference.protocol import WHOLE_IMAGE, InputProtocol

ENTRY_NAME = "tfseg_info"
JSON_NAME = "tfseg_info.json"
SAVED_MODEL_PATH = Path("assets.extra") / JSON_NAME


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The meaning of a model's output channels and how the model is fed."""

    class_names: tuple = ()
    palette: tuple = ()  # one (r, g, b) per class
    ignore_label: int | None = None
    dataset: str | None = None
    dataset_options: tuple = ()  # the reader's options, as (key, value) pairs
    protocol: InputProtocol = WHOLE_IMAGE
    crf: dict | None = None  # DenseCRF options of a CRF inside an exported file
    source: str = ""

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        object.__setattr__(self, "palette", tuple(tuple(int(v) for v in c) for c in self.palette))
        if isinstance(self.dataset_options, dict):
            object.__setattr__(self, "dataset_options", tuple(sorted(self.dataset_options.items())))
        if self.palette and len(self.palette) != len(self.class_names):
            raise ValueError(f"{len(self.palette)} palette colours for {len(self.class_names)} class names")

    def colors(self, num_classes):
        """``(num_classes, 3)`` uint8 RGB: the palette, or VOC's colour map when there is none."""
        from tfseg.data.palettes import voc_colormap

        if len(self.palette) == num_classes:
            return np.array(self.palette, np.uint8)
        return voc_colormap(num_classes)

    def names(self, num_classes):
        return self.class_names if len(self.class_names) == num_classes else tuple(str(k) for k in range(num_classes))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return {"class_names": list(self.class_names), "palette": [list(c) for c in self.palette],
                "ignore_label": self.ignore_label, "dataset": self.dataset,
                "dataset_options": dict(self.dataset_options), "protocol": self.protocol.to_dict(),
                "crf": self.crf, "source": self.source}

    @classmethod
    def from_dict(cls, data, what="model metadata"):
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"{what} is not tfseg metadata (keys {sorted(data) if isinstance(data, dict) else data!r})")
        data = dict(data)
        data["protocol"] = InputProtocol.from_dict(data.get("protocol") or None, f"{what}: protocol")
        return cls(**data)

    @classmethod
    def from_card(cls, card):
        """The metadata of a zoo card: its classes, palette, dataset, protocol."""
        dataset = card.data["dataset"]
        return cls(class_names=card.class_names, palette=card.palette.tolist(), ignore_label=dataset.get("ignore_label"),
                   dataset=dataset.get("name"), dataset_options=dataset.get("reader_options") or {},
                   protocol=card.protocol, source=f"zoo:{card.name}")

    @classmethod
    def from_dataset(cls, dataset, options=None, protocol=WHOLE_IMAGE, source=""):
        """The metadata of a model trained on ``dataset`` (a ``SegmentationDataset``) opened with ``options``."""
        return cls(class_names=dataset.class_names, palette=np.asarray(dataset.palette).tolist(),
                   ignore_label=dataset.ignore_label, dataset=dataset.name, dataset_options=options or {},
                   protocol=protocol, source=source)


def attach(model, info):
    """Attach ``info`` to a ``keras.Model`` (kept by ``save_keras_model`` and every export); returns the model."""
    if info is not None and not isinstance(info, ModelInfo):
        raise TypeError(f"info must be a tfseg.inference.metadata.ModelInfo; got {type(info).__name__}")
    model._tfseg_info = info
    return model


def info_of(model):
    """The ``ModelInfo`` attached to ``model``, or None."""
    return getattr(model, "_tfseg_info", None)


def save_keras_model(model, path, info=None):
    """``model.save(path)`` with ``info`` (default: the attached one) inside the ``.keras`` file.

    Written to a temporary name and renamed into place: a kill mid-write leaves the previous file.
    """
    from tfseg.files import replacing

    path = Path(path)
    info = info if info is not None else info_of(model)
    with replacing(path) as temporary:
        model.save(temporary)
        if info is not None:
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(JSON_NAME, json.dumps(info.to_dict(), indent=1))
    return path


def read_keras_info(path):
    """The ``ModelInfo`` inside a ``.keras`` file, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            if JSON_NAME not in archive.namelist():
                return None
            data = json.loads(archive.read(JSON_NAME))
    except (zipfile.BadZipFile, OSError):
        return None
    return ModelInfo.from_dict(data, f"{path}: {JSON_NAME}")


def write_saved_model_info(folder, info):
    target = Path(folder) / SAVED_MODEL_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(info.to_dict(), indent=1))


def read_saved_model_info(folder):
    target = Path(folder) / SAVED_MODEL_PATH
    if not target.is_file():
        return None
    return ModelInfo.from_dict(json.loads(target.read_text()), str(target))


def with_tflite_info(content, info):
    """The TFLite flatbuffer ``content`` with ``info`` as its ``tfseg_info`` metadata entry."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    model.metadata = [entry for entry in (model.metadata or []) if entry.name not in (ENTRY_NAME, ENTRY_NAME.encode())]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(info.to_dict()).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = ENTRY_NAME, len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_tflite_info(content, what="TFLite file"):
    """The ``ModelInfo`` in a TFLite flatbuffer, or None."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == ENTRY_NAME.encode():
            data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            return ModelInfo.from_dict(json.loads(data), f"{what}: {ENTRY_NAME}")
    return None

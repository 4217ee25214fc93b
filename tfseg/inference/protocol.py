"""How a model is fed an image: as it is, or the official DeepLab way (resize to a range, pad to a canvas).

The official DeepLab evaluation (``research/deeplab/input_preprocess.py`` with ``is_training=False``,
``model.predict_labels``, ``vis.py``) pads each image bottom/right to the eval crop with the mean
pixel (513x513 for VOC, 1025x2049 for Cityscapes), runs the network on that canvas and crops the
labels back; for ADE20K it first resizes the image with ``resize_to_range(min_size=513,
max_size=513, factor=16)`` (bilinear, ``align_corners=True``). A card writes this as data::

    protocol: {canvas: [513, 513], pad_value: 127.5}
    protocol: {resize: [513, 513, 16], canvas: [513, 513], pad_value: 127.5}

and every exported file carries it in its metadata, so ``tfseg.predict`` and ``tfseg eval`` feed
the model as its card says whatever the format.
"""

from __future__ import annotations

import dataclasses

PROTOCOL_KEYS = ("canvas", "resize", "pad_value")


@dataclasses.dataclass(frozen=True)
class InputProtocol:
    """``canvas``: pad bottom/right to at least (H, W) with ``pad_value`` and crop the output back.
    ``resize``: (min_size, max_size, factor) of the official ``resize_to_range``; the output is
    resized back to the image's size. Neither: the whole image as it is."""

    canvas: tuple | None = None
    resize: tuple | None = None
    pad_value: float = 127.5

    def __post_init__(self):
        if self.canvas is not None:
            object.__setattr__(self, "canvas", _positive_ints(self.canvas, 2, "canvas", "[height, width]"))
        if self.resize is not None:
            object.__setattr__(self, "resize", _positive_ints(self.resize, 3, "resize", "[min_size, max_size, factor]"))
        if not isinstance(self.pad_value, (int, float)) or not 0 <= self.pad_value <= 255:
            raise ValueError(f"protocol pad_value must be a number in [0, 255]; got {self.pad_value!r}")
        object.__setattr__(self, "pad_value", float(self.pad_value))

    @property
    def is_whole_image(self):
        return self.canvas is None and self.resize is None

    def to_dict(self):
        data = {}
        if self.resize is not None:
            data["resize"] = list(self.resize)
        if self.canvas is not None:
            data["canvas"] = list(self.canvas)
        if not self.is_whole_image:
            data["pad_value"] = self.pad_value
        return data

    @classmethod
    def from_dict(cls, data, what="protocol"):
        """From a card's or a file's mapping; an unknown key fails naming it and ``what``."""
        if data is None:
            return WHOLE_IMAGE
        if not isinstance(data, dict):
            raise ValueError(f"{what} must be a mapping with keys {list(PROTOCOL_KEYS)}; got {data!r}")
        unknown = sorted(set(data) - set(PROTOCOL_KEYS))
        if unknown:
            raise ValueError(f"{what}: unknown keys {unknown}; valid: {list(PROTOCOL_KEYS)}")
        return cls(**data)

    def describe(self):
        if self.is_whole_image:
            return "whole image"
        parts = []
        if self.resize is not None:
            parts.append(f"resized to sides in [{self.resize[0]}, {self.resize[1]}] (multiples of {self.resize[2]} plus 1)")
        if self.canvas is not None:
            parts.append(f"padded to {self.canvas[0]}x{self.canvas[1]} with {self.pad_value:g}, output cropped back")
        return ", ".join(parts)


WHOLE_IMAGE = InputProtocol()


def _positive_ints(values, count, key, form):
    try:
        ints = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        ints = ()
    if len(ints) != count or min(ints) < 1 or ints != tuple(values):
        raise ValueError(f"protocol {key} must be {form} of positive integers; got {values!r}")
    return ints


def parse_protocol(text):
    """``auto`` (None: the model's own), ``whole`` or ``pad:HxW`` (pad to a canvas with 127.5)."""
    if text in (None, "", "auto"):
        return None
    if text == "whole":
        return WHOLE_IMAGE
    if text.startswith("pad:"):
        size = text[4:].lower().split("x")
        if len(size) == 2 and all(s.isdigit() and int(s) > 0 for s in size):
            return InputProtocol(canvas=(int(size[0]), int(size[1])))
    raise ValueError(f"--protocol {text!r}: expected auto, whole or pad:HxW (for example pad:513x513)")

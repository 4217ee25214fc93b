"""The Keras model an export starts from: a keras.Model, a ``.keras`` file or a zoo name."""

from __future__ import annotations

from pathlib import Path


def as_keras_model(model):
    """``model`` itself, or the model loaded from a ``.keras`` file (clear error otherwise)."""
    import keras

    if isinstance(model, keras.Model):
        return model
    if isinstance(model, (str, Path)):
        path = Path(model)
        zoo_model = _zoo_model(str(model)) if not path.exists() else None
        if zoo_model is not None:
            return zoo_model
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        if path.suffix.lower() != ".keras":
            raise ValueError(f"model file {path}: expected a .keras file")
        from tfseg.inference.runners import load_keras_model

        return load_keras_model(path)
    raise TypeError(f"model must be a keras.Model, a .keras path or a zoo name; got {type(model).__name__}")


def _zoo_model(name):
    """The pretrained zoo model ``name`` (``zoo:NAME`` or NAME), or None when it is not a zoo name."""
    from tfseg import zoo

    name = name[len("zoo:"):] if name.startswith("zoo:") else name
    return zoo.load(name) if name in zoo.list() else None

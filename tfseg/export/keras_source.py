"""The Keras model an export starts from: a keras.Model or a ``.keras`` file."""

from __future__ import annotations

from pathlib import Path


def as_keras_model(model):
    """``model`` itself, or the model loaded from a ``.keras`` file (clear error otherwise)."""
    import keras

    if isinstance(model, keras.Model):
        return model
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        if path.suffix.lower() != ".keras":
            raise ValueError(f"model file {path}: expected a .keras file")
        from tfseg.inference.runners import load_keras_model

        return load_keras_model(path)
    raise TypeError(f"model must be a keras.Model or a .keras path; got {type(model).__name__}")

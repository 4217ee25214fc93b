"""What a model argument names: a ``keras.Model``, a ``.keras`` file, a zoo name (``zoo:NAME`` or NAME),
a SavedModel folder or a ``.tflite`` file; loading the Keras ones with their metadata."""

from __future__ import annotations

from pathlib import Path

from tfseg.catalogue import catalogue
from tfseg.inference.metadata import attach, read_keras_info

ZOO_PREFIX = "zoo:"


def zoo_name(model):
    """The zoo name ``model`` means (``zoo:NAME`` or a card's name that is not a path), else None."""
    if not isinstance(model, (str, Path)) or Path(model).exists():
        return None
    name = str(model).removeprefix(ZOO_PREFIX)
    return name if name in catalogue().list() else None


def load_keras_model(path):
    """A ``.keras`` file as a ``keras.Model``, with the ``ModelInfo`` saved in it attached."""
    import keras  # tfseg's layers are registered for deserialisation: importing any tfseg module imports tfseg

    damage = _zip_damage(path)
    if damage:
        raise ValueError(f"Keras model {path} is damaged ({damage}): save or copy it again")
    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as error:  # Keras raises many kinds here (bad zip, unknown layer, config errors)
        raise ValueError(f"cannot load Keras model {path}: {type(error).__name__}: {error}") from error
    return attach(model, read_keras_info(path))


def _zip_damage(path):
    """Why the ``.keras`` file ``path`` is no whole zip archive (empty, cut off, a bad entry), or None."""
    import zipfile

    size = Path(path).stat().st_size
    if size == 0:
        return "the file is empty"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return f"{size:,} bytes without the end of a zip archive: cut off, e.g. by a kill or a full disk"
    return f"entry {bad} fails its checksum" if bad else None


def use_tensorflow_threads(count):
    """Run TensorFlow's ops on ``count`` threads (``--threads`` for Keras and SavedModel models).

    TensorFlow fixes its thread pools when it starts; a different count asked for later is refused
    (``ValueError``) rather than ignored.
    """
    import tensorflow as tf

    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current == count:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(count)
    except RuntimeError:
        raise ValueError(
            f"--threads {count}: TensorFlow already runs in this process on {current or 'its default number of'} "
            "threads and cannot change them; set the threads before TensorFlow runs anything (a new process)"
        ) from None


def load_zoo_model(name):
    """The zoo model ``name`` with its pretrained weights and the card's metadata."""
    return catalogue().load(name)


def as_keras_model(model):
    """``model`` itself, or the Keras model a ``.keras`` file or a zoo name holds (clear error otherwise)."""
    import keras

    if isinstance(model, keras.Model):
        return model
    if isinstance(model, (str, Path)):
        name = zoo_name(model)
        if name is not None:
            return load_zoo_model(name)
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist (and it is not a zoo name: see tfseg zoo list)")
        if path.suffix.lower() != ".keras":
            raise ValueError(f"model file {path}: expected a .keras file")
        return load_keras_model(path)
    raise TypeError(f"model must be a keras.Model, a .keras path or a zoo name; got {type(model).__name__}")

"""The standard TFLite metadata (``TFLITE_METADATA``) in a tfseg TFLite file, for MediaPipe and other readers.

tfseg's own ``tfseg_info`` entry holds what tfseg needs (palette, input protocol, CRF); runtimes
such as MediaPipe Tasks' ``ImageSegmenter`` read the standard ``ModelMetadata`` instead: name,
description, version, author, licence, the input's colour space and normalisation, and the output
with its label file. :func:`add_standard_metadata` writes it with MediaPipe's maintained writer
(``metadata_writers``), run by ``mediapipe_writer.py`` in a Python that has it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tfseg.files import write_bytes

WRITER_SCRIPT = Path(__file__).with_name("mediapipe_writer.py")
PYTHON_VARIABLE = "TFSEG_MEDIAPIPE_PYTHON"
WRITER_SETUP = (
    "MediaPipe's metadata writer ships whole in mediapipe 0.10.21 (later wheels leave out its "
    "_pywrap_metadata_version) and needs numpy 1 and protobuf 4, so give it its own environment: "
    "python3 -m venv ~/mediapipe-writer && ~/mediapipe-writer/bin/pip install mediapipe==0.10.21, then pass "
    f"that Python (tfseg export ... --standard-metadata ~/mediapipe-writer/bin/python, or set {PYTHON_VARIABLE})"
)


class MetadataWriterMissing(RuntimeError):
    """No Python with MediaPipe's metadata writer was found; the message says how to set one up."""


def writer_python(python=None):
    """The Python that runs the writer: ``python``, else ``$TFSEG_MEDIAPIPE_PYTHON``, else this one."""
    return str(python or os.environ.get(PYTHON_VARIABLE) or sys.executable)


def add_standard_metadata(path, *, name=None, description=None, version=None, author="tfseg", license="",
                          python=None):
    """Write the standard metadata into the tfseg TFLite file ``path`` (in place); returns it as a dict.

    The class names come from the file's own ``tfseg_info``; ``name`` defaults to its zoo name or
    the file's stem, ``version`` to the tfseg version. Output 0 (``labels``) is described as a feature
    tensor and output 1 (``probabilities``) as the segmentation mask with a ``labels.txt`` of the class
    names, so MediaPipe's ``ImageSegmenter`` reports the classes. ``python``: see :func:`writer_python`.
    Raises ``MetadataWriterMissing`` when that Python has no MediaPipe metadata writer.
    """
    import tfseg
    from tfseg.inference.metadata import read_tflite_info

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no TFLite file at {path}")
    content = path.read_bytes()
    info = read_tflite_info(content, str(path))
    if info is None or not info.class_names:
        raise ValueError(f"{path} carries no tfseg class names (tfseg_info): export it with tfseg export first")
    _check_outputs(content, path)
    if _has_standard_metadata(content):
        write_bytes(path, _without_standard_metadata(content))  # the writer refuses to pack labels.txt twice
    source = info.source[len("zoo:"):] if info.source.startswith("zoo:") else path.stem
    spec = {
        "path": str(path.resolve()), "name": name or source,
        "description": description or f"Semantic segmentation into {len(info.class_names)} classes"
                                      + (f" ({info.dataset})" if info.dataset else "") + ", exported by tfseg",
        "version": version or f"tfseg {tfseg.__version__}", "author": author, "license": license,
        "class_names": list(info.class_names),
    }
    interpreter = writer_python(python)
    try:
        done = subprocess.run([interpreter, "-P", str(WRITER_SCRIPT)], input=json.dumps(spec), capture_output=True,
                              text=True, timeout=300)
    except FileNotFoundError:
        raise MetadataWriterMissing(f"no Python at {interpreter}. {WRITER_SETUP}") from None
    answer = _last_json_line(done.stdout)
    if done.returncode == 3 and answer and "error" in answer:
        raise MetadataWriterMissing(f"{answer['error']}. {WRITER_SETUP}")
    if done.returncode != 0 or answer is None:
        raise RuntimeError(f"MediaPipe's metadata writer ({interpreter}) failed on {path} with exit code "
                           f"{done.returncode}: {(done.stderr or done.stdout).strip()[-2000:]}")
    if read_tflite_info(path.read_bytes(), str(path)) != info:
        raise RuntimeError(f"writing the standard metadata lost tfseg_info in {path}")
    return answer["metadata"]


def _check_outputs(content, path):
    from tensorflow.lite.python import schema_py_generated as schema

    graph = schema.Model.GetRootAs(content, 0).Subgraphs(0)
    ranks = [graph.Tensors(graph.Outputs(i)).ShapeLength() for i in range(graph.OutputsLength())]
    if ranks != [3, 4]:
        raise ValueError(f"{path} has outputs of rank {ranks}; a tfseg file has labels [1, H, W] and "
                         "probabilities [1, H, W, classes]")


STANDARD_ENTRY = "TFLITE_METADATA"


def _has_standard_metadata(content):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    return any(model.Metadata(i).Name() == STANDARD_ENTRY.encode() for i in range(model.MetadataLength()))


def _without_standard_metadata(content):
    """The flatbuffer without its ``TFLITE_METADATA`` entry and the packed files appended after it."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    for entry in [e for e in model.metadata if e.name in (STANDARD_ENTRY, STANDARD_ENTRY.encode())]:
        model.buffers[entry.buffer].data = None
        model.metadata.remove(entry)
    builder = flatbuffers.Builder(len(content))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _last_json_line(text):
    for line in reversed((text or "").strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None

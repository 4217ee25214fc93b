"""Write the standard TFLite metadata into a tfseg TFLite file with MediaPipe's metadata writer.

Run by ``tfseg.export.standard_metadata`` in a Python that has ``mediapipe`` (0.10.21, the last
release whose wheel ships the writer's ``_pywrap_metadata_version``; it needs numpy 1 and protobuf
4, so it usually lives in its own environment): ``python -P mediapipe_writer.py < spec.json``.
This file imports nothing of tfseg or TensorFlow. The spec (JSON on stdin) names the file and
what to write; the file is rewritten in place through a temporary name.

What is written (``metadata_schema.fbs``, the ``TFLITE_METADATA`` entry): the model's name,
description, version, author and licence; the input image (RGB, raw 0-255 pixels: mean 0, std 1);
output 0 (``labels``) as a feature tensor; output 1 (``probabilities``) as the segmentation mask
with the class names as its label file, and ``SEGMENTER_METADATA`` with activation NONE (the
probabilities are already a softmax). Other metadata entries (tfseg's own ``tfseg_info``) are kept.
"""

import json
import os
import sys
import tempfile


def write(spec):
    """Populate the metadata of ``spec["path"]``; returns the written metadata as MediaPipe displays it."""
    from mediapipe.tasks.python.metadata import metadata
    from mediapipe.tasks.python.metadata.metadata_writers import image_segmenter, metadata_info, metadata_writer

    class Writer(metadata_writer.MetadataWriter):
        def add_model_record(self, **fields):
            """The general record with version, author and licence (``add_general_info`` takes two fields)."""
            self._general_md = metadata_info.GeneralMd(**fields)
            return self

    path = spec["path"]
    with open(path, "rb") as f:
        model = bytearray(f.read())
    writer = Writer.create(model)
    writer.add_model_record(name=spec["name"], version=spec["version"], description=spec["description"],
                            author=spec["author"], licenses=spec["license"])
    writer.add_image_input(norm_mean=[0.0], norm_std=[1.0])
    writer.add_custom_metadata(image_segmenter.ImageSegmenterOptionsMd(image_segmenter.Activation.NONE))
    writer.add_feature_output("labels", "The class of each pixel (the argmax of probabilities), int32 [1, H, W].")
    writer.add_segmentation_output(
        metadata_writer.Labels().add(list(spec["class_names"])),
        name="probabilities",
        description="Softmax probabilities of each class at each pixel, float32 [1, H, W, classes].",
    )
    content, shown = writer.populate()
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".mediapipe-", suffix=".tflite")
    with os.fdopen(handle, "wb") as f:
        f.write(content)
    os.replace(temporary, path)
    files = metadata.MetadataDisplayer.with_model_buffer(content).get_packed_associated_file_list()
    return {"metadata": json.loads(shown), "associated_files": sorted(files)}


def main():
    spec = json.load(sys.stdin)
    try:
        result = write(spec)
    except ImportError as error:
        print(json.dumps({"error": f"no MediaPipe metadata writer in {sys.executable}: {error}"}))
        return 3
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

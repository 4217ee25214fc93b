"""Run MediaPipe Tasks' ImageSegmenter on images; a test helper run in a Python that has mediapipe.

    python mediapipe_segment.py MODEL.tflite OUT.npz IMAGE...

Writes each image's category mask (uint8 [H, W]) to OUT.npz in order and prints one JSON line:
the segmenter's labels and the mediapipe version. Imports nothing of tfseg or TensorFlow.
"""

import json
import sys

import mediapipe as mp
import numpy as np
from mediapipe.tasks import python as tasks
from mediapipe.tasks.python import vision


def main(model, out, *images):
    options = vision.ImageSegmenterOptions(base_options=tasks.BaseOptions(model_asset_path=model),
                                           output_category_mask=True, output_confidence_masks=False)
    masks = []
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        for image in images:
            result = segmenter.segment(mp.Image.create_from_file(image))
            masks.append(np.array(result.category_mask.numpy_view()).reshape(result.category_mask.height,
                                                                              result.category_mask.width))
        labels = list(segmenter.labels)
    np.savez(out, *masks)
    print(json.dumps({"labels": labels, "mediapipe": mp.__version__}))


if __name__ == "__main__":
    main(*sys.argv[1:])

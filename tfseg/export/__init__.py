"""Export to SavedModel and TFLite with the serving graph inside and a parity report beside.

``saved_model(model, path, crf=...)`` and ``tflite(model_or_path, path, quantization=..., ...)``;
both take uint8 RGB pixels and return labels and probabilities (the serving graph of
``tfseg.inference.serving``), and carry the model's metadata (``tfseg.inference.metadata``).
"""

from tfseg.export.parity import parity_report, report_text, write_report  # noqa: F401
from tfseg.export.tflite_ops import UnsupportedOpsError  # noqa: F401
from tfseg.export.to_saved_model import saved_model  # noqa: F401
from tfseg.export.to_tflite import QUANTIZATIONS, tflite  # noqa: F401

"""Parity of exported models against their reference (the Keras model): label agreement and mean IoU.

``parity_report(reference, exports, samples)`` runs the reference and each exported model (each a
``tfseg.inference.Predictor``, so each is fed by the model's input protocol) on the same uint8
images, resized to a fixed input size where a graph has one and the protocol is the whole image,
and reports, per format: the share of pixels whose label agrees with the reference, the mean IoU
of the exported labels taking the reference's labels as truth, the largest probability
difference, and, where the samples carry ground truth (a dataset split such as ``camvid:val``),
the mean IoU of both against it. ``write_report`` puts it beside the exported file as
``<path>.parity.json`` and ``.parity.txt``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfseg.inference.evaluation import truth_under
from tfseg.inference.metadata import ModelInfo, info_of
from tfseg.inference.sources import Sample

PERCENT = 100.0
# The DenseCRF options an exported file's metadata records for the CRF it holds.
CRF_OPTIONS = ("gaussian_sxy", "gaussian_compat", "bilateral_sxy", "bilateral_srgb", "bilateral_compat", "iterations",
               "gaussian_filter", "downsample")


def export_crf(model, crf):
    """``crf`` for an export of ``model``: a mode ("exact", "fast"; ``True``: "exact") means the zoo card's tuned
    options of that mode for a zoo model, else tfseg's."""
    from tfseg.inference.runners import requested_crf

    info = info_of(model)
    if crf not in (None, False) and info is not None and not info.protocol.is_whole_image:
        raise ValueError(f"{model.name} is fed {info.protocol.describe()}: a CRF inside the file would refine the "
                         "padded canvas, not the image; export without crf= (--crf) and refine after it with "
                         "tfseg.predict(..., crf=) (tfseg predict --crf)")
    return requested_crf(crf, info)


def exported_info(model, info, crf_layer):
    """The ``ModelInfo`` an exported file carries: ``info`` or the model's, with the CRF it holds."""
    info = info or info_of(model) or ModelInfo(source=model.name)
    crf = None
    if crf_layer is not None:
        config = crf_layer.get_config()
        crf = {key: config[key] for key in CRF_OPTIONS}
    return info.replace(crf=crf)


def common_input_size(runners):
    """The fixed (H, W) that one of the runners needs, or None; two different ones raise."""
    sizes = {r.input_size for r in runners if r.input_size is not None}
    if len(sizes) > 1:
        raise ValueError(f"the models to compare have different fixed input sizes {sorted(sizes)}")
    return sizes.pop() if sizes else None


def _resized(sample, size):
    """``sample`` at a fixed-size graph's ``size``, resized as inference and calibration resize."""
    from tfseg.inference.modes import resized_labels, resized_pixels

    if size is None or sample.image.shape[:2] == tuple(size):
        return sample
    label = None if sample.label is None else resized_labels(sample.label, size)
    return Sample(sample.name, resized_pixels(sample.image, size), label, sample.ignore_label)


class _Scores:
    """Streaming confusion matrix and the project's mean-IoU convention (tfseg.metrics)."""

    def __init__(self, num_classes, ignore_label=None):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.confusion = np.zeros((num_classes, num_classes), np.float64)

    def add(self, truth, predicted):
        from tfseg.metrics import confusion_matrix

        self.confusion += confusion_matrix(truth, predicted, self.num_classes, ignore_label=self.ignore_label).numpy()

    def mean_iou(self):
        from tfseg.metrics import scores_from_confusion

        return float(scores_from_confusion(self.confusion)["mean_iou"].numpy())


def parity_report(reference, exports, samples, *, source="", labels=None):
    """Compare each ``Predictor`` of ``exports`` (``{format label: predictor}``) with ``reference`` on ``samples``.

    ``labels``: class count for the mean IoU (default: the reference's output channels).
    Returns a JSON-ready dict.
    """
    samples = list(samples)
    if not samples:
        raise ValueError("parity needs at least one image")
    size = common_input_size([reference.runner, *(p.runner for p in exports.values())])
    stretch = size if reference.protocol.is_whole_image else None
    labels = labels or reference.num_classes
    has_truth = all(s.label is not None for s in samples)
    ignore = samples[0].ignore_label if has_truth else None
    rows = {name: {"agree": 0, "pixels": 0, "image_agreement": [], "max_probability_difference": 0.0,
                   "vs_reference": _Scores(labels), "truth": _Scores(labels, ignore) if has_truth else None}
            for name in exports}
    reference_truth = _Scores(labels, ignore) if has_truth else None
    for sample in samples:
        sample = _resized(sample, stretch)
        ref_labels, ref_probabilities = reference(sample.image)
        truth = truth_under(sample.label, ref_labels.shape) if has_truth else None
        if has_truth:
            reference_truth.add(truth, ref_labels)
        for name, predictor in exports.items():
            got_labels, got_probabilities = predictor(sample.image)
            if got_labels.shape != ref_labels.shape:
                raise ValueError(f"{name} gives labels of shape {got_labels.shape}, the reference {ref_labels.shape}")
            row = rows[name]
            agree = int(np.sum(got_labels == ref_labels))
            row["agree"] += agree
            row["pixels"] += ref_labels.size
            row["image_agreement"].append(agree / ref_labels.size)
            difference = float(np.max(np.abs(got_probabilities - ref_probabilities)))
            row["max_probability_difference"] = max(row["max_probability_difference"], difference)
            row["vs_reference"].add(ref_labels, got_labels)
            if has_truth:
                row["truth"].add(truth, got_labels)
    report = {
        "reference": reference.runner.format,
        "images": {"source": source, "count": len(samples), "size": list(stretch) if stretch else "as given"},
        "protocol": reference.protocol.describe(),
        "classes": labels,
        "formats": {},
    }
    if has_truth:
        report["reference_mean_iou"] = reference_truth.mean_iou() * PERCENT
    for name, row in rows.items():
        entry = {
            "file": exports[name].runner.name,
            "pixel_agreement": row["agree"] / row["pixels"] * PERCENT,
            "worst_image_agreement": min(row["image_agreement"]) * PERCENT,
            "mean_iou_vs_reference": row["vs_reference"].mean_iou() * PERCENT,
            "max_probability_difference": row["max_probability_difference"],
        }
        if has_truth:
            entry["mean_iou"] = row["truth"].mean_iou() * PERCENT
            entry["mean_iou_change"] = entry["mean_iou"] - report["reference_mean_iou"]
        report["formats"][name] = entry
    return report


def report_text(report):
    """A short text table of a parity report."""
    images = report["images"]
    size = images["size"] if isinstance(images["size"], str) else "x".join(map(str, images["size"]))
    lines = [f"parity against {report['reference']} on {images['count']} images from {images['source']} "
             f"(size: {size}, {report['classes']} classes; {report['protocol']})"]
    if "calibration" in report:
        calibration = report["calibration"]
        lines.append(f"int8 calibration: {calibration['count']} images of {calibration['source']}")
    truth = "reference_mean_iou" in report
    header = f"{'format':<22}{'pixels agreeing':>17}{'worst image':>13}{'mIoU vs ref':>13}{'max |dp|':>10}"
    if truth:
        header += f"{'mIoU (truth)':>14}{'change':>9}"
    lines += [header, "-" * len(header)]
    if truth:
        lines.append(f"{report['reference'] + ' (reference)':<22}{'':>17}{'':>13}{'':>13}{'':>10}"
                     f"{report['reference_mean_iou']:>14.2f}{'':>9}")
    for name, entry in report["formats"].items():
        line = (f"{name:<22}{entry['pixel_agreement']:>16.3f}%{entry['worst_image_agreement']:>12.3f}%"
                f"{entry['mean_iou_vs_reference']:>13.2f}{entry['max_probability_difference']:>10.4f}")
        if truth:
            line += f"{entry['mean_iou']:>14.2f}{entry['mean_iou_change']:>+9.2f}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def report_paths(export_path):
    export_path = Path(export_path)
    return (export_path.with_name(export_path.name + ".parity.json"),
            export_path.with_name(export_path.name + ".parity.txt"))


def write_report(report, export_path):
    """Write ``<export_path>.parity.json`` and ``.parity.txt``; return their paths."""
    json_path, text_path = report_paths(export_path)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    text_path.write_text(report_text(report))
    return json_path, text_path


DEFAULT_SYNTHETIC_SIZE = (96, 128)


def parity_samples(source=None, limit=None, size=None, reader_options=None):
    """Samples to check parity on: ``source`` (see ``tfseg.inference.sources``), else synthetic images.

    Returns ``(samples, description)``.
    """
    from tfseg.inference.sources import describe, load_samples, synthetic_samples

    if source is None:
        count = limit or 4
        return synthetic_samples(count, size or DEFAULT_SYNTHETIC_SIZE), f"synthetic images ({count})"
    return load_samples(source, limit, reader_options=reader_options), describe(source, limit)


def check_and_report(model, crf_layer, exports, export_path, source=None, limit=None, calibration=None):
    """Parity of the exported ``exports`` (``{label: runner}``) against the Keras ``model`` (with ``crf_layer``)
    on ``source``, written beside ``export_path``; returns the report. ``calibration``: the int8
    calibration sample, recorded in the report."""
    from tfseg.inference.predict import Predictor
    from tfseg.inference.sources import parse_dataset_split

    reference = Predictor(model, crf=crf_layer)
    predictors = {label: Predictor(runner) for label, runner in exports.items()}
    split = parse_dataset_split(source)
    info = reference.info
    options = dict(info.dataset_options) if split is not None and split.dataset == info.dataset else None
    size = common_input_size([reference.runner, *exports.values()])
    samples, description = parity_samples(source, limit, size if reference.protocol.is_whole_image else None, options)
    report = parity_report(reference, predictors, samples, source=description)
    if calibration is not None:
        report["calibration"] = calibration
    write_report(report, export_path)
    return report

"""``tfseg demo``: the user's story, offline on a fresh clone.

1. load the pretrained CamVid model from the zoo (weights in the repository, sha256-checked);
2. segment the CamVid sample images shipped in ``zoo/samples`` (or ``--images``);
3. refine them with the dense CRF, with the parameters tuned for the model on its card;
4. export the model to TFLite (builtin ops) and check that its labels agree with Keras;
5. fine-tune it to a ground robot's classes (drivable road, walkable pavement, everything else) on a
   few CamVid train frames with the backbone frozen, score it on frames of a sequence the zoo model
   never trained on beside the 11-class model's predictions merged into the same classes, and export
   the fine-tuned model to TFLite;
6. write the report folder: overlays, label maps, ``model.tflite`` and ``robot.tflite`` with their
   parity reports, ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tfseg.commands.arguments import reports_errors

DEMO_MODEL = "camvid_unet"
FINE_TUNE_STEPS = 60
STAGES = ("load the zoo model", "segment the samples", "refine with the CRF", "export to TFLite and check parity",
          "fine-tune to a robot's classes", "write the report")


def _segment(model, card, images, out):
    """Label maps without and with the card's CRF: ``<stem>_labels.png``, ``<stem>_overlay.png`` (with the
    CRF) and ``<stem>_compare.png`` (image | model | model + CRF)."""
    import numpy as np

    from tfseg.inference import Predictor
    from tfseg.inference.outputs import write_prediction
    from tfseg.visualize import overlay, write_rgb

    plain, refined = Predictor(model), Predictor(model, crf="exact")
    rows = []
    for path, image in images.items():
        labels, _ = plain(image)
        crf_labels, _ = refined(image)
        write_prediction(out, path.stem, image, crf_labels, card.palette)
        write_rgb(out / f"{path.stem}_compare.png", np.concatenate(
            [image, overlay(image, labels, card.palette), overlay(image, crf_labels, card.palette)], axis=1))
        shares = np.bincount(crf_labels.ravel(), minlength=card.num_classes) / crf_labels.size
        rows.append({"image": path.name, "crf_changed_pixels": float((labels != crf_labels).mean()),
                     "class_shares_with_crf": {n: round(float(s), 4) for n, s in zip(card.class_names, shares) if s}})
    return rows


def _fine_tune(name, steps, card, out, samples_dir, threads):
    """The robot's classes: fine-tune, score on held-out frames beside the merged 11 classes, export."""
    from tfseg import export
    from tfseg.zoo.finetune import robot_fine_tuning

    model, result = robot_fine_tuning(name, steps)
    report = export.tflite(model, out / "robot.tflite", input_size=card.input_size, parity_data=str(samples_dir),
                           num_threads=threads)
    result["tflite"] = {"file": "robot.tflite",
                        "pixel_agreement_with_keras": report["formats"]["tflite"]["pixel_agreement"]}
    return result


@reports_errors
def run(args):
    from tfseg import export, zoo
    from tfseg.commands.progress import Progress
    from tfseg.inference.sources import image_files, read_image

    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples_dir = Path(args.images) if args.images else zoo.cards.zoo_dir() / "samples"
    images = {path: read_image(path) for path in image_files(samples_dir)}
    metrics = {"model": args.model}
    with Progress(len(STAGES), "stages") as progress:
        def stage(index, text):
            print(f"\n[{index + 1}/{len(STAGES)}] {STAGES[index]}: {text}", flush=True)

        card = zoo.card(args.model)
        model = zoo.load(args.model)
        held_out = card.measured("heldout_mean_iou")
        stage(0, f"{card.title}, {model.count_params():,} parameters; card: mean IoU "
                 + (f"{held_out} on a held-out sequence (with CRF {card.measured('heldout_mean_iou_crf')}), "
                    if held_out is not None else "")
                 + f"{card.measured('val_mean_iou')} on val (with CRF {card.measured('val_mean_iou_crf')})")
        metrics["card"] = {e["metric"]: e["value"] for e in card.data.get("measured") or () if e["metric"] != "val_class_iou"}
        progress.update()

        stage(1, f"{len(images)} images from {samples_dir}")
        progress.update()
        metrics["crf_parameters"] = card.crf
        metrics["samples"] = _segment(model, card, images, out)
        changed = sum(r["crf_changed_pixels"] for r in metrics["samples"]) / len(images)
        stage(2, f"the CRF changed {100 * changed:.1f}% of the pixels; see *_compare.png (image | model | model + CRF)")
        progress.update()

        report = export.tflite(model, out / "model.tflite", input_size=card.input_size, parity_data=str(samples_dir),
                               num_threads=args.threads)
        parity = report["formats"]["tflite"]
        metrics["tflite"] = {"file": "model.tflite", "input_size": card.input_size,
                             "pixel_agreement_with_keras": parity["pixel_agreement"],
                             "worst_image_agreement": parity["worst_image_agreement"],
                             "mean_iou_against_keras_labels": parity["mean_iou_vs_reference"]}
        stage(3, f"model.tflite labels agree with Keras on {parity['pixel_agreement']:.3f}% of the sample pixels")
        progress.update()

        if args.steps:
            tuned = metrics["fine_tune"] = _fine_tune(args.model, args.steps, card, out, samples_dir, args.threads)
            stage(4, f"{args.steps} steps on {', '.join(tuned['classes'])} ({tuned['train_images']} CamVid train "
                     f"frames, backbone frozen); mean IoU on {tuned['eval_images']} frames of the "
                     f"{tuned['eval_split']}: fine-tuned {100 * tuned['fine_tuned']['mean_iou']:.2f}, the 11-class "
                     f"model's predictions merged {100 * tuned['merged_11_class']['mean_iou']:.2f}; robot.tflite "
                     f"labels agree with Keras on {tuned['tflite']['pixel_agreement_with_keras']:.3f}% of the sample "
                     "pixels")
        else:
            stage(4, "skipped (--steps 0)")
        progress.update()

        metrics["seconds"] = round(time.time() - started, 1)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        stage(5, f"{out}: metrics.json, *_compare.png, *_overlay.png, *_labels.png, model.tflite and robot.tflite "
                 f"(+ parity reports), {metrics['seconds']:.0f} s")
        progress.update()
    return 0


def register(subparsers):
    parser = subparsers.add_parser(
        "demo", help="the pretrained CamVid model end to end: segment, CRF, TFLite parity, fine-tune; a report")
    parser.add_argument("--out", default="tfseg-demo", help="report folder (default ./tfseg-demo)")
    parser.add_argument("--model", default=DEMO_MODEL, help=f"zoo name (default {DEMO_MODEL})")
    parser.add_argument("--images", help="a folder of images to segment instead of zoo/samples")
    parser.add_argument("--steps", type=int, default=FINE_TUNE_STEPS,
                        help=f"fine-tuning steps on the robot's classes (default {FINE_TUNE_STEPS}; 0 skips)")
    parser.add_argument("--threads", type=int, default=2, help="TFLite interpreter threads")
    parser.set_defaults(func=run)

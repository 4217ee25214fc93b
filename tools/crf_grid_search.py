"""Grid search of dense-CRF parameters on a few CamVid val images, DeepLab style, then val mIoU.

DeepLab (Chen et al. 2015) fixed the Gaussian term and searched the bilateral weight and
standard deviations on a small subset of val with 10 mean-field iterations. We do the same on
``--search-images`` val images (spread evenly over the split), with unaries made from the
ground truth by ``corrupted_unary`` (tools/crf_unaries.py: boundary blur of a stride-8 network
plus blob noise), since no trained network is involved here. Then the chosen parameters are
applied to ``--eval-images`` val images spread evenly over the split (all 101 with
``--eval-images 0``) and to their held-out part (minus the search images), and the mean IoU before (argmax of the
unary) and after the CRF is printed.

mIoU: confusion matrix n_ij (truth i, prediction j) over non-void pixels, IoU_i =
n_ii / (t_i + sum_j n_ji - n_ii); classes absent from both truth and prediction are left out
of the mean.

    python tools/crf_grid_search.py [--search-images 4] [--eval-images 40] [--iterations 10] [--batch 2]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # crf_unaries, also when loaded by path

GAUSSIAN = dict(gaussian_sxy=3.0, gaussian_compat=3.0)  # fixed, as DeepLab fixed its position term
GRID = dict(bilateral_compat=[1.0, 3.0, 5.0], bilateral_sxy=[20.0, 40.0, 80.0], bilateral_srgb=[3.0, 5.0, 10.0])
README = dict(GAUSSIAN, bilateral_sxy=80.0, bilateral_srgb=13.0, bilateral_compat=10.0)
# The search's result on this machine (tools/results/crf.md), used by tests/test_crf.py.
CHOSEN = dict(GAUSSIAN, bilateral_compat=3.0, bilateral_sxy=20.0, bilateral_srgb=3.0)


def confusion_matrix(truth, prediction, num_classes, ignore_label):
    """n[i, j]: pixels of true class i predicted as j, void pixels ignored (numpy only)."""
    valid = truth != ignore_label
    index = truth[valid].astype(np.int64) * num_classes + prediction[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def mean_iou(confusion):
    """Mean over classes present in truth or prediction of n_ii / (t_i + sum_j n_ji - n_ii)."""
    confusion = confusion.astype(np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=1) + confusion.sum(axis=0) - true_positive
    present = union > 0
    return float(np.mean(true_positive[present] / union[present]))


def make_unaries(labels, indices, num_classes, ignore_label):
    from crf_unaries import corrupted_unary

    return np.stack([corrupted_unary(labels[i], num_classes, ignore_label=ignore_label, seed=int(i))
                     for i in indices])


def crf_confusions(images, labels, unaries, params, iterations, batch, num_classes, ignore_label):
    """Per-image confusion matrices of the CRF's labels (``batch`` images per dense_crf call)."""
    import tensorflow as tf

    from tfseg.crf import dense_crf

    run = tf.function(lambda im, un: tf.argmax(dense_crf(im, un, iterations=iterations, **params), axis=-1))
    confusions = []
    for start in range(0, len(images), batch):
        prediction = run(tf.constant(images[start:start + batch]), tf.constant(unaries[start:start + batch]))
        for truth, predicted in zip(labels[start:start + batch], prediction.numpy()):
            confusions.append(confusion_matrix(truth, predicted, num_classes, ignore_label))
    return confusions


def crf_confusion(images, labels, unaries, params, iterations, batch, num_classes, ignore_label):
    return sum(crf_confusions(images, labels, unaries, params, iterations, batch, num_classes, ignore_label))


def unary_confusion(labels, unaries, num_classes, ignore_label):
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for truth, unary in zip(labels, unaries):
        confusion += confusion_matrix(truth, unary.argmin(-1), num_classes, ignore_label)
    return confusion


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search-images", type=int, default=4)
    parser.add_argument("--eval-images", type=int, default=40,
                        help="val images (evenly spread, search images included) for before/after; 0: all 101")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2, help="images per dense_crf call")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on the first N val images only")
    args = parser.parse_args(argv)

    from tfseg.data.camvid import IGNORE_LABEL, NUM_CLASSES, load_split

    images, labels = load_split("val", limit=args.limit)
    count = len(images)
    search = np.unique(np.linspace(0, count - 1, args.search_images).round().astype(int))
    evaluated = np.arange(count) if args.eval_images in (0, None) or args.eval_images >= count else np.unique(
        np.concatenate([search, np.linspace(0, count - 1, args.eval_images).round().astype(int)]))
    held_out = np.setdiff1d(evaluated, search)
    unaries = make_unaries(labels, np.arange(count), NUM_CLASSES, IGNORE_LABEL)
    print(f"CamVid val: {count} images; search on {len(search)} (indices {search.tolist()}); "
          f"{args.iterations} iterations; Gaussian fixed at {GAUSSIAN}")

    base = mean_iou(unary_confusion(labels[search], unaries[search], NUM_CLASSES, IGNORE_LABEL))
    print(f"search set, unary argmax: mIoU {100 * base:.2f}")
    results = []
    started = time.perf_counter()
    for values in itertools.product(*GRID.values()):
        params = dict(GAUSSIAN, **dict(zip(GRID, values)))
        score = mean_iou(crf_confusion(images[search], labels[search], unaries[search], params, args.iterations,
                                       args.batch, NUM_CLASSES, IGNORE_LABEL))
        results.append((score, params))
        print(f"  w={values[0]:>4} sxy={values[1]:>4} srgb={values[2]:>4}: mIoU {100 * score:.2f}", flush=True)
    best_score, best = max(results, key=lambda r: r[0])
    print(f"grid of {len(results)} in {time.perf_counter() - started:.0f} s; best on the search set: "
          f"{100 * best_score:.2f} with {best}")

    readme = mean_iou(crf_confusion(images[search], labels[search], unaries[search], README, args.iterations,
                                    args.batch, NUM_CLASSES, IGNORE_LABEL))
    print(f"search set with pydensecrf's README parameters {README}: mIoU {100 * readme:.2f}")

    per_image = dict(zip(evaluated, crf_confusions(images[evaluated], labels[evaluated], unaries[evaluated], best,
                                                   args.iterations, args.batch, NUM_CLASSES, IGNORE_LABEL)))
    print(f"evaluated val images: {evaluated.tolist()}")
    for name, subset in (("evaluated val", evaluated), ("held-out val", held_out)):
        before = mean_iou(unary_confusion(labels[subset], unaries[subset], NUM_CLASSES, IGNORE_LABEL))
        after = mean_iou(sum(per_image[i] for i in subset))
        print(f"{name} ({len(subset)} images): mIoU before CRF {100 * before:.2f}, after CRF {100 * after:.2f}",
              flush=True)


if __name__ == "__main__":
    main()

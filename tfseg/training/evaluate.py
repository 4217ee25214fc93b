"""Validation scores during and after training: ``evaluate_source`` over ``tfseg.inference.evaluation``.

Inference modes, batching and the scores live in ``tfseg.inference``; this is the entry point
``tfseg.training.train`` calls with the run's model, val split and strategy.
"""

from __future__ import annotations

from tfseg.inference.evaluation import evaluate
from tfseg.inference.modes import InferenceOptions


def evaluate_source(model, source, *, batch_size=1, strategy=None, crf=None, **inference):
    """``tfseg.inference.evaluation.EvaluationResult`` of ``model`` on an ``ExampleSource`` (a dataset split).

    ``inference``: ``scales``, ``flip``, ``window``, ``window_stride``, ``protocol``
    (``tfseg.inference.modes.InferenceOptions``). Scores do not depend on ``batch_size`` or on
    the strategy's replica count (``tfseg.inference.evaluation``).
    """
    return evaluate(model, source, batch_size=batch_size, strategy=strategy, crf=crf,
                    options=InferenceOptions(**inference))

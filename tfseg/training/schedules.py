"""Learning-rate schedules: DeepLab's poly decay, with an optional linear warm-up."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfseg")
class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``(base - end) * (1 - step / decay_steps) ** power + end`` after ``warmup_steps`` of linear warm-up.

    The official DeepLab schedule (``learning_policy="poly"``, power 0.9; Chen et al. 2017).
    """

    def __init__(self, base_learning_rate, decay_steps, power=0.9, end_learning_rate=0.0, warmup_steps=0):
        self.base_learning_rate = float(base_learning_rate)
        self.decay_steps = int(decay_steps)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)
        self.warmup_steps = int(warmup_steps)
        if self.decay_steps < 1:
            raise ValueError(f"decay_steps={decay_steps!r} must be positive")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = tf.minimum(step, float(self.decay_steps)) / float(self.decay_steps)
        rate = (self.base_learning_rate - self.end_learning_rate) * (1.0 - progress) ** self.power
        rate += self.end_learning_rate
        if self.warmup_steps > 0:
            warm = self.base_learning_rate * (step + 1.0) / float(self.warmup_steps)
            rate = tf.where(step < self.warmup_steps, tf.minimum(warm, rate), rate)
        return rate

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate, "decay_steps": self.decay_steps, "power": self.power,
            "end_learning_rate": self.end_learning_rate, "warmup_steps": self.warmup_steps,
        }

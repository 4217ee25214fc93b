"""Training configuration as data: a dataclass read from a YAML/JSON file and/or flags.

Defaults follow the official DeepLab recipe (``research/deeplab/train.py``): crop 513x513, poly
learning rate with power 0.9, SGD with momentum 0.9, weight decay 4e-5 (AdamW: none unless
``decoupled_weight_decay``), base rate 0.007, random
scale 0.5-2.0 and flips. An unknown key, in a file or on the command line, fails naming it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


SGD_WEIGHT_DECAY = 4e-5  # the official DeepLab recipe's L2 coefficient


@dataclasses.dataclass
class TrainConfig:
    # what to train
    model: str = "deeplab_v3plus"
    model_options: dict = dataclasses.field(default_factory=dict)
    pretrained: str | None = None  # a zoo name: start from its weights, the classifier replaced for the dataset
    pretrained_weights: str | None = None  # with pretrained: a weights file for the card's model, not the card's
    dataset: str = "synthetic"
    data_root: str | None = None
    dataset_options: dict = dataclasses.field(default_factory=dict)
    train_split: str = "train"
    val_split: str | None = "val"
    skip_damaged: bool = False  # leave out (and count) files that are no whole image, instead of stopping
    # input
    crop_size: tuple = (513, 513)
    batch_size: int = 8  # global, across replicas
    scale_range: tuple = (0.5, 2.0)
    flip: bool = True
    color_jitter: dict | None = None  # {brightness, contrast, saturation, hue} strengths (tfseg.data.augment.color_jitter)
    # per-class loss weights, or a name in tfseg.data.pipeline.CLASS_WEIGHTINGS: "median_frequency" (SegNet's
    # balancing) or "sqrt_median_frequency" (its square root, milder)
    class_weights: list | str | None = None
    # share of crops placed on a pixel of a class drawn by rarity (median-frequency weights) among the
    # image's classes (tfseg.data.augment.rare_class_crop); 0: uniform crops (DeepLab's)
    rare_class_crop: float = 0.0
    label_smoothing: float = 0.0
    # schedule
    steps: int | None = None  # batches to train on (the run's steps); None: epochs * steps per epoch
    epochs: int | None = None
    optimizer: str = "sgd"  # sgd (with momentum) | adamw
    learning_rate: float = 0.007
    end_learning_rate: float = 0.0
    poly_power: float = 0.9
    warmup_steps: int = 0
    momentum: float = 0.9
    # L2 coefficient on convolution/dense kernels (slim's l2_regularizer); None: 4e-5 with sgd, 0 with adamw
    weight_decay: float | None = None
    decoupled_weight_decay: float = 0.0  # AdamW only: w -= learning_rate * value * w each step (Loshchilov & Hutter)
    # fine-tuning
    freeze_backbone: bool = False
    freeze_batch_norm: bool = False
    batch_norm_momentum: float | str | None = "auto"  # "auto", None (the builders' values) or a number
    # execution
    strategy: str = "auto"  # auto | default | mirrored | multi_worker | tpu
    logical_cpus: int = 0  # split the CPU into this many logical devices (for mirrored tests on a CPU)
    cluster_join_timeout: float = 600.0  # multi_worker: seconds for every worker to join, set up and restore
    mixed_precision: str | None = None  # None | mixed_float16 | mixed_bfloat16
    initial_loss_scale: float = 2.0**15  # mixed_float16: the dynamic loss scale's start (Keras's default)
    jit_compile: bool = False  # XLA-compile the training step
    seed: int = 0
    out_dir: str = "runs/train"
    checkpoint_every: int = 100  # steps
    eval_every_epochs: int = 0  # 0: evaluate on val_split at the end only
    eval_batch_size: int = 2
    eval_scales: tuple = (1.0,)  # inference scales of the val evaluations (0.5: the image at half size, scored at full size)
    verbose: int = 1  # Keras progress bar: 1 bar, 2 a line per epoch, 0 silent

    def __post_init__(self):
        self.crop_size = _pair(self.crop_size, "crop_size")
        self.scale_range = tuple(float(v) for v in self.scale_range)
        self.eval_scales = tuple(float(v) for v in ([self.eval_scales] if isinstance(self.eval_scales, (int, float))
                                                    else self.eval_scales))
        if not self.eval_scales or min(self.eval_scales) <= 0:
            raise ValueError(f"eval_scales={self.eval_scales!r}: expected positive scales such as [1.0] or [0.5]")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range={self.scale_range!r}: expected (low, high) with 0 < low <= high")
        _check_choice("optimizer", self.optimizer, ("sgd", "adamw"))
        _check_choice("strategy", self.strategy, ("auto", "default", "mirrored", "multi_worker", "tpu"))
        _check_choice("mixed_precision", self.mixed_precision, (None, "mixed_float16", "mixed_bfloat16"))
        for key in ("batch_size", "checkpoint_every", "eval_batch_size", "steps", "epochs"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{key}={value!r} must be a positive integer")
        for key in ("learning_rate", "initial_loss_scale", "cluster_join_timeout"):
            if not float(getattr(self, key)) > 0:
                raise ValueError(f"{key}={getattr(self, key)!r} must be positive")
        for key in ("warmup_steps", "eval_every_epochs", "logical_cpus"):
            if int(getattr(self, key)) < 0:
                raise ValueError(f"{key}={getattr(self, key)!r} must be 0 or more")
        if isinstance(self.batch_norm_momentum, str) and self.batch_norm_momentum != "auto":
            raise ValueError(f"batch_norm_momentum={self.batch_norm_momentum!r}: expected 'auto', None or a number")
        if isinstance(self.class_weights, str):
            from tfseg.data.pipeline import CLASS_WEIGHTINGS

            _check_choice("class_weights", self.class_weights, (*CLASS_WEIGHTINGS, "a list of numbers", None))
        from tfseg.data.augment import check_color_jitter

        self.color_jitter = check_color_jitter(self.color_jitter)
        if isinstance(self.rare_class_crop, bool) or not 0.0 <= float(self.rare_class_crop) <= 1.0:
            raise ValueError(f"rare_class_crop={self.rare_class_crop!r}: expected a probability, 0 <= value <= 1")
        if not 0.0 <= float(self.label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing!r}: expected 0 <= value < 1")
        if self.decoupled_weight_decay and self.optimizer != "adamw":
            raise ValueError(
                f"decoupled_weight_decay={self.decoupled_weight_decay!r} applies to optimizer 'adamw' only; "
                f"use weight_decay (an L2 coefficient) with optimizer {self.optimizer!r}"
            )
        if self.weight_decay is None:
            self.weight_decay = SGD_WEIGHT_DECAY if self.optimizer == "sgd" else 0.0
        if self.weight_decay and self.optimizer == "adamw":
            raise ValueError(
                f"weight_decay={self.weight_decay!r} (an L2 term in the loss) with optimizer 'adamw': AdamW decays "
                "with decoupled_weight_decay; set weight_decay to 0"
            )
        if self.jit_compile and (self.strategy in ("mirrored", "multi_worker") or self.logical_cpus > 1):
            raise ValueError(
                f"jit_compile=True with strategy {self.strategy!r}"
                + (f" over logical_cpus={self.logical_cpus}" if self.logical_cpus > 1 else "")
                + ": XLA compiles the step for one device only here (replicas fail reading each other's variables); "
                "use strategy 'default' with jit_compile, or jit_compile=false"
            )
        if self.pretrained_weights is not None:
            if self.pretrained is None:
                raise ValueError(
                    f"pretrained_weights={self.pretrained_weights!r} needs pretrained=ZOO_NAME (the card whose "
                    "architecture the file holds weights for)"
                )
            if not Path(self.pretrained_weights).exists():
                raise ValueError(f"pretrained_weights={self.pretrained_weights!r}: no such file or folder")
        if self.pretrained is not None:
            self._take_architecture_from_card()
        if self.steps is None and self.epochs is None:
            raise ValueError("give the length of training: steps (tfseg train --steps N) or epochs (--epochs N)")

    def _take_architecture_from_card(self):
        from tfseg.catalogue import catalogue

        zoo = catalogue()

        card = zoo.card(self.pretrained)
        given_model = self.model not in (TrainConfig.model, card.builder)
        given_options = self.model_options and dict(self.model_options) != card.options
        if given_model or given_options:
            raise ValueError(
                f"pretrained={self.pretrained!r} is {card.builder} with {card.options}; leave model and model_options "
                f"unset (got model={self.model!r}, model_options={self.model_options!r})"
            )
        self.model, self.model_options = card.builder, card.options

    def to_dict(self):
        return dataclasses.asdict(self)


def _pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    if isinstance(value, str):
        value = [int(v) for v in value.lower().replace("x", ",").split(",")]
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{name}={value!r}: expected (height, width) or 'HxW'")
    return value


def _check_choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not supported; valid: {list(valid)}")


def config_keys():
    return [f.name for f in dataclasses.fields(TrainConfig)]


def read_config_file(path):
    """The dict in a YAML or JSON file (YAML needs PyYAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:
            raise ImportError(f"reading {path} needs PyYAML (pip install pyyaml), or give a .json file") from error
        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of option names to values")
    return data


def load_config(path=None, **overrides):
    """``TrainConfig`` from an optional file, then ``overrides`` (``val_split=None`` means no validation)."""
    return config_from(path, overrides)


# Fine-tuning a zoo model (``pretrained``): keys taken from the card's own training recipe
# (``zoo/<name>/train.yaml``) unless given, the learning rate divided by FINE_TUNING_LR_DIVISOR.
RECIPE_KEYS = ("optimizer", "scale_range", "color_jitter", "class_weights", "rare_class_crop", "decoupled_weight_decay", "weight_decay",
               "momentum", "label_smoothing")
FINE_TUNING_LR_DIVISOR = 20
# Cards without a recipe (the official DeepLab checkpoints): the official fine-tuning settings
# (research/deeplab: base learning rate 1e-4 when fine-tuning, fine_tune_batch_norm=False for small batches).
OFFICIAL_FINE_TUNING = {"optimizer": "sgd", "learning_rate": 1e-4, "weight_decay": 4e-5}


def fine_tuning_defaults(name):
    """The defaults ``tfseg train --pretrained NAME`` uses for keys the user does not give.

    Fine-tuning keeps what the model knows when it continues the way the model was trained: the
    card's optimizer, augmentation and class weighting, at 1/20 of its learning rate, without
    warm-up, with batch norm frozen (small CPU batches would replace its statistics; the official
    DeepLab code also fine-tunes with frozen batch norm below 12 images per batch). Measured on the
    CamVid DeepLab v3+: SGD at 0.007, re-estimated batch norm and 0.5-2.0 scaling took val mean
    IoU from 47.0 to 5 in 10 steps of batch 2; these defaults keep it (tools/results/camvid.md).
    """
    from tfseg.catalogue import catalogue

    zoo = catalogue()

    card = zoo.card(name)
    recipe_file = card.recipe_file()
    defaults = {"warmup_steps": 0, "freeze_batch_norm": True, "batch_norm_momentum": None}
    if recipe_file is None or not recipe_file.is_file():
        return {**defaults, **OFFICIAL_FINE_TUNING}
    recipe = read_config_file(recipe_file)
    defaults.update({key: recipe[key] for key in RECIPE_KEYS if key in recipe})
    image_scale = float(card.data["training"].get("image_scale", 1.0))
    if "scale_range" in defaults and image_scale != 1.0:
        # A half-size run packed into a full-size model (U-Net input_stride 2): the card's model takes
        # full-size images, so the recipe's scales of the full-size image are divided by image_scale.
        defaults["scale_range"] = [float(s) / image_scale for s in defaults["scale_range"]]
    defaults["learning_rate"] = float(recipe.get("learning_rate", TrainConfig.learning_rate)) / FINE_TUNING_LR_DIVISOR
    return defaults


def config_from(path, overrides):
    """``TrainConfig`` from an optional file, then every key of ``overrides`` (None included: ``class_weights=None``).

    With ``pretrained`` (a zoo name), keys given nowhere take :func:`fine_tuning_defaults`.
    """
    data = read_config_file(path) if path else {}
    where = f"config file {path}" if path else "the configuration"
    data.update(overrides)
    if data.get("pretrained"):
        data = {**fine_tuning_defaults(data["pretrained"]), **data}
    unknown = sorted(set(data) - set(config_keys()))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(config_keys())}")
    return TrainConfig(**data)

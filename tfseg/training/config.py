"""Training configuration as data: a dataclass read from a YAML/JSON file and/or flags.

Defaults follow the official DeepLab recipe (``research/deeplab/train.py``): crop 513x513, poly
learning rate with power 0.9, SGD with momentum 0.9, weight decay 4e-5, base rate 0.007, random
scale 0.5-2.0 and flips. An unknown key, in a file or on the command line, fails naming it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


@dataclasses.dataclass
class TrainConfig:
    # what to train
    model: str = "deeplab_v3plus"
    model_options: dict = dataclasses.field(default_factory=dict)
    pretrained: str | None = None  # a zoo name: start from its weights, the classifier replaced for the dataset
    dataset: str = "synthetic"
    data_root: str | None = None
    dataset_options: dict = dataclasses.field(default_factory=dict)
    train_split: str = "train"
    val_split: str | None = "val"
    # input
    crop_size: tuple = (513, 513)
    batch_size: int = 8  # global, across replicas
    scale_range: tuple = (0.5, 2.0)
    flip: bool = True
    class_weights: list | str | None = None  # per-class loss weights, or "median_frequency" (SegNet's balancing)
    # schedule
    steps: int | None = None  # total optimizer steps; None: epochs * steps per epoch
    epochs: int | None = None
    optimizer: str = "sgd"  # sgd (with momentum) | adamw
    learning_rate: float = 0.007
    end_learning_rate: float = 0.0
    poly_power: float = 0.9
    warmup_steps: int = 0
    momentum: float = 0.9
    weight_decay: float = 4e-5
    # fine-tuning
    freeze_backbone: bool = False
    freeze_batch_norm: bool = False
    batch_norm_momentum: float | str | None = "auto"  # "auto", None (the builders' values) or a number
    # execution
    strategy: str = "auto"  # auto | default | mirrored | multi_worker | tpu
    logical_cpus: int = 0  # split the CPU into this many logical devices (for mirrored tests on a CPU)
    mixed_precision: str | None = None  # None | mixed_float16 | mixed_bfloat16
    seed: int = 0
    out_dir: str = "runs/train"
    checkpoint_every: int = 100  # steps
    eval_every_epochs: int = 0  # 0: evaluate on val_split at the end only
    eval_batch_size: int = 2
    verbose: int = 1  # Keras progress bar: 1 bar, 2 a line per epoch, 0 silent

    def __post_init__(self):
        self.crop_size = _pair(self.crop_size, "crop_size")
        self.scale_range = tuple(float(v) for v in self.scale_range)
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range={self.scale_range!r}: expected (low, high) with 0 < low <= high")
        _check_choice("optimizer", self.optimizer, ("sgd", "adamw"))
        _check_choice("strategy", self.strategy, ("auto", "default", "mirrored", "multi_worker", "tpu"))
        _check_choice("mixed_precision", self.mixed_precision, (None, "mixed_float16", "mixed_bfloat16"))
        for key in ("batch_size", "checkpoint_every"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key}={getattr(self, key)!r} must be a positive integer")
        if isinstance(self.batch_norm_momentum, str) and self.batch_norm_momentum != "auto":
            raise ValueError(f"batch_norm_momentum={self.batch_norm_momentum!r}: expected 'auto', None or a number")
        if isinstance(self.class_weights, str) and self.class_weights != "median_frequency":
            raise ValueError(f"class_weights={self.class_weights!r}: expected a list, 'median_frequency' or None")
        if self.pretrained is not None:
            self._take_architecture_from_card()
        if self.steps is None and self.epochs is None:
            raise ValueError("give the length of training: steps= (optimizer steps) or epochs=")

    def _take_architecture_from_card(self):
        from tfseg import zoo

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
    """``TrainConfig`` from an optional file, then ``overrides`` (None values are skipped)."""
    data = read_config_file(path) if path else {}
    where = f"config file {path}" if path else "the configuration"
    data.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(data) - set(config_keys()))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(config_keys())}")
    return TrainConfig(**data)

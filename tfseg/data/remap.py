"""New class sets from a dataset's classes: merge them (road + pavement + the rest) and pick subsets.

``merge_classes(dataset, {"drivable": ["Road"], "walkable": ["Pavement"]}, rest="other")`` is the
dataset with three classes: each new class takes the old classes listed for it, ``rest`` takes every
class not listed, and void stays void. Labels are mapped through the reader's look-up table, so every
split, source and evaluation sees the new classes. ``class_mapping`` maps a model's predictions the
same way, to score an old model on the new classes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfseg.data.palettes import generated_palette


def class_mapping(class_names, groups, rest=None):
    """``int`` array: new class id of each old class (``-1`` for old classes no group and no ``rest`` takes)."""
    index = {name: i for i, name in enumerate(class_names)}
    mapping = np.full(len(class_names), -1, np.int64)
    for new_id, (new_name, old_names) in enumerate(groups.items()):
        unknown = sorted(set(old_names) - set(index))
        if unknown:
            raise ValueError(f"merge_classes: {new_name!r} names unknown class(es) {unknown}; classes: {list(class_names)}")
        for old in old_names:
            if mapping[index[old]] != -1:
                raise ValueError(f"merge_classes: class {old!r} is listed twice")
            mapping[index[old]] = new_id
    if rest is not None:
        mapping[mapping == -1] = len(groups)
    return mapping


def merge_classes(dataset, groups, rest=None, palette=None):
    """``dataset`` with the classes ``groups`` (``{new: [old, ...]}``) and ``rest`` (every other old class).

    Without ``rest`` the old classes no group lists become void. ``palette``: one RGB colour per new
    class (default: the first old class's colour of each group, generated ones otherwise).
    """
    mapping = class_mapping(dataset.class_names, groups, rest)
    names = (*groups, *([rest] if rest is not None else ()))
    lut = np.full(256, dataset.ignore_label, np.uint8) if dataset.label_lut is None else dataset.label_lut.copy()
    old_to_new = np.where(mapping >= 0, mapping, dataset.ignore_label).astype(np.uint8)
    if dataset.label_lut is None:
        lut[: len(mapping)] = old_to_new
    else:
        valid = lut < len(mapping)
        lut[valid] = old_to_new[lut[valid]]
    if palette is None:
        palette = generated_palette(len(names))
        for new_id, old_names in enumerate(groups.values()):
            palette[new_id] = dataset.palette[dataset.class_names.index(old_names[0])]
    return dataclasses.replace(
        dataset, class_names=names, palette=np.asarray(palette, np.uint8), label_lut=lut,
        name=f"{dataset.name} ({', '.join(names)})",
    )


def subset(dataset, counts):
    """``dataset`` with each split of ``counts`` (``{split: n}``) cut to ``n`` examples spread evenly over it."""
    from tfseg.data.pipeline import spread_sample

    splits = dict(dataset.splits)
    for split, count in counts.items():
        pairs = dataset.files(split)
        splits[split] = tuple(pairs[i] for i in spread_sample(len(pairs), count))
    return dataclasses.replace(dataset, splits=splits)


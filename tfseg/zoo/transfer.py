"""Moving weights between two builds of one architecture that differ in their class count."""

from __future__ import annotations

import keras


def weighted_layers(model):
    """Every layer holding weights, nested models (backbones) flattened, by name."""
    layers = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers.update(weighted_layers(layer))
        elif layer.weights:
            layers[layer.name] = layer
    return layers


def transfer_weights(source, target):
    """Copy every layer's weights from ``source`` to ``target``; return the layers left as built.

    Layers are matched by name. A layer keeps its fresh weights only when its shapes differ and
    the difference is in the class dimension (the classifier, and in FCN the score and
    upsampling layers); any other difference, or a layer missing from ``source``, is an error
    naming the layers.
    """
    source_classes = int(source.output_shape[-1])
    target_classes = int(target.output_shape[-1])
    source_layers = weighted_layers(source)
    replaced, problems = [], []
    for name, layer in weighted_layers(target).items():
        if name not in source_layers:
            problems.append(f"{name} (not in the source model)")
            continue
        values = source_layers[name].get_weights()
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes == [v.shape for v in values]:
            layer.set_weights(values)
        elif all(_differs_only_in_classes(a, b.shape, source_classes, target_classes) for a, b in zip(shapes, values)):
            replaced.append(name)
        else:
            problems.append(f"{name} (shapes {[v.shape for v in values]} -> {shapes})")
    if problems:
        raise ValueError(f"cannot carry weights from {source.name} to {target.name}: {'; '.join(problems)}")
    if not replaced:
        raise ValueError(f"{target.name}: no layer depends on the class count; nothing to replace")
    return replaced


def _differs_only_in_classes(target_shape, source_shape, source_classes, target_classes):
    if len(target_shape) != len(source_shape):
        return False
    return all(t == s or (s == source_classes and t == target_classes) for t, s in zip(target_shape, source_shape))

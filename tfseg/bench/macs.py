"""Multiply-adds of a model at a given input size, counted on its TensorFlow graph.

Every Conv2D, DepthwiseConv2dNative, Conv2DBackpropInput (transposed convolution), MatMul and
BatchMatMul of the traced graph (nested functions included) counts output elements times the
reduction length; element-wise ops (batch norm, activations, resizes) are left out, as in the
usual GMAC figures.
"""

from __future__ import annotations

import numpy as np


def _shape(tensor):
    dims = tensor.shape.as_list() if tensor.shape.rank is not None else None
    if dims is None or any(d is None for d in dims):
        raise ValueError(f"op input {tensor.name} has no static shape ({tensor.shape}); count at a fixed input size")
    return dims


def op_macs(op):
    """Multiply-adds of one graph op (0 for ops that are not convolutions or matmuls)."""
    kind = op.type
    if kind in ("Conv2D", "Conv3D"):
        kernel = _shape(op.inputs[1])
        return int(np.prod(_shape(op.outputs[0]))) * int(np.prod(kernel[:-1]))
    if kind == "DepthwiseConv2dNative":
        kh, kw, _, _ = _shape(op.inputs[1])
        return int(np.prod(_shape(op.outputs[0]))) * kh * kw
    if kind == "Conv2DBackpropInput":  # transposed convolution: every input element meets every tap
        kh, kw, out_channels, _ = _shape(op.inputs[1])
        return int(np.prod(_shape(op.inputs[2]))) * kh * kw * out_channels
    if kind == "MatMul":
        a = _shape(op.inputs[0])
        k = a[0] if op.get_attr("transpose_a") else a[1]
        return int(np.prod(_shape(op.outputs[0]))) * k
    if kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = _shape(op.inputs[0])
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return int(np.prod(_shape(op.outputs[0]))) * k
    return 0


def graph_macs(graph):
    total = 0
    for op in graph.get_operations():
        total += op_macs(op)
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            function = graph._get_function(op.get_attr("f").name)
            total += graph_macs(function.graph)
    return total


def count_macs(model, input_size, batch_size=1):
    """Multiply-adds of ``model`` (a Keras model, float input) on a ``[batch, H, W, 3]`` input."""
    import tensorflow as tf

    height, width = input_size
    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([batch_size, height, width, 3], tf.float32))
    return graph_macs(concrete.graph)

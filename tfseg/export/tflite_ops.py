"""What a .tflite file holds: its operators, whether they are all builtins, which run in int8.

Read from the flatbuffer itself (the schema TensorFlow ships), so a file with Flex or custom ops
can be inspected without an interpreter that would refuse to load it.
"""

from __future__ import annotations

import collections
import dataclasses

# Ops that carry the arithmetic: in a full-integer model their inputs are int8.
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL")


class UnsupportedOpsError(ValueError):
    """A model that needs ops outside the TFLite builtins; ``ops`` names them."""

    def __init__(self, message, ops):
        super().__init__(message)
        self.ops = tuple(ops)


@dataclasses.dataclass(frozen=True)
class Operator:
    name: str  # builtin name ("CONV_2D") or custom code ("FlexCumprod")
    builtin: bool
    input_types: tuple  # tensor type names of the inputs ("INT8", "FLOAT32", ...)
    output_types: tuple


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _names(enum_class):
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def operators(content):
    """Every operator of every subgraph of a TFLite flatbuffer, in order."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(content, 0)
    builtin_names = _names(schema.BuiltinOperator)
    type_names = _names(schema.TensorType)
    custom = schema.BuiltinOperator.CUSTOM
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin_code = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin_code == custom:
            codes.append(((code.CustomCode() or b"?").decode(), False))
        else:
            codes.append((builtin_names.get(builtin_code, f"BUILTIN_{builtin_code}"), True))
    result = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            name, builtin = codes[op.OpcodeIndex()]
            inputs, outputs = (
                tuple(type_names[subgraph.Tensors(i).Type()] for i in indices if i >= 0)
                for indices in (op.InputsAsNumpy(), op.OutputsAsNumpy())
            )
            result.append(Operator(name, builtin, inputs, outputs))
    return result


def op_counts(content):
    """``{op name: count}`` of a TFLite flatbuffer."""
    return dict(collections.Counter(op.name for op in operators(content)))


def check_builtins_only(content, what="the TFLite model"):
    """Raise ``UnsupportedOpsError`` naming every op that is not a TFLite builtin (Flex or custom)."""
    foreign = sorted({op.name for op in operators(content) if not op.builtin})
    if foreign:
        raise UnsupportedOpsError(
            f"{what} holds ops that are not TFLite builtins: {', '.join(foreign)} "
            "(Flex ops need the TensorFlow runtime, which a robot's LiteRT build lacks)",
            foreign,
        )


def float_compute_ops(content):
    """``{op name: count}`` of compute ops (``COMPUTE_OPS``) whose result is not int8."""
    ops = [op for op in operators(content) if op.name in COMPUTE_OPS and op.output_types != ("INT8",)]
    return dict(collections.Counter(op.name for op in ops))


def converter_error_ops(error):
    """``["tf.Cumprod (at model/layer/Cumprod)", ...]`` from a TFLite ``ConverterError``."""
    found = []
    for data in getattr(error, "errors", None) or ():
        name = data.operator.name
        if not name:
            continue
        calls = [call.name for call in data.location.call if call.name]
        where = calls[0].split("@")[0] if calls else ""
        entry = f"{name} (at {where})" if where else name
        if entry not in found:
            found.append(entry)
    return found

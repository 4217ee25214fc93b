"""The CPU a benchmark ran on: its model name and the instruction sets that decide int8 and fp32 speed.

Int8 convolutions in LiteRT (XNNPACK) beat fp32 ones only with int8 dot-product instructions
(x86 VNNI, ARM SDOT): a figure such as "int8 is 2x faster" means little without this line.
"""

from __future__ import annotations

import platform

INSTRUCTION_SETS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info(path="/proc/cpuinfo"):
    """``(model name, {instruction set: present})``; the model name is ``platform.processor()`` without ``path``."""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU", {}
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", "unknown CPU"), {name: name in flags for name in INSTRUCTION_SETS}


def cpu_description(path="/proc/cpuinfo"):
    """One line: the CPU's model name and which of ``INSTRUCTION_SETS`` it has."""
    name, sets = cpu_info(path)
    if not sets:
        return f"{name} (instruction sets unknown: no {path})"
    have = [s for s, present in sets.items() if present]
    lacks = [s for s, present in sets.items() if not present]
    return f"{name}; has {', '.join(have) or 'none'}" + (f"; lacks {', '.join(lacks)}" if lacks else "")

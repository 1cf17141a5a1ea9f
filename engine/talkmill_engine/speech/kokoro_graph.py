"""An exact, faster form of Kokoro's int8 graph, made once at install from the timed model (kokoro_files).

Every ConvInteger (67 % of Kokoro's time) takes its activations as int8 instead of uint8: onnxruntime's
ConvInteger puts the weights in MLAS's first operand and the activations in the second, and its fast VNNI
kernel is u8 x s8. For each DynamicQuantizeLinear (x -> q, scale s, zero point z) feeding a ConvInteger, a
QuantizeLinear(x, s, z - 128) gives q - 128 with zero point z - 128: q - z is unchanged, so the int32 sums,
and the audio, are bit for bit the same. Pow(x, 2) (the Snake activations) becomes Mul(x, x), also exact.
Measured on a 2-core AVX-512 VNNI machine: 0.72 -> 0.48 CPU-s per audio second (2 threads), 0.65 -> 0.42 (1).
Only used on CPUs with VNNI (`has_vnni`): without it, MLAS's u8s8 kernel may saturate at int16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CPUINFO = Path("/proc/cpuinfo")


def has_vnni(cpuinfo: Path = _CPUINFO) -> bool:
    """Whether this CPU has AVX-512 VNNI or AVX-VNNI (the int8 dot products the faster graph relies on)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_vnni" in flags or "avx_vnni" in flags


def int8_activations(model: bytes) -> bytes:
    """The model with int8 ConvInteger activations and Pow(x, 2) as Mul(x, x) (see the module's note)."""
    import onnx

    proto = onnx.load_from_string(model)
    graph = proto.graph
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(128, np.int16), _OFFSET))
    added = _requantize_conv_inputs(graph)
    _square_by_mul(graph)
    nodes = [node for original in graph.node for node in (original, *added.get(original.name, []))]
    del graph.node[:]
    graph.node.extend(nodes)  # each QuantizeLinear right after the DynamicQuantizeLinear it follows
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return proto.SerializeToString()


_OFFSET = "s8act_c128"


def _requantize_conv_inputs(graph) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """Rewires each ConvInteger fed by a DynamicQuantizeLinear to int8 inputs; the nodes to add, by the name
    of the DynamicQuantizeLinear they follow."""
    from onnx import TensorProto, helper

    producer = {output: node for node in graph.node for output in node.output}
    made: dict[str, tuple[str, str]] = {}
    added: dict[str, list] = {}
    for node in graph.node:
        dql = producer.get(node.input[0]) if node.op_type == "ConvInteger" and len(node.input) >= 3 else None
        if dql is None or dql.op_type != "DynamicQuantizeLinear" or node.input[2] != dql.output[2]:
            continue
        x, (q, scale, zero) = dql.input[0], dql.output
        if q not in made:
            name = q + "_s8"
            added[dql.name] = [
                helper.make_node("Cast", [zero], [name + "_z16"], to=TensorProto.INT16, name=name + "_z16"),
                helper.make_node("Sub", [name + "_z16", _OFFSET], [name + "_z16m"], name=name + "_z16m"),
                helper.make_node("Cast", [name + "_z16m"], [name + "_zp"], to=TensorProto.INT8, name=name + "_zp"),
                helper.make_node("QuantizeLinear", [x, scale, name + "_zp"], [name], name=name),
            ]
            made[q] = (name, name + "_zp")
        node.input[0], node.input[2] = made[q]
    return added


def _square_by_mul(graph) -> None:  # type: ignore[no-untyped-def]
    from onnx import numpy_helper

    constants = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        exponent = constants.get(node.input[1]) if node.op_type == "Pow" else None
        value = numpy_helper.to_array(exponent) if exponent is not None else None
        if value is not None and value.size == 1 and float(value) == 2.0:
            node.op_type, node.input[1] = "Mul", node.input[0]

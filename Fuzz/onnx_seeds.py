#!/usr/bin/env python3
"""Writes tiny ONNX models into a directory, as seeds for the fuzz-onnx target.

    python3 Fuzz/onnx_seeds.py Fuzz/Corpus/onnx

Each model is a few hundred bytes to a few KB and exercises a different part of the
converter (every supported operator appears in at least one), so the fuzzer mutates small
inputs that reach deep into the conversion instead of 100 KB weight blobs. Deterministic:
fixed seeds, no randomness from the environment. Needs only the `onnx` package (the same
pinned version as tools/onnx_fixtures/requirements.txt).
"""

import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(1234)


def const(name, array, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(array, dtype=dtype), name)


def pm1(shape):
    return np.where(rng.standard_normal(shape) >= 0, 1.0, -1.0).astype(np.float32)


def floats(shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def model(name, nodes, inputs, output, initializers, opset=13, output_shape=None):
    graph = helper.make_graph(
        nodes, name, inputs,
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)],
        initializer=initializers)
    ir = {11: 6, 13: 7, 21: 10}[opset]
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="fuzz-seeds", ir_version=ir)
    return m.SerializeToString()


def seeds():
    out = {}
    # Binary MLP: Sign -> MatMul(+-1) -> BatchNorm -> Sign -> Gemm(transB, bias) -> Softmax.
    out["mlp"] = model("mlp", [
        helper.make_node("Sign", ["x"], ["s1"]),
        helper.make_node("MatMul", ["s1", "w1"], ["h1"]),
        helper.make_node("BatchNormalization", ["h1", "g", "b", "m", "v"], ["n1"], epsilon=1e-5),
        helper.make_node("Sign", ["n1"], ["s2"]),
        helper.make_node("Gemm", ["s2", "w2", "c2"], ["h2"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["h2"], ["y"]),
    ], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])], "y", [
        const("w1", pm1((16, 8))), const("g", floats(8) + 1), const("b", floats(8)), const("m", floats(8)),
        const("v", np.abs(floats(8)) + 0.5), const("w2", pm1((4, 8))), const("c2", floats(4)),
    ])

    # Binary CNN: float stem, BN, Sign, Pad(-1) absorbed by a +-1 conv, MaxPool, PRelu,
    # Flatten (NCHW -> NHWC column permutation), Sign, Gemm with alpha-scaled weights, Relu.
    w3 = pm1((3, 16)) * np.array([[0.5], [1.5], [2.0]], dtype=np.float32)
    out["cnn"] = model("cnn", [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c0", "g", "b", "m", "v"], ["n0"]),
        helper.make_node("Sign", ["n0"], ["s0"]),
        helper.make_node("Pad", ["s0", "pads", "pv"], ["p0"], mode="constant"),
        helper.make_node("Conv", ["p0", "w1"], ["c1"], kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("MaxPool", ["c1"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("PRelu", ["mp", "slope"], ["pr"]),
        helper.make_node("Flatten", ["pr"], ["f"], axis=1),
        helper.make_node("Sign", ["f"], ["s1"]),
        helper.make_node("Gemm", ["s1", "w3"], ["g3"], transB=1),
        helper.make_node("Relu", ["g3"], ["y"]),
    ], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])], "y", [
        const("w0", floats((4, 2, 3, 3))), const("b0", floats(4)),
        const("g", floats(4) + 1), const("b", floats(4)), const("m", floats(4)), const("v", np.abs(floats(4)) + 0.5),
        const("pads", [0, 0, 1, 1, 0, 0, 1, 1], np.int64), const("pv", -1.0),
        const("w1", pm1((4, 4, 3, 3))), const("slope", floats((4, 1, 1))), const("w3", w3),
    ])

    # XNOR-style: Where(x >= 0, 1, -1) binarization, Mul(Sign(W), alpha) folded weights,
    # SAME_UPPER padding, AveragePool counting pads, Concat, GlobalAveragePool, Reshape,
    # Clip with constant bounds, LeakyRelu, Dropout, Identity, Div/Sub/Add by constants.
    out["xnor"] = model("xnor", [
        helper.make_node("GreaterOrEqual", ["x", "zero"], ["ge"]),
        helper.make_node("Where", ["ge", "one", "minus"], ["bx"]),
        helper.make_node("Sign", ["wr"], ["ws"]),
        helper.make_node("Mul", ["ws", "alpha"], ["wa"]),
        helper.make_node("Conv", ["bx", "wa"], ["c"], kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
        helper.make_node("AveragePool", ["c"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("Concat", ["c", "ap"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"]),
        helper.make_node("Reshape", ["gap", "shape"], ["r"]),
        helper.make_node("Clip", ["r", "lo", "hi"], ["cl"]),
        helper.make_node("LeakyRelu", ["cl"], ["lr"], alpha=0.1),
        helper.make_node("Dropout", ["lr"], ["d"]),
        helper.make_node("Identity", ["d"], ["i"]),
        helper.make_node("Div", ["i", "two"], ["dv"]),
        helper.make_node("Sub", ["dv", "three"], ["sb"]),
        helper.make_node("Add", ["sb", "bias"], ["y"]),
    ], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])], "y", [
        const("zero", 0.0), const("one", 1.0), const("minus", -1.0),
        const("wr", floats((2, 3, 3, 3))), const("alpha", [[[[0.5]]], [[[2.0]]]]),
        const("shape", [1, -1], np.int64), const("lo", -1.0), const("hi", 1.0),
        const("two", 2.0), const("three", [3.0]), const("bias", floats((1, 4))),
    ])

    # Residual block: Conv, Add of two activations, Less/Where binarization, opset 11.
    out["residual-opset11"] = model("residual", [
        helper.make_node("Less", ["x", "zero"], ["lt"]),
        helper.make_node("Where", ["lt", "minus", "one"], ["bx"]),
        helper.make_node("Conv", ["bx", "w"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["c", "x"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])], "y", [
        const("zero", 0.0), const("one", 1.0), const("minus", -1.0), const("w", pm1((2, 2, 1, 1))),
    ], opset=11)

    # Opset 21 with Constant nodes (value_floats, value_ints, tensor) and a 4-D softmax.
    out["constants-opset21"] = model("constants", [
        helper.make_node("Constant", [], ["k"], value_floats=[0.5, 2.0]),
        helper.make_node("Constant", [], ["shape"], value_ints=[1, 2, 1, 1]),
        helper.make_node("Constant", [], ["t"], value=const("tv", [[[[1.0]], [[-1.0]]]])),
        helper.make_node("Mul", ["x", "t"], ["m"]),
        helper.make_node("Sub", ["m", "t"], ["a"]),
        helper.make_node("Softmax", ["a"], ["y"], axis=1),
    ], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2])], "y", [], opset=21)

    # Smallest accepted model.
    out["relu"] = model("relu", [helper.make_node("Relu", ["x"], ["y"])],
                        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], "y", [])
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (directory / f"tiny-{name}.onnx").write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()

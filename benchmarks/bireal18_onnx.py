#!/usr/bin/env python3
"""ONNX Runtime baseline for BitFleet: Bi-Real-Net-18 at 224x224, and one binary 3x3 conv.

Builds the model with onnx.helper (random weights, seed 0, binary weights exactly +-1,
opset 13, batch 1, float32, input "input" / output "output"), optionally writes it, and
optionally times it with onnxruntime (CPUExecutionProvider, ORT_ENABLE_ALL).

    python3 benchmarks/bireal18_onnx.py --write /tmp/bireal18.onnx
    python3 benchmarks/bireal18_onnx.py --bench --threads 1 --runs 30
    python3 benchmarks/bireal18_onnx.py --conv-layer --bench --threads 2

Models:
  default       Bi-Real-Net-18: float Conv 3->64 7x7 s2 p3 + BN + MaxPool 3x3 s2 p1; stages
                64/128/256/512, 2 basic blocks each, each block = 2 Bi-Real units
                y = BN(Conv3x3(Sign(x), W_pm1)) + shortcut(x), shortcut = x, or for the first
                unit of stages 2-4 (stride 2, channels doubled) AveragePool 2x2 s2 -> float
                Conv 1x1 -> BN; GlobalAveragePool -> Flatten -> Gemm 512->1000.
  --conv-layer  Sign + one binary Conv 3x3 64->64 pad 1 on [1,64,56,56] (115.6 M MACs).

--bench prints one JSON object:
  {"median_ms", "p90_ms", "min_ms", "threads", "runs", "onnxruntime_version",
   "model", "macs", "warmup"}
The generated 224x224 model (~47 MB) is not committed; this script regenerates it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 7
BN_EPS = 1e-5


class Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0
        self.macs = 0

    def uniq(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base, arr, dtype=np.float32):
        name = self.uniq(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def op(self, op_type, inputs, **attrs):
        out = self.uniq(op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=self.uniq("node_" + op_type), **attrs)
        )
        return out

    def conv(self, x, w, k, stride, pad, out_hw, bias=None):
        cout, cin = w.shape[0], w.shape[1]
        self.macs += cout * cin * k * k * out_hw * out_hw
        ins = [x, self.const("conv_w", w)] + ([self.const("conv_b", bias)] if bias is not None else [])
        return self.op("Conv", ins, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def float_conv(self, x, cin, cout, k, stride, pad, out_hw):
        w = self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
        return self.conv(x, w, k, stride, pad, out_hw)

    def binary_conv(self, x, cin, cout, k, stride, pad, out_hw):
        w = np.where(self.rng.random((cout, cin, k, k)) < 0.5, -1.0, 1.0)
        return self.conv(x, w, k, stride, pad, out_hw)

    def bn(self, x, c, in_std=1.0, out_std=1.0):
        ins = [
            self.const("bn_scale", self.rng.uniform(0.5, 1.2, c) * out_std),
            self.const("bn_bias", self.rng.standard_normal(c) * 0.1 * out_std),
            self.const("bn_mean", self.rng.standard_normal(c) * 0.1 * in_std),
            self.const("bn_var", (in_std**2) * self.rng.uniform(0.5, 1.5, c)),
        ]
        return self.op("BatchNormalization", [x] + ins, epsilon=BN_EPS)

    def model(self, name, in_shape, last, out_shape):
        assert self.nodes[-1].output[0] == last  # the last node's output becomes "output"
        self.nodes[-1].output[0] = "output"
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
            initializer=self.inits,
        )
        return helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
            producer_name="BitFleet benchmarks/bireal18_onnx.py", producer_version="1",
        )


def bireal_unit(b: Builder, x, cin, cout, stride, hw_in):
    hw = hw_in // stride
    s = b.op("Sign", [x])
    y = b.binary_conv(s, cin, cout, 3, stride, 1, hw)
    y = b.bn(y, cout, in_std=np.sqrt(cin * 9), out_std=0.5)
    if stride != 1 or cin != cout:
        sc = b.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
        sc = b.float_conv(sc, cin, cout, 1, 1, 0, hw)
        sc = b.bn(sc, cout)
    else:
        sc = x
    return b.op("Add", [y, sc]), hw


def build_bireal18(seed=0):
    b = Builder(seed)
    x = b.float_conv("input", 3, 64, 7, 2, 3, 112)
    x = b.bn(x, 64)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 56x56
    hw, cin = 56, 64
    for si, cout in enumerate([64, 128, 256, 512]):
        for blk in range(2):
            for unit in range(2):
                stride = 2 if (si > 0 and blk == 0 and unit == 0) else 1
                x, hw = bireal_unit(b, x, cin, cout, stride, hw)
                cin = cout
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    w = b.rng.standard_normal((1000, 512)) * np.sqrt(1.0 / 512)
    b.macs += 512 * 1000
    x = b.op("Gemm", [x, b.const("fc_w", w), b.const("fc_b", b.rng.standard_normal(1000) * 0.1)],
             transB=1)
    return b.model("bireal18", [1, 3, 224, 224], x, [1, 1000]), [1, 3, 224, 224], b.macs


def build_conv_layer(seed=0):
    b = Builder(seed)
    s = b.op("Sign", ["input"])
    y = b.binary_conv(s, 64, 64, 3, 1, 1, 56)
    return b.model("binary_conv3x3_64x56x56", [1, 64, 56, 56], y, [1, 64, 56, 56]), \
        [1, 64, 56, 56], b.macs


def build_conv_stack(seed=0, layers=5):
    """Five binary 3x3 convs 64->64 at 56x56, each with BatchNorm, Sign between them: a
    binary layer inside a stack (BitFleet reads and writes packed bits there)."""
    b = Builder(seed)
    x = "input"
    for _ in range(layers):
        s = b.op("Sign", [x])
        y = b.binary_conv(s, 64, 64, 3, 1, 1, 56)
        x = b.bn(y, 64, in_std=24.0, out_std=1.0)
    return b.model(f"binary_conv3x3_64x56x56_stack{layers}", [1, 64, 56, 56], x, [1, 64, 56, 56]), \
        [1, 64, 56, 56], b.macs


def bench(model_bytes, in_shape, threads, runs, warmup):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(-1, 1, in_shape).astype(np.float32)
    for _ in range(warmup):
        sess.run(["output"], {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(["output"], {"input": x})
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times)
    return {
        "median_ms": round(float(np.median(t)), 3),
        "p90_ms": round(float(np.percentile(t, 90)), 3),
        "min_ms": round(float(t.min()), 3),
        "threads": threads,
        "runs": runs,
        "onnxruntime_version": ort.__version__,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="Bi-Real-Net-18 / binary conv ONNX Runtime baseline")
    ap.add_argument("--write", type=Path, metavar="PATH", help="write the ONNX model to PATH")
    ap.add_argument("--bench", action="store_true", help="time the model in onnxruntime")
    ap.add_argument("--conv-layer", action="store_true",
                    help="single Sign + binary Conv3x3 64->64 on [1,64,56,56] instead of Bi-Real-18")
    ap.add_argument("--conv-stack", action="store_true",
                    help="five Sign + binary Conv3x3 64->64 + BatchNorm layers on [1,64,56,56]")
    ap.add_argument("--threads", type=int, default=1, help="intra_op_num_threads (default 1)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    args = ap.parse_args()
    if not args.write and not args.bench:
        ap.error("nothing to do: pass --write PATH and/or --bench")
    if args.threads < 1 or args.runs < 1 or args.warmup < 0:
        ap.error("--threads and --runs must be >= 1, --warmup >= 0")

    build = build_conv_layer if args.conv_layer else build_conv_stack if args.conv_stack else build_bireal18
    model, in_shape, macs = build(args.seed)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_bytes(data)
        print(f"wrote {args.write} ({len(data) / 1e6:.1f} MB, {len(model.graph.node)} nodes, "
              f"{macs / 1e6:.1f} M MACs)", file=sys.stderr)
    if args.bench:
        res = bench(data, in_shape, args.threads, args.runs, args.warmup)
        res.update({"model": model.graph.name, "macs": macs, "warmup": args.warmup})
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

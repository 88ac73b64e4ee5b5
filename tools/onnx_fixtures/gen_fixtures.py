#!/usr/bin/env python3
"""Generate the ONNX binary-neural-network fixtures used by BitFleet's converter tests.

For every fixture NAME this writes into Tests/Fixtures/onnx/:

    NAME.onnx          the model (built with onnx.helper, fixed seeds, static shapes, batch 1)
    NAME.input.npy     float32 input, shape = model input
    NAME.expected.npy  float32 ONNX Runtime output (CPUExecutionProvider,
                       graph optimizations disabled, 1 intra-op thread)

plus MANIFEST.json (shapes, node op types, tolerance rule, weight forms, Sign margins).

    python3 tools/onnx_fixtures/gen_fixtures.py            # (re)generate in place
    python3 tools/onnx_fixtures/gen_fixtures.py --check    # regenerate into a temp dir and
                                                           # compare with the committed files

BNN semantics (BMXNet / Larq style): activations are binarized with ONNX `Sign`; binary
weights are float tensors that are exactly +1/-1 (an initializer, `Sign(constant)`, or
XNOR-Net style `Mul(W_pm1, alpha)` with a positive per-output-channel alpha).

Sign(0) = 0 in ONNX, so no activation fed to Sign may be (close to) zero, or the Swift
engine (which binarizes to 1 bit) and ONNX Runtime would disagree. The generator makes sure
of that in two ways:
  * A Sign fed (through BN, PRelu>0, MaxPool, Concat, Dropout) by a binary conv/Gemm sees
    values alpha_c * integer. Those BatchNormalizations are built so that their zero crossing
    lies at alpha_c * (k + 0.5) (the "odd half offset" on the BN bias): no reachable input is
    within alpha_c/2 of the threshold, whatever the summation order.
  * A Sign fed by real-valued data (after the float stem, or the real-valued Bi-Real
    residual stream) is checked numerically: the input seed is the first of
    seed, seed+1, ... for which every such Sign input has min|x| >= SIGN_MARGIN_REL * rms(x)
    and the top-1/top-2 output gap is >= ARGMAX_GAP_REL * max|output|.
The achieved margins are recorded in MANIFEST.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exported  # noqa: E402  (the offline-exported fixtures: export_torch.py, export_larq.py)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "Tests" / "Fixtures" / "onnx"

IR_VERSION_FOR_OPSET = {11: 6, 13: 7, 17: 8, 18: 8, 21: 10}
PRODUCER = "BitFleet tools/onnx_fixtures/gen_fixtures.py"
PRODUCER_VERSION = "1"
TOLERANCE_RULE = "max abs diff <= 1e-4 * max abs expected, same argmax"
CHECK_RTOL = 1e-5  # --check: |fresh - committed| <= 1e-5 * max|committed|
SIGN_MARGIN_REL = 2e-5  # real-valued Sign inputs: min|x| >= this * rms(x)
ARGMAX_GAP_REL = 1e-3  # (top1 - top2) >= this * max|output|
MAX_INPUT_SEED_TRIES = 2000
BN_EPS = 1e-5


# --------------------------------------------------------------------------------------------
# Graph builder
# --------------------------------------------------------------------------------------------
class Builder:
    """Tiny helper around onnx.helper that keeps node/tensor names unique and deterministic."""

    def __init__(self, name: str, opset: int, seed: int):
        self.name = name
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0
        self.sign_acts: list[dict] = []  # activation Sign nodes: input tensor + margin kind
        self.weight_forms: list[dict] = []

    # -- basics ------------------------------------------------------------------------------
    def uniq(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base: str, arr, dtype=np.float32) -> str:
        name = self.uniq(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.uniq(op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=self.uniq("node_" + op_type), **attrs)
        )
        return out

    def constant_node(self, base: str, arr) -> str:
        """A `Constant` node (instead of an initializer) holding a float32 tensor."""
        out = self.uniq(base)
        tensor = numpy_helper.from_array(np.asarray(arr, dtype=np.float32), out + "_value")
        self.nodes.append(
            helper.make_node("Constant", [], [out], name=self.uniq("node_Constant"), value=tensor)
        )
        return out

    def sign(self, x: str, margin: str) -> str:
        """Activation binarization. margin: 'integer-threshold' or 'checked' (real-valued)."""
        y = self.op("Sign", [x])
        self.sign_acts.append({"input": x, "output": y, "margin": margin})
        return y

    def threshold_sign(self, x: str, threshold, op: str = "GreaterOrEqual") -> str:
        """Comparison-based binarization Where(x >= t, 1, -1) (or Where(x < t, -1, 1))."""
        t = self.const("threshold", threshold)
        cond = self.op(op, [x, t])
        pos, neg = self.const("one", np.float32(1.0)), self.const("minus_one", np.float32(-1.0))
        y = self.op("Where", [cond, pos, neg] if op in ("GreaterOrEqual", "Greater") else [cond, neg, pos])
        self.sign_acts.append({"input": x, "output": y, "margin": "checked", "threshold": np.asarray(threshold)})
        return y

    # -- random parameters -------------------------------------------------------------------
    def pm1(self, shape) -> np.ndarray:
        return np.where(self.rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)

    def real_nonzero(self, shape, scale=1.0) -> np.ndarray:
        """Real values bounded away from 0 (so Sign(const) is exactly +-1)."""
        n = self.rng.standard_normal(shape)
        return (np.sign(n) * (np.abs(n) + 0.05) * scale).astype(np.float32)

    # -- layers ------------------------------------------------------------------------------
    def float_conv(self, x, cin, cout, k, stride=1, pad=0, bias=True) -> str:
        w = self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
        inputs = [x, self.const("conv_w", w)]
        if bias:
            inputs.append(self.const("conv_b", self.rng.standard_normal(cout) * 0.1))
        return self.op(
            "Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4
        )

    def binary_weight(self, shape, form: str, layer: str):
        """Returns (tensor name holding the effective weight, per-output scale alpha[cout]).

        form: 'pm1'          float initializer with values exactly +-1
              'sign_const'   Sign(real-valued initializer)
              'mul_alpha'    Mul(+-1 initializer, alpha initializer [Cout,1,...])
              'mul_alpha_constnode'  as mul_alpha, alpha given by a Constant node
              'mul_sign_alpha'       Mul(Sign(real initializer), alpha initializer)
        """
        cout = shape[0]
        alpha_shape = [cout] + [1] * (len(shape) - 1)
        alpha = np.ones(cout, dtype=np.float32)
        if form == "pm1":
            w = self.const("bin_w_pm1", self.pm1(shape))
        elif form == "sign_const":
            w = self.op("Sign", [self.const("bin_w_real", self.real_nonzero(shape))])
        elif form in ("mul_alpha", "mul_alpha_constnode", "mul_sign_alpha"):
            alpha = self.rng.uniform(0.02, 0.2, cout).astype(np.float32)
            if form == "mul_sign_alpha":
                base = self.op("Sign", [self.const("bin_w_real", self.real_nonzero(shape, 0.1))])
            else:
                base = self.const("bin_w_pm1", self.pm1(shape))
            if form == "mul_alpha_constnode":
                a = self.constant_node("alpha", alpha.reshape(alpha_shape))
            else:
                a = self.const("alpha", alpha.reshape(alpha_shape))
            w = self.op("Mul", [base, a])
        else:
            raise ValueError(form)
        self.weight_forms.append({"layer": layer, "shape": list(shape), "form": form})
        return w, alpha

    def binary_conv(self, x, cin, cout, k, stride=1, pad=0, form="pm1", layer=""):
        w, alpha = self.binary_weight((cout, cin, k, k), form, layer or f"conv{cin}->{cout}")
        y = self.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        return y, alpha, cin * k * k

    def _bn_node(self, x, gamma, beta, mean, var) -> str:
        ins = [
            self.const("bn_scale", gamma),
            self.const("bn_bias", beta),
            self.const("bn_mean", mean),
            self.const("bn_var", var),
        ]
        return self.op("BatchNormalization", [x] + ins, epsilon=BN_EPS)

    def bn_random(self, x, c, in_std=1.0, out_std=1.0) -> str:
        """A generic inference BatchNormalization (input roughly N(0, in_std^2))."""
        mean = self.rng.standard_normal(c) * 0.1 * in_std
        var = (in_std**2) * self.rng.uniform(0.5, 1.5, c)
        gamma = self.rng.uniform(0.5, 1.2, c) * out_std
        beta = self.rng.standard_normal(c) * 0.1 * out_std
        return self._bn_node(x, gamma, beta, mean, var)

    def bn_threshold(self, x, alpha, fan_in, negative_frac=0.1) -> str:
        """BatchNormalization in front of a Sign whose input is alpha_c * integer.

        The zero crossing of the BN is placed at alpha_c * (k_c + 0.5) ("odd half offset"), so
        no reachable input lands on or near it; ~10% of the channels get a negative gamma
        (flipped threshold) to exercise that path of BN->Sign folding.
        """
        c = alpha.shape[0]
        a = alpha.astype(np.float64)
        sd = np.sqrt(fan_in)
        k = np.round(self.rng.standard_normal(c) * 0.3 * sd)
        t = a * (k + 0.5)
        mean = a * self.rng.standard_normal(c) * 0.2 * sd
        var = (a**2) * fan_in * self.rng.uniform(0.5, 1.5, c)
        gamma = self.rng.uniform(0.5, 1.5, c)
        gamma = np.where(self.rng.random(c) < negative_frac, -gamma, gamma)
        beta = -(t - mean) * gamma / np.sqrt(var + BN_EPS)
        return self._bn_node(x, gamma, beta, mean, var)

    def gemm_float(self, x, k, n, trans_b=1) -> str:
        w = self.rng.standard_normal((n, k) if trans_b else (k, n)) * np.sqrt(1.0 / k)
        b = self.rng.standard_normal(n) * 0.1
        return self.op("Gemm", [x, self.const("fc_w", w), self.const("fc_b", b)], transB=trans_b)

    # -- model -------------------------------------------------------------------------------
    def model(self, input_shape, output_name, output_shape) -> onnx.ModelProto:
        # Rename the last tensor to "output".
        last = self.nodes[-1]
        assert last.output[0] == output_name
        last.output[0] = "output"
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(output_shape))],
            initializer=self.inits,
        )
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            ir_version=IR_VERSION_FOR_OPSET[self.opset],
            producer_name=PRODUCER,
            producer_version=PRODUCER_VERSION,
        )
        for s in self.sign_acts:
            if s["input"] == output_name:
                s["input"] = "output"
        return m


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
def build_binary_mlp():
    b = Builder("binary_mlp", 13, seed=101)
    x = b.gemm_float("input", 64, 100, trans_b=1)  # float Gemm 64->100
    x = b.bn_random(x, 100, in_std=1.2)  # BN on a 2-D [1,100] tensor
    x = b.sign(x, "checked")
    w, alpha = b.binary_weight((70, 100), "pm1", "gemm100->70")  # Gemm B=[N,K], transB=1
    x = b.op("Gemm", [x, w], transB=1)
    x = b.bn_threshold(x, alpha, 100)
    x = b.sign(x, "integer-threshold")
    w = b.const("bin_w_pm1", b.pm1((70, 48)))  # MatMul B=[K,N]
    b.weight_forms.append({"layer": "matmul70->48", "shape": [70, 48], "form": "pm1"})
    x = b.op("MatMul", [x, w])
    x = b.op("Add", [x, b.const("bias", b.rng.standard_normal(48) * 2.0)])
    x = b.op("Relu", [x])
    # Scale the last Gemm down so the softmax is not saturated.
    wl = b.rng.standard_normal((48, 10)) * np.sqrt(1.0 / 48) * 0.25
    x = b.op("Gemm", [x, b.const("fc_w", wl), b.const("fc_b", b.rng.standard_normal(10) * 0.1)])
    x = b.op("Softmax", [x], axis=1)
    return b, b.model([1, 64], x, [1, 10]), [1, 64], 1001


def build_binary_cnn():
    b = Builder("binary_cnn", 13, seed=202)
    x = b.float_conv("input", 3, 48, 3, pad=1)
    x = b.bn_random(x, 48, in_std=1.0)
    x = b.sign(x, "checked")
    x, a, fan = b.binary_conv(x, 48, 100, 3, stride=2, pad=1, form="pm1")  # 17 -> 9
    x = b.bn_threshold(x, a, fan)
    x = b.sign(x, "integer-threshold")
    x, a, fan = b.binary_conv(x, 100, 100, 3, stride=1, pad=1, form="pm1")  # 9 -> 9
    x = b.bn_threshold(x, a, fan)
    slope = b.rng.uniform(0.05, 0.5, (100, 1, 1))
    x = b.op("PRelu", [x, b.const("prelu_slope", slope)])
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 9 -> 4
    x = b.sign(x, "integer-threshold")
    x, a, fan = b.binary_conv(x, 100, 48, 1, form="pm1")
    x = b.bn_random(x, 48, in_std=np.sqrt(fan))
    lo, hi = b.const("clip_min", np.float32(-1.0)), b.const("clip_max", np.float32(1.0))
    x = b.op("Clip", [x, lo, hi])
    x = b.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 4 -> 2
    x = b.op("Flatten", [x], axis=1)
    x = b.gemm_float(x, 48 * 2 * 2, 10)
    return b, b.model([1, 3, 17, 17], x, [1, 10]), [1, 3, 17, 17], 2002


def _bireal_unit(b: Builder, x, cin, cout, stride, form, layer):
    """y = BN(Conv3x3(Sign(x), W_pm1)) + shortcut(x); shortcut = x, or for a downsampling
    unit AveragePool2x2s2 -> float Conv1x1 -> BN."""
    s = b.sign(x, "checked")
    y, _, fan = b.binary_conv(s, cin, cout, 3, stride=stride, pad=1, form=form, layer=layer)
    y = b.bn_random(y, cout, in_std=np.sqrt(fan), out_std=0.5)
    if stride != 1 or cin != cout:
        sc = b.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
        sc = b.float_conv(sc, cin, cout, 1, bias=False)
        sc = b.bn_random(sc, cout, in_std=1.0)
    else:
        sc = x
    return b.op("Add", [y, sc])


def build_bireal_small():
    b = Builder("bireal_small", 13, seed=303)
    x = b.float_conv("input", 3, 16, 3, pad=1, bias=False)
    x = b.bn_random(x, 16, in_std=1.0)
    cin = 16
    for si, cout in enumerate([16, 32, 64, 128]):
        for blk in range(2):
            for unit in range(2):
                first = blk == 0 and unit == 0
                stride = 2 if (first and si > 0) else 1
                # Sign(const) weights for the first unit of every block in stages 1-2 and the
                # downsampling unit of stage 3; +-1 initializers everywhere else (the real-valued
                # constants do not compress in git, so the big stage-4 layers stay +-1).
                if si <= 1:
                    form = "sign_const" if unit == 0 else "pm1"
                else:
                    form = "sign_const" if (first and si == 2) else "pm1"
                layer = f"stage{si + 1}.block{blk}.unit{unit}"
                x = _bireal_unit(b, x, cin, cout, stride, form, layer)
                cin = cout
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    x = b.gemm_float(x, 128, 10)
    return b, b.model([1, 3, 32, 32], x, [1, 10]), [1, 3, 32, 32], 3003


def build_xnor_alpha():
    b = Builder("xnor_alpha", 13, seed=404)
    x = b.float_conv("input", 3, 32, 3, pad=1)
    x = b.bn_random(x, 32, in_std=1.0)
    s = b.sign(x, "checked")
    # Branch A: explicit Pad (constant 0) then a 3x3 conv with pads=0.
    pa = b.op("Pad", [s, b.const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1]), np.int64),
                      b.const("pad_value", np.float32(0.0))], mode="constant")
    ya, aa, fa = b.binary_conv(pa, 32, 32, 3, pad=0, form="mul_alpha", layer="branchA.conv3x3")
    ya = b.bn_threshold(ya, aa, fa)
    # Branch B: Identity then 1x1 conv, alpha from a Constant node.
    ib = b.op("Identity", [s])
    yb, ab, fb = b.binary_conv(ib, 32, 16, 1, form="mul_alpha_constnode", layer="branchB.conv1x1")
    yb = b.bn_threshold(yb, ab, fb)
    x = b.op("Concat", [ya, yb], axis=1)  # [1,48,16,16]
    x = b.op("Dropout", [x])  # inference: identity
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 16 -> 8
    x = b.sign(x, "integer-threshold")
    x, a, fan = b.binary_conv(x, 48, 32, 3, stride=2, pad=1, form="mul_alpha", layer="conv3x3s2")
    x = b.bn_threshold(x, a, fan)  # [1,32,4,4]
    x = b.sign(x, "integer-threshold")
    x = b.op("Reshape", [x, b.const("shape", np.array([1, 512]), np.int64)])
    w, alpha = b.binary_weight((10, 512), "mul_sign_alpha", "gemm512->10")  # alpha_row [10,1]
    x = b.op("Gemm", [x, w, b.const("fc_b", b.rng.standard_normal(10) * 0.1)], transB=1)
    return b, b.model([1, 3, 16, 16], x, [1, 10]), [1, 3, 16, 16], 4004


def _build_cnn_opset(opset: int):
    """The same small binary CNN (same seeds, hence the same outputs) in different opsets.

    Opset-sensitive parts: Clip min/max are inputs (>= 11); Pad pads/constant_value are
    inputs (>= 11); Dropout ratio/training_mode are inputs from 12 (attribute `ratio` in 11);
    Softmax default axis changed in 13 (axis given explicitly); BatchNormalization is v9 in
    opset 11 and v15 in opset 21; IR version 6 (opset 11) vs 10 (opset 21).
    """
    b = Builder(f"binary_cnn_opset{opset}", opset, seed=505)
    x = b.float_conv("input", 3, 16, 3, pad=1)
    x = b.bn_random(x, 16, in_std=1.0)
    x = b.sign(x, "checked")
    x = b.op("Pad", [x, b.const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1]), np.int64),
                     b.const("pad_value", np.float32(0.0))], mode="constant")
    x, a, fan = b.binary_conv(x, 16, 32, 3, pad=0, form="sign_const", layer="conv16->32")
    x = b.bn_threshold(x, a, fan)
    x = b.sign(x, "integer-threshold")
    x, a, fan = b.binary_conv(x, 32, 32, 3, pad=1, form="pm1", layer="conv32->32")
    x = b.bn_random(x, 32, in_std=np.sqrt(fan))
    x = b.op("Clip", [x, b.const("clip_min", np.float32(-1.0)), b.const("clip_max", np.float32(1.0))])
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 12 -> 6
    if opset >= 12:
        x = b.op("Dropout", [x, b.const("ratio", np.float32(0.5)),
                             b.const("training_mode", np.bool_(False), np.bool_)])
    else:
        x = b.op("Dropout", [x], ratio=0.5)
    x = b.op("Reshape", [x, b.const("shape", np.array([1, -1]), np.int64)])
    x = b.gemm_float(x, 32 * 6 * 6, 10)
    x = b.op("Softmax", [x], axis=1)
    return b, b.model([1, 3, 12, 12], x, [1, 10]), [1, 3, 12, 12], 5005


def _ops_head(opset: int):
    """LogSoftmax, Neg, Cast to float, ReduceMean over the spatial axes (axes attribute and
    keepdims=1 in opset 13, axes input and keepdims=0 in opset 18), Transpose to NHWC around
    a Reshape/Flatten."""
    b = Builder(f"ops_head_opset{opset}", opset, seed=606)
    x = b.float_conv("input", 3, 8, 3, pad=1)  # [1,8,6,6]
    x = b.bn_random(x, 8, in_std=1.0)
    x = b.op("Neg", [x])
    x = b.op("Cast", [x], to=TensorProto.FLOAT)
    if opset >= 18:
        g = b.op("ReduceMean", [x, b.const("axes", np.array([2, 3]), np.int64)], keepdims=0)  # [1,8]
    else:
        g = b.op("ReduceMean", [x], axes=[2, 3], keepdims=1)  # [1,8,1,1]
        g = b.op("Flatten", [g], axis=1)
    t = b.op("Transpose", [x], perm=[0, 2, 3, 1])  # [1,6,6,8]
    if opset >= 18:
        t = b.op("Flatten", [t], axis=1)
    else:
        t = b.op("Reshape", [t, b.const("shape", np.array([1, -1]), np.int64)])
    t = b.gemm_float(t, 6 * 6 * 8, 8)
    y = b.op("Add", [g, t])
    y = b.gemm_float(y, 8, 10)
    y = b.op("LogSoftmax", [y], axis=1)
    return b, b.model([1, 3, 6, 6], y, [1, 10]), [1, 3, 6, 6], 6006


def build_ops_binarize():
    """Binarizations that exports contain: Sign(Clip(x, -1, 1)) (Hardtanh), Sign(Clip(x, -0.5,
    3)), Where(x >= t, 1, -1) and Where(x < t, -1, 1) with per-channel thresholds t, and
    Larq's Sign(Sign(x) + 0.1)."""
    b = Builder("ops_binarize", 13, seed=707)
    x = b.float_conv("input", 3, 16, 3, pad=1)  # [1,16,8,8]
    x = b.bn_random(x, 16, in_std=1.0)
    x = b.op("Clip", [x, b.const("clip_min", np.float32(-1.0)), b.const("clip_max", np.float32(1.0))])
    x = b.sign(x, "checked")
    x, _, fan = b.binary_conv(x, 16, 16, 3, pad=1, form="pm1", layer="after-hardtanh")
    x = b.bn_random(x, 16, in_std=np.sqrt(fan))
    x = b.op("Clip", [x, b.const("clip_min", np.float32(-0.5)), b.const("clip_max", np.float32(3.0))])
    x = b.sign(x, "checked")
    x, _, fan = b.binary_conv(x, 16, 16, 1, form="pm1", layer="after-asymmetric-clip")
    x = b.bn_random(x, 16, in_std=np.sqrt(fan))
    x = b.threshold_sign(x, (b.rng.standard_normal((1, 16, 1, 1)) * 0.3).astype(np.float32), "GreaterOrEqual")
    x, _, fan = b.binary_conv(x, 16, 16, 3, pad=1, form="pm1", layer="after-threshold")
    x = b.bn_random(x, 16, in_std=np.sqrt(fan))
    x = b.threshold_sign(x, (b.rng.standard_normal((16, 1, 1)) * 0.3).astype(np.float32), "Less")
    x, _, fan = b.binary_conv(x, 16, 8, 1, form="pm1", layer="after-less")
    x = b.bn_random(x, 8, in_std=np.sqrt(fan))
    x = b.sign(x, "checked")
    x = b.op("Add", [x, b.const("ste_offset", np.float32(0.1))])
    x = b.op("Sign", [x])
    x, _, fan = b.binary_conv(x, 8, 8, 3, pad=1, form="pm1", layer="after-ste-sign")
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    x = b.gemm_float(x, 8, 10)
    return b, b.model([1, 3, 8, 8], x, [1, 10]), [1, 3, 8, 8], 7007


# One fixture per operator that ordinary exports contain (issue 15), each in a small graph of
# its own so that a failure names the operator; the ops_* graphs above combine them.
def _head(b: Builder, x, c):
    """GlobalAveragePool -> Flatten -> float Gemm c -> 10."""
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    return b.gemm_float(x, c, 10)


def build_op_logsoftmax():
    """LogSoftmax over the last axis (PyTorch's log_softmax(dim=-1) classifier)."""
    b = Builder("op_logsoftmax", 13, seed=811)
    x = b.gemm_float("input", 16, 10)
    x = b.op("LogSoftmax", [x], axis=-1)
    return b, b.model([1, 16], x, [1, 10]), [1, 16], 8011


def build_op_neg():
    """Neg before a Sign (a negative threshold scale) and on real values."""
    b = Builder("op_neg", 13, seed=812)
    x = b.float_conv("input", 3, 8, 3, pad=1)
    x = b.op("Neg", [x])
    x = b.sign(x, "checked")
    x, _, fan = b.binary_conv(x, 8, 8, 3, pad=1, form="pm1", layer="after-neg")
    x = b.bn_random(x, 8, in_std=np.sqrt(fan))
    x = b.op("Neg", [x])
    x = _head(b, x, 8)
    return b, b.model([1, 3, 6, 6], x, [1, 10]), [1, 3, 6, 6], 8012


def build_op_cast():
    """Cast to float of a real activation and of a binarized one (TorchScript's
    `where(...).to(dtype)`)."""
    b = Builder("op_cast", 13, seed=813)
    x = b.float_conv("input", 3, 8, 3, pad=1)
    x = b.op("Cast", [x], to=TensorProto.FLOAT)
    x = b.sign(x, "checked")
    x = b.op("Cast", [x], to=TensorProto.FLOAT)
    x, _, fan = b.binary_conv(x, 8, 8, 3, pad=1, form="pm1", layer="after-cast")
    x = b.bn_random(x, 8, in_std=np.sqrt(fan))
    x = _head(b, x, 8)
    return b, b.model([1, 3, 6, 6], x, [1, 10]), [1, 3, 6, 6], 8013


def build_op_clip_sign():
    """Sign(Clip(x, lo, hi)) for bounds around 0 (Hardtanh, asymmetric, min or max omitted)
    and for ranges that exclude 0 (Sign is then constant +1 or -1)."""
    b = Builder("op_clip_sign", 13, seed=814)
    f32 = np.float32
    x = b.float_conv("input", 3, 16, 3, pad=1)
    x = b.bn_random(x, 16, in_std=1.0)
    for layer, lo, hi in [("hardtanh", -1.0, 1.0), ("asymmetric", -0.5, 3.0), ("max-only", None, 0.7), ("min-only", -2.0, None)]:
        bounds = ["" if lo is None else b.const("clip_min", f32(lo)), "" if hi is None else b.const("clip_max", f32(hi))]
        x = b.op("Clip", [x] + bounds)
        x = b.sign(x, "checked")
        x, _, fan = b.binary_conv(x, 16, 16, 3 if layer == "hardtanh" else 1, pad=1 if layer == "hardtanh" else 0,
                                  form="pm1", layer=f"after-{layer}")
        x = b.bn_random(x, 16, in_std=np.sqrt(fan))
    branches = []
    for layer, lo, hi, cout in [("around-zero", -1.0, 1.0, 8), ("positive", 0.2, 3.0, 4), ("negative", -3.0, -0.25, 4)]:
        y = b.op("Clip", [x, b.const("clip_min", f32(lo)), b.const("clip_max", f32(hi))])
        y = b.sign(y, "checked")
        y, _, _ = b.binary_conv(y, 16, cout, 1, form="pm1", layer=f"branch-{layer}")
        branches.append(y)
    x = b.op("Concat", branches, axis=1)
    x = _head(b, x, 16)
    return b, b.model([1, 3, 6, 6], x, [1, 10]), [1, 3, 6, 6], 8014


def _op_reducemean(opset: int):
    """ReduceMean over the spatial axes as global pooling: negative axes in an attribute with
    keepdims=1 and a Squeeze (opset 13), an axes input with keepdims=0 (opset 18)."""
    b = Builder(f"op_reducemean_opset{opset}", opset, seed=815)
    x = b.float_conv("input", 3, 8, 3, pad=1)
    x = b.bn_random(x, 8, in_std=1.0)
    if opset >= 18:
        x = b.op("ReduceMean", [x, b.const("axes", np.array([2, 3]), np.int64)], keepdims=0)
    else:
        x = b.op("ReduceMean", [x], axes=[-1, -2], keepdims=1)
        x = b.op("Squeeze", [x, b.const("axes", np.array([2, 3]), np.int64)])
    x = b.gemm_float(x, 8, 10)
    return b, b.model([1, 3, 6, 6], x, [1, 10]), [1, 3, 6, 6], 8015


def build_op_transpose_flatten():
    """Transposes as tf2onnx writes them: NCHW -> NHWC around a Sign and back before a Conv,
    Transpose to NHWC then Flatten, and a Reshape [1, -1] of an NCHW tensor."""
    b = Builder("op_transpose_flatten", 13, seed=816)
    x = b.float_conv("input", 3, 8, 3, pad=1)
    x = b.op("Transpose", [x], perm=[0, 2, 3, 1])
    x = b.sign(x, "checked")
    x = b.op("Transpose", [x], perm=[0, 3, 1, 2])
    x, _, fan = b.binary_conv(x, 8, 8, 3, pad=1, form="pm1", layer="between-transposes")
    x = b.bn_random(x, 8, in_std=np.sqrt(fan))  # [1,8,6,6]
    t = b.op("Transpose", [x], perm=[0, 2, 3, 1])
    t = b.op("Flatten", [t], axis=1)
    t = b.gemm_float(t, 8 * 6 * 6, 10)
    r = b.op("Reshape", [x, b.const("shape", np.array([1, -1]), np.int64)])
    r = b.gemm_float(r, 8 * 6 * 6, 10)
    x = b.op("Add", [t, r])
    return b, b.model([1, 3, 6, 6], x, [1, 10]), [1, 3, 6, 6], 8016


def build_op_threshold():
    """Comparison-based binarization with non-zero thresholds of the shapes exports write:
    Where(x >= t) with t [1,C,1,1], Where(x > t) with a scalar, Where(x < t, -1, 1) with
    t [C,1,1], Where(x <= t, -1, 1) with a full [1,C,H,W] t that repeats per channel,
    Where(t < x) with the constant first, and RSign sign(x + b)."""
    b = Builder("op_threshold", 13, seed=817)
    c, h, w = 8, 6, 6
    x = b.float_conv("input", 3, c, 3, pad=1)
    x = b.bn_random(x, c, in_std=1.0)

    def per_channel(shape):
        return (b.rng.standard_normal(c) * 0.3).astype(np.float32).reshape(shape)

    def then_binary(x, layer):
        x, _, fan = b.binary_conv(x, c, c, 1, form="pm1", layer=layer)
        return b.bn_random(x, c, in_std=np.sqrt(fan))

    x = then_binary(b.threshold_sign(x, per_channel((1, c, 1, 1)), "GreaterOrEqual"), "after-ge")
    x = then_binary(b.threshold_sign(x, np.float32(0.15), "Greater"), "after-gt")
    x = then_binary(b.threshold_sign(x, per_channel((c, 1, 1)), "Less"), "after-lt")
    full = np.broadcast_to(per_channel((1, c, 1, 1)), (1, c, h, w)).copy()
    x = then_binary(b.threshold_sign(x, full, "LessOrEqual"), "after-le-full")
    # t < x: the constant is the first operand.
    t = per_channel((1, c, 1, 1))
    cond = b.op("Less", [b.const("threshold", t), x])
    y = b.op("Where", [cond, b.const("one", np.float32(1.0)), b.const("minus_one", np.float32(-1.0))])
    b.sign_acts.append({"input": x, "output": y, "margin": "checked", "threshold": t})
    x = then_binary(y, "after-t-lt-x")
    # RSign: sign(x + b), b per channel.
    x = b.op("Add", [x, b.const("rsign_bias", per_channel((1, c, 1, 1)))])
    x = b.sign(x, "checked")
    x, _, _ = b.binary_conv(x, c, c, 3, pad=1, form="pm1", layer="after-rsign")
    x = _head(b, x, c)
    return b, b.model([1, 3, h, w], x, [1, 10]), [1, 3, h, w], 8017


FIXTURES = {
    "binary_mlp": build_binary_mlp,
    "binary_cnn": build_binary_cnn,
    "bireal_small": build_bireal_small,
    "xnor_alpha": build_xnor_alpha,
    "binary_cnn_opset11": lambda: _build_cnn_opset(11),
    "binary_cnn_opset21": lambda: _build_cnn_opset(21),
    "ops_head_opset13": lambda: _ops_head(13),
    "ops_head_opset18": lambda: _ops_head(18),
    "ops_binarize": build_ops_binarize,
    "op_logsoftmax": build_op_logsoftmax,
    "op_neg": build_op_neg,
    "op_cast": build_op_cast,
    "op_clip_sign": build_op_clip_sign,
    "op_reducemean_opset13": lambda: _op_reducemean(13),
    "op_reducemean_opset18": lambda: _op_reducemean(18),
    "op_transpose_flatten": build_op_transpose_flatten,
    "op_threshold": build_op_threshold,
}

DESCRIPTIONS = {
    "binary_mlp": "float Gemm -> BN(2-D) -> Sign -> binary Gemm(transB=1) -> BN -> Sign -> "
    "binary MatMul -> Add -> Relu -> float Gemm -> Softmax",
    "binary_cnn": "float Conv+BN -> Sign -> binary Conv s2 p1 -> BN -> Sign -> binary Conv p1 "
    "-> BN -> PRelu -> MaxPool -> Sign -> binary Conv1x1 -> BN -> Clip -> AveragePool -> "
    "Flatten -> Gemm",
    "bireal_small": "Bi-Real-Net-18-like ResNet (16/32/64/128, 2 blocks x 2 units per stage), "
    "real-valued shortcut around every binary 3x3 conv, AvgPool+Conv1x1+BN downsampling",
    "xnor_alpha": "XNOR-Net alpha-scaled binary weights (Mul(W_pm1, alpha), alpha via "
    "initializer and via Constant node), binary Gemm with Mul(Sign(W_real), alpha_row), "
    "Pad+Conv(pads=0), Identity, Concat of two branches, Dropout, Reshape",
    "binary_cnn_opset11": "small binary CNN in opset 11 (Clip/Pad inputs, Dropout ratio attr)",
    "binary_cnn_opset21": "the same CNN in opset 21 (Dropout ratio/training_mode inputs); "
    "same weights and input as binary_cnn_opset11, so the same expected output",
    "ops_head_opset13": "Neg, Cast(to float), ReduceMean(axes attribute, keepdims=1) as global pooling, "
    "Transpose(NHWC) + Reshape [1,-1], Add, LogSoftmax",
    "ops_head_opset18": "the same head in opset 18: ReduceMean with an axes input and keepdims=0, "
    "Transpose(NHWC) + Flatten",
    "ops_binarize": "Sign(Clip(-1,1)), Sign(Clip(-0.5,3)), Where(x >= t) and Where(x < t) with per-channel "
    "thresholds, Sign(Sign(x) + 0.1)",
    "op_logsoftmax": "LogSoftmax(axis=-1) after a Gemm",
    "op_neg": "Neg before a Sign and on real values",
    "op_cast": "Cast(to float) of a real and of a binarized activation",
    "op_clip_sign": "Sign(Clip(x, lo, hi)) with bounds (-1,1), (-0.5,3), (none,0.7), (-2,none), and (0.2,3), "
    "(-3,-0.25) where Sign is constant",
    "op_reducemean_opset13": "ReduceMean(axes=[-1,-2], keepdims=1) + Squeeze as global pooling",
    "op_reducemean_opset18": "ReduceMean(axes input [2,3], keepdims=0) as global pooling",
    "op_transpose_flatten": "Transpose NHWC -> Sign -> Transpose NCHW -> binary Conv; Transpose + Flatten; Reshape [1,-1]",
    "op_threshold": "Where(x >= t), Where(x > t), Where(x < t, -1, 1), Where(x <= t, -1, 1) with a full-shape t, "
    "Where(t < x), Sign(x + b)",
}


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def ort_session(model_bytes: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def run_model(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    out = ort_session(model.SerializeToString()).run(["output"], {"input": x})[0]
    return np.asarray(out, dtype=np.float32)


def probe_signs(model: onnx.ModelProto, sign_acts: list[dict], x: np.ndarray):
    """Runs the model with every activation-Sign input exposed; returns (output, inputs)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [s["input"] for s in sign_acts if s["input"] != "output"]
    for n in dict.fromkeys(names):
        probe.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    sess = ort_session(probe.SerializeToString())
    outs = sess.run(["output"] + names, {"input": x})
    vals = dict(zip(["output"] + names, outs))
    return np.asarray(vals["output"], dtype=np.float32), [vals[s["input"]] for s in sign_acts]


def margins(sign_acts, sign_inputs):
    res = []
    for s, v in zip(sign_acts, sign_inputs):
        v = np.asarray(v, dtype=np.float64)
        rms = float(np.sqrt(np.mean(v * v)))
        mn = float(np.min(np.abs(v - np.asarray(s.get("threshold", 0.0), dtype=np.float64))))
        res.append({"sign_output": s["output"], "kind": s["margin"], "numel": int(v.size),
                    "min_abs": mn, "rms": rms, "min_abs_over_rms": mn / rms if rms else 0.0})
    return res


def argmax_gap(out: np.ndarray) -> float:
    flat = np.sort(out.reshape(-1))
    return float((flat[-1] - flat[-2]) / np.max(np.abs(flat)))


def pick_input(model, sign_acts, shape, seed0):
    """First input seed >= seed0 satisfying the Sign-margin and argmax-gap requirements."""
    for seed in range(seed0, seed0 + MAX_INPUT_SEED_TRIES):
        x = np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)
        out, sin = probe_signs(model, sign_acts, x)
        ms = margins(sign_acts, sin)
        if all(m["min_abs_over_rms"] >= SIGN_MARGIN_REL for m in ms) and \
                argmax_gap(out) >= ARGMAX_GAP_REL:
            return seed, x, out, ms
    raise RuntimeError(f"no input seed in [{seed0}, {seed0 + MAX_INPUT_SEED_TRIES}) meets the margins")


def model_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def generate(out_dir: Path, log=print) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": "tools/onnx_fixtures/gen_fixtures.py",
        "tolerance_rule": TOLERANCE_RULE,
        "expected_from": "onnxruntime CPUExecutionProvider, ORT_DISABLE_ALL, 1 intra-op thread",
        "generated_with": {"onnx": onnx.__version__, "onnxruntime": ort.__version__,
                           "numpy": np.__version__},
        "fixtures": {},
    }
    for name, fn in FIXTURES.items():
        b, model, in_shape, input_seed0 = fn()
        onnx.checker.check_model(model, full_check=True)
        seed, x, out_probe, ms = pick_input(model, b.sign_acts, in_shape, input_seed0)
        out = run_model(model, x)  # plain model, exactly what the fixture records
        if not np.array_equal(out, out_probe):
            log(f"note: {name}: probe run differs from plain run by "
                f"{float(np.max(np.abs(out - out_probe)))}")
        (out_dir / f"{name}.onnx").write_bytes(model_bytes(model))
        np.save(out_dir / f"{name}.input.npy", x)
        np.save(out_dir / f"{name}.expected.npy", out)
        ops = [n.op_type for n in model.graph.node]
        manifest["fixtures"][name] = {
            "description": DESCRIPTIONS[name],
            "files": {"model": f"{name}.onnx", "input": f"{name}.input.npy",
                      "expected": f"{name}.expected.npy"},
            "opset": model.opset_import[0].version,
            "ir_version": model.ir_version,
            "input_name": "input",
            "output_name": "output",
            "input_shape": list(x.shape),
            "output_shape": list(out.shape),
            "input_seed": seed,
            "tolerance_rule": TOLERANCE_RULE,
            "node_op_types": ops,
            "binary_weights": b.weight_forms,
            "stats": {
                "expected_argmax": int(np.argmax(out)),
                "expected_max_abs": float(np.max(np.abs(out))),
                "argmax_gap_rel": argmax_gap(out),
                "sign_inputs": ms,
            },
        }
        log(f"{name}: opset {manifest['fixtures'][name]['opset']}, input {list(x.shape)} -> "
            f"output {list(out.shape)}, {len(ops)} nodes, input seed {seed}, "
            f"{(out_dir / f'{name}.onnx').stat().st_size} bytes")
    (out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --------------------------------------------------------------------------------------------
# --check
# --------------------------------------------------------------------------------------------
def _strip_volatile(manifest: dict) -> dict:
    m = json.loads(json.dumps(manifest))
    m.pop("generated_with", None)
    for f in m.get("fixtures", {}).values():
        f.pop("stats", None)
    return m


def _graph_diff(a: onnx.ModelProto, b: onnx.ModelProto) -> str | None:
    if [(o.domain, o.version) for o in a.opset_import] != [(o.domain, o.version) for o in b.opset_import]:
        return "opset_import differs"
    ga, gb = a.graph, b.graph
    if ga.SerializeToString() == gb.SerializeToString():
        return None
    na, nb = [n.SerializeToString() for n in ga.node], [n.SerializeToString() for n in gb.node]
    if len(na) != len(nb):
        return f"node count {len(na)} (committed) vs {len(nb)} (regenerated)"
    for i, (x, y) in enumerate(zip(na, nb)):
        if x != y:
            return f"node #{i} ({ga.node[i].op_type} '{ga.node[i].name}') differs"
    ia = {t.name: numpy_helper.to_array(t) for t in ga.initializer}
    ib = {t.name: numpy_helper.to_array(t) for t in gb.initializer}
    if ia.keys() != ib.keys():
        return "initializer names differ"
    for k in ia:
        if ia[k].shape != ib[k].shape or not np.array_equal(ia[k], ib[k]):
            return f"initializer '{k}' differs"
    return "graph inputs/outputs/metadata differ"


def check_exported(committed: Path, errors: list[str]) -> tuple[set[str], int]:
    """The fixtures exported offline by PyTorch and tf2onnx cannot be regenerated here (no
    torch or TensorFlow in CI): check that their files are the ones recorded (sha256), and
    that ONNX Runtime, run now on them, still gives the committed expected output: within
    1e-5 of the largest magnitude where the expectation came from ONNX Runtime, within the
    Swift tests' 1e-4 and with the same argmax where it came from Keras."""
    path = committed / exported.EXPORTED_MANIFEST
    if not path.exists():
        return set(), 0
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        errors.append(f"{exported.EXPORTED_MANIFEST} unreadable: {e}")
        return set(), 0
    files = {exported.EXPORTED_MANIFEST}
    for name, entry in manifest.get("fixtures", {}).items():
        files |= set(entry["files"]) | {entry["input"], entry["expected"]}
        missing = [f for f in list(entry["files"]) + [entry["input"], entry["expected"]] if not (committed / f).exists()]
        if missing:
            errors.append(f"{name}: missing {missing}")
            continue
        for f, digest in entry["files"].items():
            if exported.sha256(committed / f) != digest:
                errors.append(f"{f}: sha256 differs from {exported.EXPORTED_MANIFEST} (re-export with the export_*.py scripts)")
        model_file = next(f for f in entry["files"] if f.endswith(".onnx"))
        x = np.load(committed / entry["input"])
        expected = np.load(committed / entry["expected"])
        try:
            got = exported.run_ort(committed / model_file, x)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{model_file}: onnxruntime failed: {e}")
            continue
        if got.shape != expected.shape:
            errors.append(f"{name}: ORT output shape {got.shape} vs expected {expected.shape}")
            continue
        diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
        scale = float(np.max(np.abs(expected)))
        from_ort = entry["expected_from"].startswith("onnxruntime")
        bound = (CHECK_RTOL if from_ort else 1e-4) * scale
        if diff > bound or (not from_ort and int(np.argmax(got)) != int(np.argmax(expected))):
            errors.append(f"{name}: onnxruntime {ort.__version__} differs from the expected output "
                          f"({entry['expected_from']}) by {diff:.3g} > {bound:.3g} or in argmax")
    return files, len(manifest.get("fixtures", {}))


def check(committed: Path) -> int:
    errors: list[str] = []
    notes: list[str] = []
    if not committed.is_dir():
        print(f"FAIL: {committed} does not exist; run gen_fixtures.py first", file=sys.stderr)
        return 1
    exported_files, exported_count = check_exported(committed, errors)
    with tempfile.TemporaryDirectory(prefix="onnx_fixtures_") as tmp:
        fresh = Path(tmp)
        manifest = generate(fresh, log=lambda *_: None)
        want_files = sorted({p.name for p in fresh.iterdir()} | exported_files)
        have_files = sorted(p.name for p in committed.iterdir())
        if want_files != have_files:
            errors.append(f"file set differs: missing {sorted(set(want_files) - set(have_files))}, "
                          f"unexpected {sorted(set(have_files) - set(want_files))}")
        try:
            old_manifest = json.loads((committed / "MANIFEST.json").read_text())
            if _strip_volatile(old_manifest) != _strip_volatile(manifest):
                errors.append("MANIFEST.json: shapes/op types/seeds/weight forms differ from a fresh run")
        except (OSError, ValueError) as e:
            errors.append(f"MANIFEST.json unreadable: {e}")

        for name in FIXTURES:
            c_onnx, f_onnx = committed / f"{name}.onnx", fresh / f"{name}.onnx"
            if not c_onnx.exists():
                continue
            cb, fb = c_onnx.read_bytes(), f_onnx.read_bytes()
            if cb != fb:
                d = _graph_diff(onnx.load_from_string(cb), onnx.load_from_string(fb))
                if d is None:
                    notes.append(f"{name}.onnx: serialized bytes differ but graphs are identical")
                else:
                    errors.append(f"{name}.onnx: stale model ({d})")
            try:
                c_in = np.load(committed / f"{name}.input.npy")
                c_exp = np.load(committed / f"{name}.expected.npy")
            except OSError as e:
                errors.append(f"{name}: {e}")
                continue
            f_in = np.load(fresh / f"{name}.input.npy")
            f_exp = np.load(fresh / f"{name}.expected.npy")
            if c_in.dtype != np.float32 or c_in.shape != f_in.shape or not np.array_equal(c_in, f_in):
                errors.append(f"{name}.input.npy: differs from a fresh run")
            # ORT on the committed model + committed input, and the fresh run, vs. expected.
            try:
                ort_now = run_model(onnx.load_from_string(cb), c_in)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{name}.onnx: onnxruntime failed: {e}")
                continue
            for label, got in (("committed model", ort_now), ("regenerated model", f_exp)):
                if c_exp.dtype != np.float32 or got.shape != c_exp.shape:
                    errors.append(f"{name}.expected.npy: shape/dtype {c_exp.shape}/{c_exp.dtype} "
                                  f"vs ORT {got.shape}/{got.dtype} ({label})")
                    continue
                diff = float(np.max(np.abs(got.astype(np.float64) - c_exp)))
                bound = CHECK_RTOL * float(np.max(np.abs(c_exp)))
                if diff > bound:
                    errors.append(f"{name}.expected.npy: onnxruntime {ort.__version__} on the "
                                  f"{label} differs by {diff:.3g} > {bound:.3g} (1e-5 * max|expected|)")
    for n in notes:
        print(f"note: {n}")
    if errors:
        print("ONNX fixtures are STALE or broken:", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        print("Regenerate with: python3 tools/onnx_fixtures/gen_fixtures.py "
              "(pinned versions: tools/onnx_fixtures/requirements.txt)", file=sys.stderr)
        return 1
    print(f"ONNX fixtures up to date: {len(FIXTURES)} generated and {exported_count} exported fixtures match "
          f"(onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__})")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with the committed fixtures")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"fixture directory (default {DEFAULT_OUT.relative_to(REPO)})")
    args = ap.parse_args()
    if args.check:
        return check(args.out)
    m = generate(args.out)
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(m['fixtures'])} fixtures to {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Export small BNNs written the way the public Bi-Real-Net, ReActNet and XNOR-Net PyTorch
code writes them, with torch.onnx.export (both exporters), and record ONNX Runtime's output.

Writes into Tests/Fixtures/onnx/ for each family F, exporter E (dynamo, torchscript) and
opset O (13, 17, 18):
    torch_F_E_opsetO.onnx (+ .onnx.data for dynamo, which writes external data),
named by the opset the file really has: torch 2.15's dynamo exporter cannot down-convert
these graphs (the onnx version converter asserts on ReduceMean's axes input), warns, and
writes opset 18 whatever was asked, so its fixture is torch_F_dynamo_opset18 with
"requested_opsets" [13, 17, 18] in EXPORTED.json;
    .input.npy, .expected.npy (ONNX Runtime, float32)
and the entries of EXPORTED.json. Needs torch 2.15 (CPU is enough) and onnxscript:

    python3.11 -m venv .build-venv-torch
    .build-venv-torch/bin/pip install torch==2.15.0 onnxscript onnx==1.23.2 onnxruntime==1.32.0
    .build-venv-torch/bin/python tools/onnx_fixtures/export_torch.py

Families (tiny widths; the module code follows the public repositories' forward passes):
  bireal   Bi-Real-Net: BinaryActivation (the piecewise-polynomial STE
           `sign(x).detach() - out3.detach() + out3`), HardBinaryConv (alpha = mean|w| per
           channel, `alpha * sign(w)` with the STE `a.detach() - clamp(w).detach() + clamp(w)`),
           BN, real-valued shortcut; downsampling shortcut AvgPool 2x2 + float 1x1 conv + BN.
  reactnet ReActNet-A: LearnableBias (`x + bias.expand_as(x)`), the ApproxSign STE, RPReLU
           (shift, PReLU, shift), 3x3 binary conv + BN + shortcut (AvgPool when strided), and the
           channel-doubling pair of 1x1 binary convs whose outputs are concatenated.
  xnor     XNOR-Net MLP: Linear, BatchNorm1d, Hardtanh, BinActive (sign), BinLinear
           (alpha * sign(w)), a threshold binarization `where(x >= t, 1, -1)` with learnable t,
           LogSoftmax.
BatchNorm statistics come from a batch of random inputs, then scales are drawn at random with
about a quarter negative.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exported  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "onnx"
OPSETS = (13, 17, 18)
EXPORTERS = ("dynamo", "torchscript")


# ---------------------------------------------------------------- Bi-Real-Net (liuzechun/Bi-Real-net)
class BinaryActivation(nn.Module):
    def forward(self, x):
        out_forward = torch.sign(x)
        mask1 = x < -1
        mask2 = x < 0
        mask3 = x < 1
        out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
        out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
        out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
        out = out_forward.detach() - out3.detach() + out3
        return out


class HardBinaryConv(nn.Module):
    def __init__(self, in_chn, out_chn, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.number_of_weights = in_chn * out_chn * kernel_size * kernel_size
        self.shape = (out_chn, in_chn, kernel_size, kernel_size)
        self.weights = nn.Parameter(torch.randn((self.number_of_weights, 1)) * 0.1, requires_grad=True)

    def forward(self, x):
        real_weights = self.weights.view(self.shape)
        scaling_factor = torch.mean(torch.mean(torch.mean(abs(real_weights), dim=3, keepdim=True), dim=2, keepdim=True), dim=1, keepdim=True)
        scaling_factor = scaling_factor.detach()
        binary_weights_no_grad = scaling_factor * torch.sign(real_weights)
        cliped_weights = torch.clamp(real_weights, -1.0, 1.0)
        binary_weights = binary_weights_no_grad.detach() - cliped_weights.detach() + cliped_weights
        return F.conv2d(x, binary_weights, stride=self.stride, padding=self.padding)


class BiRealBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.binary_activation = BinaryActivation()
        self.binary_conv = HardBinaryConv(inplanes, planes, stride=stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.binary_activation(x)
        out = self.binary_conv(out)
        out = self.bn1(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return out


class BiRealNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        down = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2), nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.layers = nn.Sequential(BiRealBlock(8, 8), BiRealBlock(8, 16, stride=2, downsample=down), BiRealBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.layers(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


# ---------------------------------------------------------------- ReActNet-A (liuzechun/ReActNet)
class LearnableBias(nn.Module):
    def __init__(self, out_chn):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(1, out_chn, 1, 1) * 0.2, requires_grad=True)

    def forward(self, x):
        return x + self.bias.expand_as(x)


class ReActConv(nn.Module):
    """ReActNet's HardBinaryConv: weight parameter used directly."""

    def __init__(self, in_chn, out_chn, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.randn(out_chn, in_chn, kernel_size, kernel_size) * 0.1)

    def forward(self, x):
        real_weights = self.weight
        scaling_factor = torch.mean(torch.mean(torch.mean(abs(real_weights), dim=3, keepdim=True), dim=2, keepdim=True), dim=1, keepdim=True)
        scaling_factor = scaling_factor.detach()
        binary_weights_no_grad = scaling_factor * torch.sign(real_weights)
        cliped_weights = torch.clamp(real_weights, -1.0, 1.0)
        binary_weights = binary_weights_no_grad.detach() - cliped_weights.detach() + cliped_weights
        return F.conv2d(x, binary_weights, stride=self.stride, padding=self.padding)


class ReActBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.move11 = LearnableBias(inplanes)
        self.binary_3x3 = ReActConv(inplanes, inplanes, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.move12 = LearnableBias(inplanes)
        self.prelu1 = nn.PReLU(inplanes)
        self.move13 = LearnableBias(inplanes)
        self.move21 = LearnableBias(inplanes)
        if inplanes == planes:
            self.binary_pw = ReActConv(inplanes, planes, 1, 1, 0)
            self.bn2 = nn.BatchNorm2d(planes)
        else:
            self.binary_pw_down1 = ReActConv(inplanes, inplanes, 1, 1, 0)
            self.binary_pw_down2 = ReActConv(inplanes, inplanes, 1, 1, 0)
            self.bn2_1 = nn.BatchNorm2d(inplanes)
            self.bn2_2 = nn.BatchNorm2d(inplanes)
        self.move22 = LearnableBias(planes)
        self.prelu2 = nn.PReLU(planes)
        self.move23 = LearnableBias(planes)
        self.binary_activation = BinaryActivation()
        self.stride, self.inplanes, self.planes = stride, inplanes, planes
        if self.inplanes != self.planes:
            self.pooling = nn.AvgPool2d(2, 2)

    def forward(self, x):
        out1 = self.move11(x)
        out1 = self.binary_activation(out1)
        out1 = self.binary_3x3(out1)
        out1 = self.bn1(out1)
        if self.stride == 2:
            x = self.pooling(x)
        out1 = x + out1
        out1 = self.move12(out1)
        out1 = self.prelu1(out1)
        out1 = self.move13(out1)
        out2 = self.move21(out1)
        out2 = self.binary_activation(out2)
        if self.inplanes == self.planes:
            out2 = self.binary_pw(out2)
            out2 = self.bn2(out2)
            out2 += out1
        else:
            out2_1 = self.binary_pw_down1(out2)
            out2_2 = self.binary_pw_down2(out2)
            out2_1 = self.bn2_1(out2_1)
            out2_2 = self.bn2_2(out2_2)
            out2_1 += out1
            out2_2 += out1
            out2 = torch.cat([out2_1, out2_2], dim=1)
        out2 = self.move22(out2)
        out2 = self.prelu2(out2)
        out2 = self.move23(out2)
        return out2


class ReActNetA(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8))
        self.feature = nn.Sequential(ReActBlock(8, 8, 1), ReActBlock(8, 16, 2))
        self.pool1 = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.feature(self.stem(x))
        x = self.pool1(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


# ---------------------------------------------------------------- XNOR-Net MLP (jiecaoyu/XNOR-Net-PyTorch style)
class BinActive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.sign()

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad = grad_output.clone()
        grad[input.ge(1)] = 0
        grad[input.le(-1)] = 0
        return grad


class BinLinear(nn.Linear):
    def forward(self, x):
        alpha = self.weight.abs().mean(dim=1, keepdim=True)
        return F.linear(x, alpha * torch.sign(self.weight), self.bias)


class ThresholdSign(nn.Module):
    """Binarization with a learnable per-feature threshold: +1 where x >= t."""

    def __init__(self, features):
        super().__init__()
        self.t = nn.Parameter(torch.randn(features) * 0.3)

    def forward(self, x):
        return torch.where(x >= self.t, torch.ones_like(x), -torch.ones_like(x))


class XnorMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.fc2 = BinLinear(32, 32, bias=False)
        self.bn2 = nn.BatchNorm1d(32)
        self.threshold = ThresholdSign(32)
        self.fc3 = BinLinear(32, 32, bias=True)
        self.bn3 = nn.BatchNorm1d(32)
        self.fc4 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.hardtanh(self.bn1(self.fc1(x)))
        x = BinActive.apply(x)
        x = F.hardtanh(self.bn2(self.fc2(x)))
        x = self.threshold(x)
        x = F.hardtanh(self.bn3(self.fc3(x)))
        x = BinActive.apply(x)
        return F.log_softmax(self.fc4(x), dim=1)


FAMILIES = {
    "bireal": (BiRealNet, (1, 3, 12, 12), 8101),
    "reactnet": (ReActNetA, (1, 3, 16, 16), 8202),
    "xnor": (XnorMLP, (1, 1, 8, 8), 8303),
}


def calibrate(model, shape, seed):
    """BatchNorm statistics from one random batch, then random scales (about a quarter
    negative) and shifts; PReLU slopes random."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.rand((64,) + shape[1:], generator=g) * 2 - 1)
    model.eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                sign = torch.where(torch.rand(c, generator=g) < 0.25, -1.0, 1.0)
                m.weight.copy_((torch.rand(c, generator=g) + 0.5) * sign)
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)


def export(model, x, path: Path, exporter: str, opset: int):
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset,
                              input_names=["input"], output_names=["output"])
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["output"])


def main() -> int:
    torch.manual_seed(0)
    manifest = exported.load_manifest(OUT)
    only = set(sys.argv[1:])
    for family, (cls, shape, seed) in FAMILIES.items():
        if only and family not in only:
            continue
        torch.manual_seed(seed)
        model = cls()
        calibrate(model, shape, seed)
        for exporter in EXPORTERS:
            for opset in OPSETS:
                staging = OUT / f"torch_{family}_{exporter}_staging.onnx"
                example = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
                export(model, example, staging, exporter, opset)
                actual = next(o.version for o in onnx.load(str(staging), load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))
                name = f"torch_{family}_{exporter}_opset{actual}"
                path = OUT / f"{name}.onnx"
                for suffix in ("", ".data"):
                    (OUT / f"{staging.name}{suffix}").unlink(missing_ok=True)
                if name in manifest["fixtures"] and manifest["fixtures"][name].get("_run") == id(manifest):
                    manifest["fixtures"][name]["requested_opsets"].append(opset)
                    continue
                # Exported again under its final name: dynamo names the external data file after it.
                export(model, example, path, exporter, opset)
                onnx.checker.check_model(str(path), full_check=True)
                for tries in range(500):
                    x = (np.random.default_rng(seed * 10 + tries).uniform(-1, 1, shape)).astype(np.float32)
                    ok, ort_out, ms = exported.acceptable(path, x)
                    if ok:
                        break
                else:
                    raise RuntimeError(f"{name}: no input met the margins")
                with torch.no_grad():
                    torch_out = model(torch.from_numpy(x)).numpy()
                diff = float(np.max(np.abs(ort_out - torch_out)))
                scale = float(np.max(np.abs(ort_out)))
                assert diff <= 1e-4 * scale and np.argmax(ort_out) == np.argmax(torch_out), (name, diff, scale)
                exported.record(OUT, manifest, name, path, x, ort_out, "onnxruntime CPUExecutionProvider, ORT_DISABLE_ALL, 1 thread", ms, {
                    "exporter": f"torch.onnx.export(dynamo={exporter == 'dynamo'}, opset_version={opset}), torch {torch.__version__.split('+')[0]}",
                    "family": family, "input_seed": seed * 10 + tries, "torch_vs_expected_max_abs_diff": diff,
                    "requested_opsets": [opset], "_run": id(manifest),
                })
                files = exported.files_of(path)
                size = sum((OUT / f).stat().st_size for f in files)
                print(f"{name}: {' + '.join(files)} ({size} bytes), torch vs ORT {diff:.3g} (scale {scale:.3g}), "
                      f"min margin {min((m['min_over_rms'] for m in ms), default=None)}")
    for entry in manifest["fixtures"].values():
        entry.pop("_run", None)
    exported.save_manifest(OUT, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Train binary neural networks (BNNs) on Fashion-MNIST and export them to ONNX.

Two models are trained with a straight-through estimator (STE):

  bnn-mlp  Flatten -> float Gemm 784x256 -> BN -> Sign
           -> binary Gemm 256x256 -> BN -> Sign
           -> binary Gemm 256x256 -> BN -> Sign
           -> float Gemm 256x10 (+bias) -> logits

  bnn-cnn  float  Conv 1->64   3x3 p1 -> BN -> MaxPool 2x2 -> Sign   (28 -> 14)
           binary Conv 64->64  3x3 p1 -> BN -> Sign                 (14)
           binary Conv 64->64  3x3 p1 -> BN -> MaxPool 2x2 -> Sign   (14 -> 7)
           binary Conv 64->128 3x3 p1 -> BN -> MaxPool 2x2 -> Sign   (7 -> 3, floor)
           -> Flatten (1152) -> float Gemm 1152x10 (+bias) -> logits

"binary" layers: weights are sign(w) of latent weights (sign(0) = +1), no bias,
and their input is torch.sign of the previous activation (ONNX ``Sign``). The
first layer (float weights, float input) and the last layer (float weights +
bias, binary input) stay full precision, as is customary for BNNs.

The ONNX files come from ``torch.onnx.export`` of the trained model, as a user
would export it, with either exporter (``--exporter``; by default bnn-mlp uses
the TorchScript one and bnn-cnn the dynamo one, so the samples cover both):
dynamo (opset 18, weights in ``NAME.onnx.data``, the first layer's BatchNorm
folded into it) or TorchScript (``dynamo=False``, opset 13, one file). Either
way the binary weights reach the graph as ``where(w >= 0, 1, -1)`` of the
latent weights (folded by the exporter or by BitFleet's converter).

Graph input : "input"  float32 [1, 1, 28, 28], already normalized:
              (pixel/255 - 0.2860) / 0.3530
Graph output: "logits" float32 [1, 10]
Static shapes.

Reproduce (from the repository root):
    python3 tools/models/train_fashion_mnist.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fashion_mnist as fm  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Models", "fashion-mnist")

OPSET = 13
BN_EPS = 1e-5


# --------------------------------------------------------------------------
# Binarization with straight-through estimators
# --------------------------------------------------------------------------


class SignActSTE(torch.autograd.Function):
    """Forward: torch.sign (same as ONNX Sign, sign(0) = 0).
    Backward: hardtanh STE, gradient passes where |x| <= 1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


class SignWeightSTE(torch.autograd.Function):
    """Forward: +1 if w >= 0 else -1. Backward: identity restricted to |w| <= 1
    (latent weights are also clipped to [-1, 1] after every optimizer step)."""

    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return binarize_weight(w)

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1).to(g.dtype)


def binarize_weight(w: torch.Tensor) -> torch.Tensor:
    # Scalars rather than ones_like(w): the same values, but an exported graph then holds
    # two scalar constants instead of two weight-sized ones.
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


class SignAct(nn.Module):
    def forward(self, x):
        return SignActSTE.apply(x)


class BinaryLinear(nn.Linear):
    def __init__(self, fin, fout):
        super().__init__(fin, fout, bias=False)

    def forward(self, x):
        return F.linear(x, SignWeightSTE.apply(self.weight))


class BinaryConv2d(nn.Conv2d):
    def __init__(self, cin, cout):
        super().__init__(cin, cout, 3, padding=1, bias=False)

    def forward(self, x):
        return F.conv2d(x, SignWeightSTE.apply(self.weight), None, self.stride, self.padding)


def clip_binary_weights(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (BinaryLinear, BinaryConv2d)):
                m.weight.clamp_(-1.0, 1.0)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


class BnnMLP(nn.Module):
    hidden = 256

    def __init__(self):
        super().__init__()
        h = self.hidden
        self.fc1 = nn.Linear(784, h, bias=False)  # full precision
        self.bn1 = nn.BatchNorm1d(h, eps=BN_EPS)
        self.bfc2 = BinaryLinear(h, h)
        self.bn2 = nn.BatchNorm1d(h, eps=BN_EPS)
        self.bfc3 = BinaryLinear(h, h)
        self.bn3 = nn.BatchNorm1d(h, eps=BN_EPS)
        self.fc_out = nn.Linear(h, 10)  # full precision, binary input
        self.sign = SignAct()

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = self.sign(self.bn1(self.fc1(x)))
        x = self.sign(self.bn2(self.bfc2(x)))
        x = self.sign(self.bn3(self.bfc3(x)))
        return self.fc_out(x)


class BnnCNN(nn.Module):
    c1, c2, c3, c4 = 64, 64, 64, 128
    # which blocks end with a 2x2 max-pool (block 1 = full-precision conv1)
    pool = {1: True, 2: False, 3: True, 4: True}

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, self.c1, 3, padding=1, bias=False)  # full precision
        self.bn1 = nn.BatchNorm2d(self.c1, eps=BN_EPS)
        self.bconv2 = BinaryConv2d(self.c1, self.c2)
        self.bn2 = nn.BatchNorm2d(self.c2, eps=BN_EPS)
        self.bconv3 = BinaryConv2d(self.c2, self.c3)
        self.bn3 = nn.BatchNorm2d(self.c3, eps=BN_EPS)
        self.bconv4 = BinaryConv2d(self.c3, self.c4)
        self.bn4 = nn.BatchNorm2d(self.c4, eps=BN_EPS)
        self.fc_out = nn.Linear(self.c4 * 3 * 3, 10)  # full precision, binary input
        self.sign = SignAct()

    def forward(self, x):
        convs = [self.conv1, self.bconv2, self.bconv3, self.bconv4]
        bns = [self.bn1, self.bn2, self.bn3, self.bn4]
        for i, (conv, bn) in enumerate(zip(convs, bns), start=1):
            x = bn(conv(x))
            if self.pool[i]:
                x = F.max_pool2d(x, 2)
            x = self.sign(x)
        return self.fc_out(torch.flatten(x, 1))


# --------------------------------------------------------------------------
# Training / evaluation
# --------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def train(model, x_train, y_train, *, epochs, batch_size, lr, seed, augment, log):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = x_train.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + np.cos(np.pi * min(s, total) / total)))
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        loss_sum, correct = 0.0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if augment:
                flip = torch.rand(xb.shape[0], generator=g) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            clip_binary_weights(model)
            loss_sum += loss.item() * xb.shape[0]
            correct += (out.argmax(1) == yb).sum().item()
        log(f"  epoch {ep + 1}/{epochs}: loss {loss_sum / n:.4f} "
            f"train-acc {correct / n:.4f} ({time.time() - t0:.0f}s)")
    return time.time() - t0


@torch.no_grad()
def predict(model, x, batch_size=500):
    model.eval()
    preds, logits = [], []
    for i in range(0, x.shape[0], batch_size):
        out = model(x[i:i + batch_size])
        logits.append(out)
        preds.append(out.argmax(1))
    return torch.cat(preds).numpy().astype(np.uint8), torch.cat(logits).numpy()


def frozen_binary_copy(model: nn.Module) -> nn.Module:
    """Copy of `model` whose binary layers hold sign(w) (exactly +/-1)."""
    import copy
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (BinaryLinear, BinaryConv2d)):
                mod.weight.copy_(binarize_weight(mod.weight))
    return m


# --------------------------------------------------------------------------
# ONNX export, with PyTorch's own exporter (as a user would)
# --------------------------------------------------------------------------

EXPORTERS = ("dynamo", "torchscript")


def export_onnx(model: nn.Module, path: str, exporter: str, meta: dict) -> None:
    """torch.onnx.export of the frozen model. The dynamo exporter (torch's default since
    2.9) writes opset 18 and its weights to `path + ".data"`; the TorchScript exporter
    (dynamo=False) writes opset 13 with the weights inside. The metadata properties are
    added afterwards without rewriting the weights."""
    import onnx
    for stale in (path, path + ".data"):
        if os.path.exists(stale):
            os.remove(stale)
    model = model.eval()
    example = torch.zeros(1, 1, 28, 28)
    if exporter == "dynamo":
        torch.onnx.export(model, (example,), path, dynamo=True, opset_version=18,
                          input_names=["input"], output_names=["logits"])
    else:
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"])
    proto = onnx.load(path, load_external_data=False)
    proto.doc_string = (f"BitFleet {meta['model']}: binary neural network for Fashion-MNIST. "
                        "Input is (pixel/255 - mean)/std.")
    onnx.helper.set_model_props(proto, {k: str(v) for k, v in meta.items()})
    # Saved without touching the weights: the external data file stays as exported.
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    onnx.checker.check_model(path, full_check=True)


def describe(path: str) -> dict:
    import onnx
    from onnx import numpy_helper
    model = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {"nodes": [n.op_type for n in model.graph.node],
            "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "initializer_shapes": {n: list(a.shape) for n, a in inits.items()}}


def ort_predict(path, x_norm: np.ndarray):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    preds = np.empty(x_norm.shape[0], dtype=np.uint8)
    logits = np.empty((x_norm.shape[0], 10), dtype=np.float32)
    for i in range(x_norm.shape[0]):
        out = sess.run(["logits"], {"input": x_norm[i:i + 1]})[0]
        logits[i] = out[0]
        preds[i] = int(np.argmax(out[0]))
    return preds, logits


# --------------------------------------------------------------------------


MODELS = {
    # name: (class, default epochs, batch size, lr, hflip augmentation, exporter)
    # The committed samples use both exporters: bnn-mlp the TorchScript one (one file, which
    # the controller's upload test sends as it is), bnn-cnn the dynamo one (with .onnx.data).
    "bnn-mlp": (BnnMLP, 10, 128, 2e-3, False, "torchscript"),
    "bnn-cnn": (BnnCNN, 8, 128, 2e-3, False, "dynamo"),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="bnn-mlp,bnn-cnn")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--epochs-mlp", type=int, default=None)
    ap.add_argument("--epochs-cnn", type=int, default=None)
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=0, help="debug: use only N training images")
    ap.add_argument("--exporter", choices=EXPORTERS, default=None,
                    help="torch.onnx.export's dynamo exporter (opset 18, weights in NAME.onnx.data) "
                         "or the TorchScript one (dynamo=False, opset 13, one file); default: "
                         "torchscript for bnn-mlp, dynamo for bnn-cnn")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    import onnx
    import onnxruntime

    def log(msg):
        print(msg, flush=True)

    os.makedirs(args.out_dir, exist_ok=True)
    x_tr_u8, y_tr_u8 = fm.load_train(args.data_dir)
    x_te_u8, y_te_u8 = fm.load_test(args.data_dir)
    if args.train_limit:
        x_tr_u8, y_tr_u8 = x_tr_u8[:args.train_limit], y_tr_u8[:args.train_limit]
    x_tr = torch.from_numpy(fm.normalize(x_tr_u8))
    y_tr = torch.from_numpy(y_tr_u8.astype(np.int64))
    x_te_np = fm.normalize(x_te_u8)
    x_te = torch.from_numpy(x_te_np)
    y_te = y_te_u8

    with open(os.path.join(args.out_dir, "labels.txt"), "w") as f:
        f.write("\n".join(fm.LABELS) + "\n")

    acc_path = os.path.join(args.out_dir, "accuracy.json")
    report = {}
    if os.path.exists(acc_path):
        with open(acc_path) as f:
            report = json.load(f)
    report.setdefault("models", {})
    report.update({
        "dataset": "Fashion-MNIST (Debian package dataset-fashion-mnist)",
        "test_images": int(x_te_u8.shape[0]),
        "preprocessing": {"mean": fm.MEAN, "std": fm.STD,
                          "formula": "x = (pixel / 255 - mean) / std, NCHW float32 [1,1,28,28]"},
        "labels": fm.LABELS,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "numpy": np.__version__},
    })

    summaries = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        cls, epochs, bs, lr, augment, exporter = MODELS[name]
        exporter = args.exporter or exporter
        ov = args.epochs_mlp if name == "bnn-mlp" else args.epochs_cnn
        epochs = ov if ov is not None else epochs
        log(f"== {name}: epochs={epochs} batch={bs} lr={lr} seed={args.seed}")
        seed_everything(args.seed)
        model = cls()
        if name == "bnn-cnn":
            # NHWC is ~1.6x faster for max-pool/BN on CPU; numerics are unaffected.
            model = model.to(memory_format=torch.channels_last)
            x_tr_fit = x_tr.contiguous(memory_format=torch.channels_last)
        else:
            x_tr_fit = x_tr
        train_time = train(model, x_tr_fit, y_tr, epochs=epochs, batch_size=bs, lr=lr,
                           seed=args.seed, augment=augment, log=log)

        frozen = frozen_binary_copy(model)
        torch_pred, torch_logits = predict(frozen, x_te)
        torch_acc = float((torch_pred == y_te).mean())
        log(f"  torch (binarized weights) test accuracy: {torch_acc:.4f}  "
            f"train time {train_time:.0f}s")

        meta = {"model": name, "mean": fm.MEAN, "std": fm.STD, "seed": args.seed,
                "epochs": epochs, "labels": ",".join(fm.LABELS),
                "input": "input float32[1,1,28,28] = (pixel/255-mean)/std",
                "output": "logits float32[1,10]"}
        onnx_path = os.path.join(args.out_dir, f"{name}.onnx")
        export_onnx(frozen, onnx_path, exporter, meta)
        desc = describe(onnx_path)
        log(f"  ONNX ({exporter}, opset {desc['opset']}) nodes: {' -> '.join(desc['nodes'])}")

        t0 = time.time()
        ort_pred, ort_logits = ort_predict(onnx_path, x_te_np)
        ort_time = time.time() - t0
        ort_acc = float((ort_pred == y_te).mean())
        agree = int((ort_pred == torch_pred).sum())
        max_diff = float(np.abs(ort_logits - torch_logits).max())
        log(f"  onnxruntime test accuracy: {ort_acc:.4f}; agreement with torch "
            f"{agree}/{len(y_te)}; max |logit diff| {max_diff:.3g} ({ort_time:.0f}s)")
        pred_path = os.path.join(args.out_dir, f"{name}.ort-predictions.bin")
        ort_pred.astype(np.uint8).tofile(pred_path)

        files = [f"{name}.onnx"] + ([f"{name}.onnx.data"] if os.path.exists(onnx_path + ".data") else [])
        sha = {f: hashlib.sha256(open(os.path.join(args.out_dir, f), "rb").read()).hexdigest() for f in files}
        report["models"][name] = {
            "onnxruntime_accuracy": round(ort_acc, 6),
            "torch_accuracy": round(torch_acc, 6),
            "test_images": int(len(y_te)),
            "ort_torch_prediction_agreement": agree,
            "max_abs_logit_diff_ort_vs_torch": max_diff,
            "seed": args.seed,
            "epochs": epochs,
            "batch_size": bs,
            "learning_rate": lr,
            "optimizer": "Adam, cosine decay to 0, latent binary weights clipped to [-1,1]",
            "training_images": int(x_tr.shape[0]),
            "training_time_seconds": round(train_time, 1),
            "torch_threads": args.threads,
            "mean": fm.MEAN,
            "std": fm.STD,
            "onnx_file": f"{name}.onnx",
            "onnx_files_sha256": sha,
            "onnx_bytes": sum(os.path.getsize(os.path.join(args.out_dir, f)) for f in files),
            "exporter": f"torch.onnx.export(dynamo={exporter == 'dynamo'}), torch {torch.__version__.split('+')[0]}",
            "onnx_opset": desc["opset"],
            "predictions_file": f"{name}.ort-predictions.bin",
            "onnx_nodes": desc["nodes"],
        }
        summaries[name] = (ort_acc, agree)
        with open(acc_path, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")

    for name, (acc, agree) in summaries.items():
        log(f"{name}: onnxruntime accuracy {acc:.4f}, ort/torch agreement {agree}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

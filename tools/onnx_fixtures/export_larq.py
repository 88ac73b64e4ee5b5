#!/usr/bin/env python3
"""Export small Larq (Keras) BNNs to ONNX with tf2onnx, as users of larq/larq-zoo do, and
record Keras's own output as the expected result.

Writes into Tests/Fixtures/onnx/ for each model M and opset O (13, 17):
    larq_M_opsetO.onnx, .input.npy, .expected.npy (Keras, float32)
and the entries of EXPORTED.json. Needs tensorflow-cpu 2.15.1, larq 0.14.0, tf2onnx 1.17.0
and onnx 1.17.0 (TF 2.15's ml-dtypes needs that onnx):

    python3.11 -m venv .build-venv-larq
    .build-venv-larq/bin/pip install tensorflow-cpu==2.15.1 larq==0.14.0 tf2onnx==1.17.0 onnx==1.17.0 onnxruntime
    .build-venv-larq/bin/python tools/onnx_fixtures/export_larq.py

Models (tiny widths, so the files stay small and the tests fast):
  bireal   Bi-Real-style: float stem conv + BN; QuantConv2D 3x3 (approx_sign input,
           magnitude_aware_sign kernel) + BN + identity shortcut; a downsampling block whose
           shortcut is AveragePool 2x2 + float 1x1 conv + BN; global pool; Dense.
  quicknet QuickNet-style as larq-zoo writes it: stem conv s2 + BN + ReLU, DepthwiseConv2D
           s2 + BN, 1x1 conv + BN; residual blocks QuantConv2D(ste_sign, ste_sign kernel,
           pad_values=1.0, activation=relu) + BN + add; a transition ReLU -> blur-pool
           DepthwiseConv2D s2 (fixed [1,2,1] kernel) -> 1x1 conv -> BN; ReLU, global pool,
           Dense, softmax.
  mlp      binary MLP: Flatten, QuantDense (float input, ste_sign kernel) + BN, two
           QuantDense (ste_sign input and kernel) + BN, Dense (ste_sign input, float kernel).
BatchNorm statistics come from a batch of random inputs, then scales are drawn at random
with about a quarter negative.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import larq as lq  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exported  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "onnx"
OPSETS = (13, 17)


def quant_conv(filters, kernel, strides=1, input_quantizer="ste_sign", kernel_quantizer="ste_sign", **kw):
    return lq.layers.QuantConv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                                 input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer,
                                 kernel_constraint="weight_clip", **kw)


def bn():
    return tf.keras.layers.BatchNormalization(momentum=0.0, epsilon=1e-5)


def bireal(seed):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((12, 12, 3), name="input")
    x = tf.keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = bn()(x)
    for filters, strides in ((8, 1), (16, 2)):
        shortcut = x
        if strides != 1:
            shortcut = tf.keras.layers.AveragePooling2D(2)(shortcut)
            shortcut = tf.keras.layers.Conv2D(filters, 1, use_bias=False)(shortcut)
            shortcut = bn()(shortcut)
        y = quant_conv(filters, 3, strides, input_quantizer="approx_sign", kernel_quantizer="magnitude_aware_sign")(x)
        y = bn()(y)
        x = tf.keras.layers.add([y, shortcut])
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(10)(x)
    return tf.keras.Model(inp, out, name="larq_bireal"), (12, 12, 3)


def blurpool_initializer(shape, dtype=None):
    # larq-zoo's QuickNet blur pool: a fixed binomial [1, 2, 1] x [1, 2, 1] / 16 per channel.
    k = np.array([1.0, 2.0, 1.0])
    k = np.outer(k, k) / 16.0
    return tf.constant(np.repeat(k[:, :, None, None], shape[2], axis=2), dtype=dtype)


def quicknet(seed):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((16, 16, 3), name="input")
    x = tf.keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(inp)
    x = bn()(x)
    x = tf.keras.layers.Activation("relu")(x)
    x = tf.keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)
    x = bn()(x)
    x = tf.keras.layers.Conv2D(8, 1, use_bias=False)(x)
    x = bn()(x)
    for section, filters in enumerate((8, 16)):
        if section > 0:
            x = tf.keras.layers.Activation("relu")(x)
            x = tf.keras.layers.DepthwiseConv2D(3, depthwise_initializer=blurpool_initializer, padding="same", strides=2,
                                                trainable=False, use_bias=False)(x)
            x = tf.keras.layers.Conv2D(filters, 1, use_bias=False)(x)
            x = bn()(x)
        for _ in range(2):
            residual = x
            y = quant_conv(filters, 3, pad_values=1.0, activation="relu")(x)
            y = bn()(y)
            x = tf.keras.layers.add([y, residual])
    x = tf.keras.layers.Activation("relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(10)(x)
    out = tf.keras.layers.Activation("softmax", dtype="float32")(x)
    return tf.keras.Model(inp, out, name="larq_quicknet"), (16, 16, 3)


def mlp(seed):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((8, 8, 1), name="input")
    x = tf.keras.layers.Flatten()(inp)
    x = lq.layers.QuantDense(32, kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)(x)
    x = bn()(x)
    for _ in range(2):
        x = lq.layers.QuantDense(32, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                 kernel_constraint="weight_clip", use_bias=False)(x)
        x = bn()(x)
    out = lq.layers.QuantDense(10, input_quantizer="ste_sign")(x)
    return tf.keras.Model(inp, out, name="larq_mlp"), (8, 8, 1)


MODELS = {"bireal": (bireal, 7101), "quicknet": (quicknet, 7202), "mlp": (mlp, 7303)}


def calibrate(model, shape, rng):
    """BatchNorm statistics from one random batch (momentum 0), then random scales (about a
    quarter negative) and shifts, so folding must handle negative per-channel scales."""
    batch = rng.uniform(-1, 1, (64,) + shape).astype(np.float32)
    model(batch, training=True)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            c = gamma.shape[0]
            gamma = rng.uniform(0.5, 1.5, c) * np.where(rng.random(c) < 0.25, -1, 1)
            beta = rng.normal(0, 0.3, c)
            layer.set_weights([gamma.astype(np.float32), beta.astype(np.float32), mean, var])


def main() -> int:
    manifest = exported.load_manifest(OUT)
    for name, (build, seed) in MODELS.items():
        model, shape = build(seed)
        calibrate(model, shape, np.random.default_rng(seed))
        for opset in OPSETS:
            fixture = f"larq_{name}_opset{opset}"
            path = OUT / f"{fixture}.onnx"
            spec = (tf.TensorSpec((None,) + shape, tf.float32, name="input"),)
            tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=str(path))
            for tries in range(500):
                x = np.random.default_rng(seed * 10 + tries).uniform(-1, 1, (1,) + shape).astype(np.float32)
                keras_out = model(x, training=False).numpy().astype(np.float32)
                ok, ort_out, ms = exported.acceptable(path, x, keras_out)
                if ok:
                    break
            else:
                raise RuntimeError(f"{fixture}: no input met the margins")
            diff = float(np.max(np.abs(ort_out - keras_out)))
            scale = float(np.max(np.abs(keras_out)))
            assert diff <= 1e-4 * scale and np.argmax(ort_out) == np.argmax(keras_out), (fixture, diff, scale)
            exported.record(OUT, manifest, fixture, path, x, keras_out, "keras (TensorFlow 2.15.1, larq 0.14.0), float32", ms, {
                "exporter": f"tf2onnx {tf2onnx.__version__} (from_keras, opset {opset})",
                "framework": f"tensorflow {tf.__version__}, larq {lq.__version__ if hasattr(lq, '__version__') else '0.14.0'}",
                "family": name, "input_seed": seed * 10 + tries, "ort_vs_expected_max_abs_diff": diff,
            })
            print(f"{fixture}: {path.stat().st_size} bytes, ORT vs Keras {diff:.3g} (scale {scale:.3g}), "
                  f"min margin {min((m['min_over_rms'] for m in ms), default=None)}")
    exported.save_manifest(OUT, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the exporter scripts (export_torch.py, export_larq.py) share: picking an input for
which no activation fed to a binarization is near its threshold, running ONNX Runtime the
way the fixtures record it, and writing a fixture's files and manifest entry.

Only numpy, onnx and onnxruntime are imported here, so gen_fixtures.py --check (which CI
runs without PyTorch or TensorFlow) can use it too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SIGN_MARGIN_REL = 2e-5  # every binarization input: min |x - threshold| >= this * rms(x)
ARGMAX_GAP_REL = 1e-3  # (top1 - top2) >= this * max|output|
TOLERANCE_RULE = "max abs diff <= 1e-4 * max abs expected, same argmax"
EXPORTED_MANIFEST = "EXPORTED.json"


def ort_session(model_path: Path, extra_outputs=()) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not extra_outputs:
        return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    model = onnx.load(str(model_path), load_external_data=True)
    for name in extra_outputs:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_ort(model_path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort_session(model_path)
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x})[0], dtype=np.float32)


def binarization_probes(model: onnx.ModelProto):
    """(tensor, threshold) for every binarization of an activation: the input of each Sign
    whose input is not a constant or a Sign/Sign+c (Larq's ste_sign nests them), and the
    activation input of each comparison with a constant."""
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in model.graph.node for o in n.output}

    def is_const(name):
        if name in consts:
            return True
        n = producer.get(name)
        return n is not None and n.op_type not in ("Shape",) and n.input and all(is_const(i) for i in n.input if i)

    def const_value(name):
        for t in model.graph.initializer:
            if t.name == name:
                return numpy_helper.to_array(t)
        n = producer.get(name)
        if n is not None and n.op_type == "Constant":
            return numpy_helper.to_array(n.attribute[0].t)
        return None

    def is_sign_like(name):
        n = producer.get(name)
        if n is None:
            return False
        if n.op_type == "Sign":
            return True
        if n.op_type in ("Add", "Sub") and any(is_sign_like(i) for i in n.input):
            return True
        return False

    probes = []
    for n in model.graph.node:
        if n.op_type == "Sign" and not is_const(n.input[0]) and not is_sign_like(n.input[0]):
            probes.append((n.input[0], 0.0))
        if n.op_type in ("GreaterOrEqual", "Less", "Greater", "LessOrEqual"):
            a, b = n.input
            if is_const(b) and not is_const(a):
                probes.append((a, const_value(b) if const_value(b) is not None else 0.0))
            elif is_const(a) and not is_const(b):
                probes.append((b, const_value(a) if const_value(a) is not None else 0.0))
    return probes


def margins(model_path: Path, x: np.ndarray):
    model = onnx.load(str(model_path), load_external_data=True)
    probes = binarization_probes(model)
    names = list(dict.fromkeys(p for p, _ in probes))
    sess = ort_session(model_path, names)
    input_name = sess.get_inputs()[0].name
    outs = sess.run(None, {input_name: x})
    values = dict(zip([o.name for o in sess.get_outputs()], outs))
    result = []
    for name, threshold in probes:
        v = np.asarray(values[name], dtype=np.float64)
        t = np.asarray(threshold, dtype=np.float64)
        d = np.abs(v - t)
        rms = float(np.sqrt(np.mean(v * v)))
        result.append({"tensor": name, "numel": int(v.size), "min_abs_distance": float(d.min()), "rms": rms,
                       "min_over_rms": float(d.min()) / rms if rms else 0.0})
    return np.asarray(outs[0], dtype=np.float32), result


def argmax_gap(out: np.ndarray) -> float:
    flat = np.sort(out.reshape(-1))
    return float((flat[-1] - flat[-2]) / np.max(np.abs(flat)))


def acceptable(model_path: Path, x: np.ndarray, reference: np.ndarray | None = None):
    out, ms = margins(model_path, x)
    ref = out if reference is None else reference
    ok = all(m["min_over_rms"] >= SIGN_MARGIN_REL for m in ms) and argmax_gap(ref) >= ARGMAX_GAP_REL
    return ok, out, ms


def files_of(model_path: Path) -> list[str]:
    """The model file and every external data file it names, relative to its folder."""
    model = onnx.load(str(model_path), load_external_data=False)
    names = [model_path.name]
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    for t in tensors:
        if t.data_location == TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location" and e.value not in names:
                    names.append(e.value)
    return names


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest(out_dir: Path) -> dict:
    path = out_dir / EXPORTED_MANIFEST
    if path.exists():
        return json.loads(path.read_text())
    return {"about": "Fixtures exported offline by real exporters (tools/onnx_fixtures/export_torch.py, "
                     "export_larq.py); gen_fixtures.py --check verifies them against ONNX Runtime without "
                     "PyTorch or TensorFlow.", "tolerance_rule": TOLERANCE_RULE, "fixtures": {}}


def save_manifest(out_dir: Path, manifest: dict) -> None:
    manifest["fixtures"] = dict(sorted(manifest["fixtures"].items()))
    (out_dir / EXPORTED_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def record(out_dir: Path, manifest: dict, name: str, model_path: Path, x: np.ndarray, expected: np.ndarray,
           expected_from: str, margins_: list, info: dict) -> None:
    np.save(out_dir / f"{name}.input.npy", x.astype(np.float32))
    np.save(out_dir / f"{name}.expected.npy", expected.astype(np.float32))
    model = onnx.load(str(model_path), load_external_data=False)
    files = files_of(model_path)
    entry = {
        "files": {f: sha256(out_dir / f) for f in files},
        "input": f"{name}.input.npy",
        "expected": f"{name}.expected.npy",
        "expected_from": expected_from,
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "input_shape": list(x.shape),
        "output_shape": list(expected.shape),
        "node_op_types": sorted({n.op_type for n in model.graph.node}),
        "stats": {"expected_argmax": int(np.argmax(expected)), "argmax_gap_rel": argmax_gap(expected),
                  "min_binarization_margin_over_rms": min((m["min_over_rms"] for m in margins_), default=None),
                  "binarizations": len(margins_)},
    }
    entry.update(info)
    manifest["fixtures"][name] = entry

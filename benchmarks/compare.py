#!/usr/bin/env python3
"""Side-by-side benchmark of BitFleet's engine and ONNX Runtime on the same networks.

Both runtimes get the same ONNX graph: benchmarks/bireal18_onnx.py writes Bi-Real-Net-18
(224x224, 1000 classes), a single binary 3x3 conv layer (64->64 at 56x56) and a stack of
five such layers with BatchNorm and Sign between them (a layer in a stack); fleetctl
converts them to .bnn. Each runtime is timed in its own process, one after the other, at
1 and 2 threads. Also measured: peak resident memory of `fleetctl model run` on
Bi-Real-Net-18 and the .bnn size against the bits its weights need.

    python3 benchmarks/compare.py --fleetctl .build/release/fleetctl [--runs 50]

Prints a Markdown table and writes the raw numbers as JSON (--json-out).
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_json(command, env=None):
    result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(result.stdout)


def peak_rss_mb(command):
    # A fresh interpreter whose only child is `command`: RUSAGE_CHILDREN's ru_maxrss is
    # then that process's peak resident set (KiB on Linux).
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleetctl", required=True)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat every measurement, alternating runtimes; the best round counts "
                             "(a shared 2-vCPU VM has noisy neighbours)")
    parser.add_argument("--work", default=None, help="folder for generated models (default: a temp dir)")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="bitfleet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    script = str(HERE / "bireal18_onnx.py")
    models = {}
    for name, extra in (("conv3x3-64", ["--conv-layer"]), ("conv3x3-64-stack5", ["--conv-stack"]), ("bireal18", [])):
        onnx_path = work / f"{name}.onnx"
        bnn_path = work / f"{name}.bnn"
        if not onnx_path.exists():
            print(f"writing {onnx_path}", file=sys.stderr)
            subprocess.run([sys.executable, script, *extra, "--write", str(onnx_path)], check=True, capture_output=True)
        print(f"converting {onnx_path.name}", file=sys.stderr)
        subprocess.run([args.fleetctl, "model", "convert", str(onnx_path), "-o", str(bnn_path), "--name", name],
                       check=True, capture_output=True)
        models[name] = (extra, onnx_path, bnn_path)

    rows = []
    results = {"machine": platform.processor() or platform.machine(), "runs": args.runs, "models": {}}
    for name, (extra, onnx_path, bnn_path) in models.items():
        entry = {}
        for threads in (1, 2):
            rounds = []
            for round_index in range(args.rounds):
                print(f"{name}: {threads} thread(s), round {round_index + 1}", file=sys.stderr)
                ours_round = run_json([args.fleetctl, "model", "bench", str(bnn_path), "--threads", str(threads),
                                       "--runs", str(args.runs), "--warmup", "10", "--json"])
                ort_round = run_json([sys.executable, script, *extra, "--bench", "--threads", str(threads),
                                      "--runs", str(args.runs)])
                rounds.append((ours_round, ort_round))
            ours = min((r[0] for r in rounds), key=lambda r: r["median_ms"])
            ort = min((r[1] for r in rounds), key=lambda r: r["median_ms"])
            entry[f"threads{threads}"] = {"bitfleet": ours, "onnxruntime": ort,
                                          "bitfleet_round_medians": [r[0]["median_ms"] for r in rounds],
                                          "onnxruntime_round_medians": [r[1]["median_ms"] for r in rounds]}
            rows.append((name, threads, ours, ort))
        # File size is measured on a copy without the self-test vector (test data, not weights).
        bare = work / f"{name}.no-self-test.bnn"
        subprocess.run([args.fleetctl, "model", "convert", str(onnx_path), "-o", str(bare), "--name", name, "--no-self-test"],
                       check=True, capture_output=True)
        inspect = run_json([args.fleetctl, "model", "inspect", str(bare), "--json"])
        weight_bytes = inspect["statistics"]["parameterBits"] / 8
        entry["file_bytes"] = inspect["fileBytes"]
        entry["weight_bytes"] = weight_bytes
        results["models"][name] = entry

    rss = peak_rss_mb([args.fleetctl, "model", "run", str(models["bireal18"][2]), "--input",
                       str(write_input(work, models["bireal18"][2], args.fleetctl))])
    results["bireal18_run_peak_rss_mb"] = rss

    print("| model | threads | BitFleet median / p90 / min ms | ONNX Runtime median / p90 / min ms | speed-up (median) | binary GMAC/s | BitFleet medians of all rounds | ORT medians of all rounds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, threads, ours, ort in rows:
        entry = results["models"][name][f"threads{threads}"]
        print(f"| {name} | {threads} | {ours['median_ms']:.2f} / {ours['p90_ms']:.2f} / {ours['min_ms']:.2f} "
              f"| {ort['median_ms']:.2f} / {ort['p90_ms']:.2f} / {ort['min_ms']:.2f} "
              f"| {ort['median_ms'] / ours['median_ms']:.1f}x | {ours['binary_gmacs_per_s']:.0f} "
              f"| {', '.join(f'{m:.2f}' for m in entry['bitfleet_round_medians'])} "
              f"| {', '.join(f'{m:.2f}' for m in entry['onnxruntime_round_medians'])} |")
    b1 = results["models"]["bireal18"]["threads1"]["bitfleet"]["median_ms"]
    b2 = results["models"]["bireal18"]["threads2"]["bitfleet"]["median_ms"]
    print(f"\nBi-Real-Net-18 two-thread speed-up: {b1 / b2:.2f}x")
    print(f"Peak RSS of `fleetctl model run` on Bi-Real-Net-18: {rss:.1f} MB")
    for name, entry in results["models"].items():
        overhead = entry["file_bytes"] - entry["weight_bytes"]
        print(f"{name}.bnn: {entry['file_bytes']} bytes for {entry['weight_bytes']:.0f} bytes of weights "
              f"(+{overhead:.0f} B, {100 * overhead / entry['weight_bytes']:.2f}%)")
    kernels = results["models"]["bireal18"]["threads1"]["bitfleet"]["kernels"]
    print(f"Kernels: {kernels}; ONNX Runtime {results['models']['bireal18']['threads1']['onnxruntime'].get('onnxruntime_version')}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


def write_input(work, bnn_path, fleetctl):
    import numpy as np
    info = run_json([fleetctl, "model", "inspect", str(bnn_path), "--json"])
    shape = info["metadata"]["input"]["shape"]
    path = work / "input.npy"
    np.save(path, np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    return path


if __name__ == "__main__":
    main()

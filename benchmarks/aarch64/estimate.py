#!/usr/bin/env python3
"""Raspberry Pi latency estimates for BitFleet models, without a Pi.

  estimate.py --fleetctl PATH [--models bireal18,conv3x3-64,...] [--json]

For each model:
  1. `fleetctl model trace` runs it on this x86-64 machine and records every kernel call
     (descriptor, parameters, input, output, the task split for 4 threads);
  2. Tests/KernelConformance/replay.c, cross-compiled for aarch64, replays the trace under
     qemu-aarch64 with the NEON kernels (-cpu cortex-a72, the Pi 4 core) and with the
     NEON + UDOT kernels (-cpu cortex-a76, the Pi 5 core). Every layer must reproduce the
     x86 output (bit for bit for packed outputs); the insncount plugin counts the exact
     instructions of each layer, once over its whole output and once per task;
  3. llvm-mca gives the instructions per cycle of each kernel family's inner loop
     (benchmarks/aarch64/kernels.list; Cortex-A72 model for the Pi 4, Neoverse-N1 for the
     Pi 5's Cortex-A76, which LLVM does not model).

The estimate, per layer: the inner loop's iterations, counted exactly from the layer's
CNT instructions (16 per iteration of a binary 4x8 step) or FMLA instructions (64 per
iteration of the float 8x8 loop), times llvm-mca's cycles per iteration of that loop (the
LD4R or LD1R form of the kernel the layer ran); plus every other instruction of the layer
at 1.5 per cycle (the A72 and A76 decode 3 and 4 per cycle; 1.5 allows for the scalar
code's dependencies). Four threads: each layer's tasks are assigned in order to the least busy of
4 cores (what the pool's dynamic claiming does), plus 2 us per parallel layer for the
wake-up and the join; the slowest core sets the layer's time. Not modelled: cache and
memory stalls, the Swift steps that call no kernel (a Bi-Real-Net has none), the input's
NCHW -> NHWC conversion. Replace the estimate with `fleetctl model bench model.bnn
--threads 4` on the board.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BOARDS = [  # name, qemu cpu, kernel set, llvm-mca model, clock (GHz)
    ("Pi 4 (Cortex-A72) 1.5 GHz", "cortex-a72", "neon", "cortex-a72", 1.5),
    ("Pi 4 (Cortex-A72) 1.8 GHz", "cortex-a72", "neon", "cortex-a72", 1.8),
    ("Pi 5 (Cortex-A76) 2.4 GHz", "cortex-a76", "neon-dotprod", "neoverse-n1:+dotprod", 2.4),
]
LOOPS = {  # kernel list entry per loop kind
    "binary-ld4r": "bitfleet-neon-4x8-ld4r",
    "binary-ld1r": "bitfleet-neon-4x8-ld1r",
    "udot-ld4r": "bitfleet-udot-4x8-ld4r",
    "udot-ld1r": "bitfleet-udot-4x8-ld1r",
    "float": "bitfleet-sgemm-8x8-float",
}
OTHER_IPC = 1.5
SYNC_SECONDS = 2e-6
THREADS = 4


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        sys.exit(f"estimate.py: {' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def env():
    """The aarch64 tool variables from scripts/aarch64-lib.sh."""
    script = f"source {ROOT}/scripts/aarch64-lib.sh >/dev/null && require_aarch64_tools >/dev/null && " \
             "printf '%s\\n%s\\n%s\\n' \"$AARCH64_CC\" \"$AARCH64_QEMU\" \"$AARCH64_INSNCOUNT_PLUGIN\""
    cc, qemu, plugin = run(["bash", "-c", script]).strip().split("\n")
    return cc, qemu, plugin


def mca_loops():
    """{(loop kind, mca model): (instructions, cycles) per iteration} from kernels.list."""
    listing = run([sys.executable, os.path.join(ROOT, "benchmarks/aarch64/mca.py"), "--list",
                   os.path.join(ROOT, "benchmarks/aarch64/kernels.list"), "--json"], cwd=ROOT)
    reports = {r["kernel"]: r for r in json.loads(listing)}
    ipc = {}
    for kind, name in LOOPS.items():
        for result in reports[name]["results"]:
            ipc[(kind, result["model"])] = (result["insns_per_iter"], result["cycles_per_iter"])
    return ipc


def replay(trace, cpu, isa, qemu, plugin, binary, work):
    counts = os.path.join(work, f"counts-{cpu}.txt")
    out = run(qemu.split() + ["-cpu", cpu, "-plugin", f"{plugin},top=1000,hist=on,out={counts}", "-d", "plugin", binary,
                              trace, "--isa", isa, "--tasks"])
    regions, histograms, current = {}, {}, None
    with open(counts) as f:
        for line in f:
            m = re.match(r"insncount: region index=(\d+) depth=\d+ insns=(\d+)", line)
            if m:
                current = int(m.group(1))
                regions[current] = int(m.group(2))
                histograms[current] = {}
            elif line.startswith("insncount:"):
                current = None
            elif current is not None and line.strip():
                mnemonic, count = line.split()
                histograms[current][mnemonic] = int(count)
    records = []
    for line in out.splitlines():
        m = re.match(r"record (\d+) kind=(\d+) label=(\S+) kernel=(\S+) macs=(-?\d+) full_region=(-?\d+) tasks=(\d+) "
                     r"first_task_region=(-?\d+) result=(\S+)", line)
        if not m:
            continue
        if m.group(9) != "ok":
            sys.exit(f"estimate.py: {trace}: layer {m.group(3)} did not reproduce the x86 output on {cpu}: {line}")
        full, tasks, first = int(m.group(6)), int(m.group(7)), int(m.group(8))
        records.append({"kind": int(m.group(2)), "label": m.group(3), "kernel": m.group(4), "macs": int(m.group(5)),
                        "insns": regions[full], "histogram": histograms[full],
                        "tasks": [(regions[first + i], histograms[first + i]) for i in range(tasks)]})
    return records


def loop_kind(record, consecutive):
    if record["kind"] == 2:
        return "float"
    if record["kind"] == 1:
        family = "udot" if "dotprod" in record["kernel"] else "binary"
        return f"{family}-{'ld4r' if consecutive else 'ld1r'}"
    return None


def cycles_of(insns, histogram, loop):
    """Estimated cycles of code that executed `insns` instructions with this mnemonic
    histogram, whose inner loop is `loop` = (kind, instructions, cycles per iteration)."""
    if loop is None:
        return insns / OTHER_IPC
    kind, loop_insns, loop_cycles = loop
    marker = histogram.get("fmla", 0) / 64 if kind == "float" else histogram.get("cnt", 0) / 16
    in_loop = min(insns, marker * loop_insns)
    return marker * loop_cycles + (insns - in_loop) / OTHER_IPC


def makespan(task_cycles, threads):
    loads = [0.0] * threads
    for t in task_cycles:
        i = loads.index(min(loads))
        loads[i] += t
    return max(loads)


def estimate(records, loops, model, ghz, consecutive):
    one = four = 0.0
    layers = []
    for r in records:
        # A binary conv reads 4 pixels' words with one LD4R when they are consecutive: at
        # most 64 input channels (one word per pixel) and stride 1; otherwise four LD1R.
        kind = loop_kind(r, consecutive.get(r["label"], False))
        loop = (kind.split("-")[0] if kind == "float" else kind, *loops[(kind, model)]) if kind else None
        cycles = cycles_of(r["insns"], r["histogram"], loop)
        parallel = makespan([cycles_of(n, h, loop) for n, h in r["tasks"]], THREADS) if r["tasks"] else cycles
        seconds1 = cycles / (ghz * 1e9)
        seconds4 = parallel / (ghz * 1e9) + (SYNC_SECONDS if len(r["tasks"]) > 1 else 0)
        one += seconds1
        four += seconds4
        layers.append({"label": r["label"], "kernel": r["kernel"], "insns": r["insns"], "cycles": cycles,
                       "ms_1": seconds1 * 1e3, "ms_4": seconds4 * 1e3})
    return one * 1e3, four * 1e3, layers


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fleetctl", required=True, help="an x86-64 fleetctl (release or debug)")
    p.add_argument("--models", default="bireal18,conv3x3-64,conv3x3-64-stack5,"
                   "Models/fashion-mnist/bnn-cnn.bnn,Models/fashion-mnist/bnn-mlp.bnn",
                   help="synthetic architectures (fleetctl model synthesize) or .bnn files")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    cc, qemu, plugin = env()
    work = tempfile.mkdtemp(prefix="bitfleet-estimate-")
    binary = os.path.join(work, "replay")
    run(cc.split() + ["-O3", "-mcpu=cortex-a72", "-I", os.path.join(ROOT, "Sources/CBitKernels/include"), "-o", binary,
                      os.path.join(ROOT, "Tests/KernelConformance/replay.c")] +
        [os.path.join(ROOT, "Sources/CBitKernels", f) for f in sorted(os.listdir(os.path.join(ROOT, "Sources/CBitKernels")))
         if f.endswith(".c")] + ["-lm"])
    loops = mca_loops()
    report = []
    for name in args.models.split(","):
        if name.endswith(".bnn"):
            model_path = os.path.join(ROOT, name) if not os.path.isabs(name) else name
        else:
            model_path = os.path.join(work, f"{name}.bnn")
            run([args.fleetctl, "model", "synthesize", name, "-o", model_path])
        trace = os.path.join(work, os.path.basename(model_path) + ".trace")
        run([args.fleetctl, "model", "trace", model_path, "-o", trace, "--split-threads", str(THREADS)])
        widths = consecutive_pixels(trace)
        entry = {"model": name, "boards": []}
        for board, cpu, isa, mca_model, ghz in BOARDS:
            records = replay(trace, cpu, isa, qemu, plugin, binary, work)
            macs = sum(r["macs"] for r in records if r["macs"] > 0)
            insns = sum(r["insns"] for r in records)
            ms1, ms4, layers = estimate(records, loops, mca_model, ghz, widths)
            entry["boards"].append({"board": board, "kernels": isa, "instructions": insns, "binary_macs": macs,
                                    "ms_1_thread": ms1, "ms_4_threads": ms4, "speedup_4": ms1 / ms4, "layers": layers})
        report.append(entry)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return
    print("| model | board | kernels | instructions | binary MACs | est. 1 core ms | est. 4 cores ms | 4 vs 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for e in report:
        for b in e["boards"]:
            print(f"| {e['model']} | {b['board']} | {b['kernels']} | {b['instructions']:,} | {b['binary_macs']:,} | "
                  f"{b['ms_1_thread']:.2f} | {b['ms_4_threads']:.2f} | {b['speedup_4']:.2f}x |")


def consecutive_pixels(trace):
    """{label: whether 4 neighbouring pixels' words are consecutive} for the binary convs of a
    trace: at most 64 input channels (descriptor field 2) and stride 1 (field 9)."""
    import struct
    widths = {}
    with open(trace, "rb") as f:
        data = f.read()
    if data[:8] != b"BKTRACE1":
        sys.exit(f"estimate.py: {trace} is not a kernel trace")
    offset = 8
    _, _, count = struct.unpack_from("<III", data, offset)
    offset += 12
    for _ in range(count):
        kind, length = struct.unpack_from("<II", data, offset)
        offset += 8
        label = data[offset:offset + length].decode()
        offset += length
        (fields,) = struct.unpack_from("<I", data, offset)
        offset += 4
        descriptor = struct.unpack_from(f"<{fields}i", data, offset)
        offset += 4 * fields
        (arrays,) = struct.unpack_from("<I", data, offset)
        offset += 4
        for _ in range(arrays):
            element, n = struct.unpack_from("<IQ", data, offset)
            offset += 12 + n * (8 if element == 1 else 4)
        (tasks,) = struct.unpack_from("<I", data, offset)
        offset += 4 + 16 * tasks
        if kind == 1:
            widths[label] = descriptor[2] <= 64 and descriptor[9] == 1
    return widths


if __name__ == "__main__":
    main()

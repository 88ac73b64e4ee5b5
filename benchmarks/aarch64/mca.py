#!/usr/bin/env python3
"""Static cycle estimate of one aarch64 inner loop with llvm-mca, in binary MACs per cycle.

  mca.py KERNEL.c   --marker NAME   [--macs N|auto] [--cflags "-O3 ..."]
  mca.py KERNEL.s   [--marker NAME] [--macs N|auto]
  mca.py KERNEL.swift --function NAME [--macs N|auto] [--swiftflags=-O]
  mca.py --list kernels.list            one table for every kernel of a list (run.sh)

The source is compiled to aarch64 assembly (C: --cc, default the Swift toolchain's clang
with --target=aarch64-linux-gnu, flags --cflags, default -O3; Swift: Embedded Swift,
`swiftc -target aarch64-none-none-elf -enable-experimental-feature Embedded -O -S`; .s files
are read as they are). Then a REGION is cut out of the assembly:
  --marker NAME    the lines between the comments `LLVM-MCA-BEGIN NAME` and `LLVM-MCA-END
                   NAME`, put in C as `__asm__ volatile("// LLVM-MCA-BEGIN NAME")` (any of the
                   comment styles //, #, /* */ is found)
  --function NAME  the body of the function whose symbol contains NAME (for Swift's mangled names)
  neither          the whole file (.s only)
With --mode loop (the default) the loop measured is the INNERMOST LOOP in the region: a
label and the backward branch to it with no other loop inside; if there are several, the
one with the most instructions (--loop I picks the I-th, in source order). Put the markers
around the loop, not inside it: inside, the compiler leaves the loop's counter update and
branch outside the markers and schedules the body differently. --mode region measures the
region as it is (for a region that is itself straight-line code of one iteration).

The loop runs through llvm-mca once per model (--model, repeatable; default cortex-a72, the
Pi 4 core, which LLVM models with its Cortex-A57 model, and neoverse-n1:+dotprod, the closest
model to the Pi 5's Cortex-A76). Printed per model: instructions per iteration, cycles per
iteration (llvm-mca's total cycles / iterations), IPC, llvm-mca's block reciprocal throughput,
the most loaded resource and its busy cycles per iteration (when it is close to the cycles
per iteration, that unit is the bottleneck; when neither it nor the throughput bound
explains the cycles, a dependency chain does), and binary MACs per cycle.

For a C source with --marker in loop mode, the source is also compiled without its marker
statements, and a warning says so if that compilation has no identical loop (so the
markers changed the measured code).

--macs N gives the binary MACs of one iteration of the measured (machine) loop; --macs auto
derives them from the loop's popcounts (128 per `cnt .16b`, 64 per `cnt .8b`, i.e. every
counted bit is one MAC, true of XOR/popcount kernels). With an explicit N, a loop whose
popcounts say otherwise (e.g. the compiler unrolled it) gets a warning.

A list file has one kernel per line (# starts a comment), fields separated by blanks:
  NAME  SOURCE  SELECT  MACS  MODELS  [FLAGS...]
SOURCE is relative to the list file; SELECT is marker:NAME, asm-marker:NAME (markers inside an
inline-assembly block, see --asm-markers), function:NAME or - (a whole .s);
MACS a number or auto; MODELS - (the defaults) or a comma-separated list of CPU[:MATTR];
FLAGS, the rest of the line, are the C flags (default -O3) or Swift flags (default -O).

Give flags that start with '-' as --cflags=..., --swiftflags=... (one argument).
Exit status: 0, 1 on an error (a message says what and where).
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

LLVM_MCA = os.environ.get("LLVM_MCA", "/usr/lib/llvm-19/bin/llvm-mca")
DEFAULT_CC = os.environ.get("AARCH64_CC", "/opt/swift/usr/bin/clang --target=aarch64-linux-gnu")
DEFAULT_MODELS = ["cortex-a72", "neoverse-n1:+dotprod"]
ITERATIONS = 2000

BRANCHES = {"b", "cbz", "cbnz", "tbz", "tbnz", "bgt", "bge", "blt", "ble", "beq", "bne", "bhi", "bhs", "blo", "bls",
            "bcc", "bcs", "bmi", "bpl", "bvs", "bvc"}
LABEL = re.compile(r"^\s*([A-Za-z_.$][\w.$]*|\d+):(.*)$")


class Failure(Exception):
    pass


def statements(line):
    """The line's statements (';' separates them), without // and /* */ comments
    ('#' starts a comment only at the start of a statement: elsewhere it marks immediates)."""
    line = re.sub(r"/\*.*?\*/", "", line)
    line = line.split("//", 1)[0]
    return [s.strip() for s in line.split(";")]


# An asm statement whose template holds a marker, with or without operands and clobbers.
MARKER_STATEMENT = re.compile(r'\b(__asm__|asm)\s*(volatile|__volatile__)?\s*\(\s*"[^"]*LLVM-MCA-(BEGIN|END)[^"]*"[^;]*\)\s*;')


def compile_c(path, cc, cflags, strip_markers=False):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.s")
        source, extra = path, []
        if strip_markers:
            source = os.path.join(tmp, os.path.basename(path))
            with open(path) as f, open(source, "w") as g:
                g.write(MARKER_STATEMENT.sub("", f.read()))
            extra = ["-iquote", os.path.dirname(os.path.abspath(path))]  # its #include "..." still resolve
        cmd = shlex.split(cc) + shlex.split(cflags) + extra + ["-S", "-o", out, source]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise Failure(f"compiling {path} failed ({' '.join(cmd)}):\n{run.stderr}")
        with open(out) as f:
            return f.read(), " ".join(cmd)


def compile_swift(path, swiftc, swiftflags):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.s")
        cmd = [swiftc, "-target", "aarch64-none-none-elf", "-enable-experimental-feature", "Embedded",
               "-parse-as-library", "-wmo"] + shlex.split(swiftflags) + ["-S", "-o", out, path]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise Failure(f"compiling {path} failed ({' '.join(cmd)}):\n{run.stderr}")
        with open(out) as f:
            return f.read(), " ".join(cmd)


def marker_region(lines, name, path, in_asm=False):
    begin = re.compile(r"(//|#|/\*)\s*LLVM-MCA-BEGIN\s+" + re.escape(name) + r"\b")
    end = re.compile(r"(//|#|/\*)\s*LLVM-MCA-END\s+" + re.escape(name) + r"\b")
    starts = [i for i, l in enumerate(lines) if begin.search(l)]
    ends = [i for i, l in enumerate(lines) if end.search(l)]
    if not starts:
        raise Failure(f"{path}: no LLVM-MCA-BEGIN {name} in the assembly")
    if not ends:
        raise Failure(f"{path}: no LLVM-MCA-END {name} in the assembly")
    if in_asm and len(starts) == len(ends) and len(starts) > 1:
        # Markers written inside an inline-assembly loop: every inlined copy of the block
        # is the same hand-written code (only register names differ); measure the first.
        copies = [[l.split()[0] for l in lines[b + 1:e] if l.strip() and not l.strip().startswith(("//", "#", "."))]
                  for b, e in zip(starts, ends)]
        if all(c == copies[0] for c in copies):
            return lines[starts[0] + 1:ends[0]]
    if len(starts) > 1 or len(ends) > 1:
        raise Failure(f"{path}: marker {name} appears {len(starts)} times (the compiler duplicated it, "
                      "e.g. by unrolling or inlining); put the markers outside the loop or use -fno-inline")
    if ends[0] < starts[0]:
        raise Failure(f"{path}: LLVM-MCA-END {name} comes before LLVM-MCA-BEGIN {name}")
    return lines[starts[0] + 1:ends[0]]


def function_region(lines, name, path):
    for i, l in enumerate(lines):
        m = LABEL.match(l)
        if m and name in m.group(1) and not m.group(1).startswith("."):
            for j in range(i + 1, len(lines)):
                if re.match(r"^\s*\.Lfunc_end\d*:|^\s*\.size\s", lines[j]):
                    return lines[i + 1:j]
            return lines[i + 1:]
    raise Failure(f"{path}: no function whose symbol contains {name!r}")


def parse(region):
    """[(kind, text)] with kind 'label' or 'insn'; comments, directives and blanks dropped."""
    items = []
    for raw in region:
        for line in statements(raw):
            while True:
                m = LABEL.match(line)
                if not m:
                    break
                items.append(("label", m.group(1)))
                line = m.group(2)
            text = line.strip()
            if not text or text.startswith(".") or text.startswith("#"):
                continue
            items.append(("insn", text))
    return items


def branch_target(text):
    parts = text.replace(",", " ").split()
    mnemonic = parts[0].lower()
    if not (mnemonic in BRANCHES or mnemonic.startswith("b.")):
        return None
    return parts[-1]


def loops(items):
    """[(label_index, branch_index)] of backward branches, innermost first by nesting."""
    found = []
    for bi, (kind, text) in enumerate(items):
        if kind != "insn":
            continue
        target = branch_target(text)
        if target is None:
            continue
        numeric = re.fullmatch(r"(\d+)b", target)
        for li in range(bi - 1, -1, -1):
            k, t = items[li]
            if k == "label" and (t == target or (numeric and t == numeric.group(1))):
                found.append((li, bi))
                break
    innermost = [(a, b) for (a, b) in found
                 if not any((c, d) != (a, b) and a <= c and d <= b for (c, d) in found)]
    return innermost


def pick_loop(items, index, path):
    candidates = loops(items)
    if not candidates:
        raise Failure(f"{path}: no loop (label with a backward branch to it) in the region")
    sizes = [sum(1 for k, _ in items[a:b + 1] if k == "insn") for a, b in candidates]
    if index is None:
        chosen = max(range(len(candidates)), key=lambda i: (sizes[i], -i))
    elif 0 <= index < len(candidates):
        chosen = index
    else:
        raise Failure(f"{path}: --loop {index}, but the region has {len(candidates)} innermost loops")
    a, b = candidates[chosen]
    return items[a:b + 1], [(s, i == chosen) for i, s in enumerate(sizes)]


def normalized(body):
    """A loop's instructions with label names replaced, for comparing two compilations."""
    labels = {t for k, t in body if k == "label"}
    out = []
    for k, t in body:
        if k != "insn":
            continue
        target = branch_target(t)
        if target is not None and target in labels:
            t = t[: len(t) - len(target)] + "<loop>"
        out.append(re.sub(r"\.LBB\d+_\d+", "<label>", t))
    return out


def markers_leave_loop_unchanged(path, cc, cflags, body):
    """Whether the same loop, instruction for instruction, exists when the source is compiled
    without its LLVM-MCA marker statements."""
    asm, _ = compile_c(path, cc, cflags, strip_markers=True)
    items = parse(asm.splitlines())
    want = normalized(body)
    return any(normalized(items[a:b + 1]) == want for a, b in loops(items))


def popcount_bits(insns):
    bits = 0
    for text in insns:
        m = re.match(r"cnt\s+v\d+\.(16b|8b)", text, re.I)
        if m:
            bits += 128 if m.group(1).lower() == "16b" else 64
    return bits


def run_mca(loop_text, model, path):
    cpu, _, mattr = model.partition(":")
    cmd = [LLVM_MCA, "-mtriple=aarch64", f"-mcpu={cpu}", f"-iterations={ITERATIONS}", "-bottleneck-analysis"]
    if mattr:
        cmd.append(f"-mattr={mattr}")
    run = subprocess.run(cmd, input=loop_text, capture_output=True, text=True)
    if run.returncode != 0:
        hint = ""
        if "instruction requires:" in run.stderr:
            hint = (" (the model lacks an extension the loop uses: give it as CPU:+EXT, or leave this "
                    "model out of the kernel's MODELS)")
        first = "\n".join(run.stderr.splitlines()[:6])
        raise Failure(f"llvm-mca failed on {path} for {model}{hint} ({' '.join(cmd)}):\n{first}")
    out = run.stdout

    def number(label):
        m = re.search(r"^" + re.escape(label) + r":\s+([\d.]+)", out, re.M)
        if not m:
            raise Failure(f"llvm-mca output for {path} ({model}) has no '{label}'")
        return float(m.group(1))

    iterations, instructions, cycles = number("Iterations"), number("Instructions"), number("Total Cycles")
    uops, width = number("Total uOps"), number("Dispatch Width")
    names = re.findall(r"^\[([\d.]+)\]\s+-\s+(\S+)$", out, re.M)
    pressure = re.search(r"^Resource pressure per iteration:\n.*\n(.*)$", out, re.M)
    busiest = None
    if names and pressure:
        values = [0.0 if v == "-" else float(v) for v in pressure.group(1).split()]
        units = {}
        for (_, unit), value in zip(names, values):
            units.setdefault(unit, []).append(value)
        # A unit with several instances (A57UnitI [1.0] [1.1]) is as busy as its busiest one.
        busiest = max(((u, max(v)) for u, v in units.items()), key=lambda x: x[1])
    return {
        "model": model,
        "insns_per_iter": instructions / iterations,
        "cycles_per_iter": cycles / iterations,
        "ipc": number("IPC"),
        "block_rthroughput": number("Block RThroughput"),
        "uops_per_iter": uops / iterations,
        "dispatch_width": width,
        "busiest_resource": busiest[0] if busiest else None,
        "busiest_cycles_per_iter": busiest[1] if busiest else None,
        "no_bottleneck": "No resource or data dependency bottlenecks discovered" in out,
        "command": " ".join(cmd),
    }


def bottleneck_text(r):
    """The bound that explains the cycles: the busiest unit, or dispatch (uOps / dispatch
    width), whichever is larger; below 90 % of the cycles, a dependency chain."""
    cycles = r["cycles_per_iter"]
    dispatch = r["uops_per_iter"] / r["dispatch_width"]
    busy = r["busiest_cycles_per_iter"] or 0.0
    if busy >= dispatch:
        bound, what = busy, f"{r['busiest_resource']} {busy:.2f}/it"
    else:
        bound, what = dispatch, f"dispatch {r['uops_per_iter']:.0f}uops/{r['dispatch_width']:.0f}"
    share = bound / cycles
    if share >= 0.9:
        return what if share >= 0.99 else f"{what} ({100 * share:.0f}%)"
    return f"dependencies ({what} {100 * share:.0f}%)"


def measure(args):
    path = args.source
    if not os.path.isfile(path):
        raise Failure(f"{path}: no such file")
    ext = os.path.splitext(path)[1]
    if ext == ".c":
        asm, compiled_with = compile_c(path, args.cc, args.cflags)
    elif ext == ".swift":
        asm, compiled_with = compile_swift(path, args.swiftc, args.swiftflags)
    elif ext in (".s", ".S"):
        with open(path) as f:
            asm, compiled_with = f.read(), None
    else:
        raise Failure(f"{path}: expected a .c, .swift or .s file")
    lines = asm.splitlines()
    if args.marker:
        region = marker_region(lines, args.marker, path, in_asm=args.asm_markers)
    elif args.function:
        region = function_region(lines, args.function, path)
    elif ext in (".s", ".S"):
        region = lines
    else:
        raise Failure(f"{path}: give --marker NAME (C) or --function NAME (Swift)")
    items = parse(region)
    if args.mode == "loop":
        body, loop_sizes = pick_loop(items, args.loop, path)
    else:
        body, loop_sizes = items, []
    insns = [t for k, t in body if k == "insn"]
    if not insns:
        raise Failure(f"{path}: the region has no instructions")
    bits = popcount_bits(insns)
    warnings = []
    if args.macs == "auto":
        if bits == 0:
            raise Failure(f"{path}: --macs auto, but the loop has no cnt instruction")
        macs = bits
    else:
        try:
            macs = int(args.macs)
        except ValueError:
            raise Failure(f"--macs {args.macs}: expected a number or auto")
        if macs <= 0:
            raise Failure(f"--macs {args.macs}: expected a positive number")
        if bits and bits != macs:
            warnings.append(f"the loop's cnt instructions count {bits} bits per iteration, but --macs is {macs} "
                            "(unrolled by the compiler? a different loop picked?)")
    internal = [t for t in insns[:-1] if branch_target(t) is not None]
    if internal:
        warnings.append(f"the loop has {len(internal)} branch(es) besides its back edge; llvm-mca runs it as "
                        "straight-line code")
    markers_checked = None
    if ext == ".c" and args.marker and args.mode == "loop" and not args.asm_markers:
        markers_checked = markers_leave_loop_unchanged(path, args.cc, args.cflags, body)
        if not markers_checked:
            warnings.append("compiled without the LLVM-MCA markers, the source has no identical loop: the "
                            "markers change the code (put them outside the loop, around it)")
    loop_text = "\n".join((f"{t}:" if k == "label" else f"\t{t}") for k, t in body) + "\n"
    results = []
    for model in args.model or DEFAULT_MODELS:
        r = run_mca(loop_text, model, path)
        r["macs_per_cycle"] = macs / r["cycles_per_iter"]
        results.append(r)
    return {
        "kernel": args.name or os.path.basename(path),
        "source": path,
        "compiled_with": compiled_with,
        "macs_per_iter": macs,
        "cnt_bits_per_iter": bits,
        "loop_insns": len(insns),
        "innermost_loops": [{"insns": s, "chosen": c} for s, c in loop_sizes],
        "loop": loop_text,
        "markers_leave_loop_unchanged": markers_checked,
        "warnings": warnings,
        "results": results,
    }


def print_table(reports, header=True, out=sys.stdout):
    fmt = "{:<32} {:<22} {:>8} {:>9} {:>5} {:>6}  {:<32} {:>10}"
    if header:
        print(fmt.format("kernel", "model", "insns/it", "cycles/it", "IPC", "RThru", "bottleneck", "MACs/cycle"), file=out)
    for rep in reports:
        for r in rep["results"]:
            print(fmt.format(rep["kernel"][:32], r["model"], f"{r['insns_per_iter']:.0f}", f"{r['cycles_per_iter']:.2f}",
                             f"{r['ipc']:.2f}", f"{r['block_rthroughput']:.1f}", bottleneck_text(r),
                             f"{r['macs_per_cycle']:.1f}"), file=out)


def read_list(path):
    """[(line number, argparse overrides)] of a kernel list."""
    entries = []
    base = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        for number, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) < 5:
                raise Failure(f"{path}:{number}: expected NAME SOURCE SELECT MACS MODELS [FLAGS...], got {line!r}")
            name, source, select, macs, models = fields[:5]
            entry = {"name": name, "source": os.path.join(base, source), "macs": macs,
                     "marker": None, "function": None, "model": None, "asm_markers": False}
            if select.startswith("asm-marker:"):
                entry["marker"] = select[len("asm-marker:"):]
                entry["asm_markers"] = True
            elif select.startswith("marker:"):
                entry["marker"] = select[len("marker:"):]
            elif select.startswith("function:"):
                entry["function"] = select[len("function:"):]
            elif select != "-":
                raise Failure(f"{path}:{number}: SELECT must be marker:NAME, asm-marker:NAME, function:NAME or -, got {select!r}")
            if models != "-":
                entry["model"] = models.split(",")
            flags = " ".join(fields[5:])
            if flags:
                entry["swiftflags" if source.endswith(".swift") else "cflags"] = flags
            entries.append((number, entry))
    return entries


def run_list(args):
    reports, failures = [], 0
    for number, entry in read_list(args.list):
        one = argparse.Namespace(**vars(args))
        for key, value in entry.items():
            setattr(one, key, value)
        try:
            reports.append(measure(one))
        except Failure as e:
            failures += 1
            print(f"mca.py: {args.list}:{number} ({entry['name']}): {e}", file=sys.stderr)
    for rep in reports:
        for w in rep["warnings"]:
            print(f"mca.py: warning: {rep['kernel']}: {w}", file=sys.stderr)
    if args.json:
        json.dump(reports, sys.stdout, indent=2)
        print()
    else:
        print_table(reports, header=not args.no_header)
    return 1 if failures else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", help="a .c, .swift or .s file")
    p.add_argument("--list", help="a kernel list file (see above) instead of one source")
    p.add_argument("--marker", help="the NAME of LLVM-MCA-BEGIN/END NAME comments")
    p.add_argument("--function", help="a function whose symbol contains this name")
    p.add_argument("--macs", default="auto", help="binary MACs per loop iteration, or auto (from cnt; default)")
    p.add_argument("--mode", choices=["loop", "region"], default="loop")
    p.add_argument("--asm-markers", action="store_true",
                   help="the markers are inside an inline-assembly block (around its loop): copies of "
                        "the block made by inlining are the same code, and removing the markers would "
                        "change the assembly itself, so the marker-free comparison is skipped")
    p.add_argument("--loop", type=int, help="index of the innermost loop to measure (default: the largest)")
    p.add_argument("--model", action="append", help="CPU[:MATTR] for llvm-mca, repeatable "
                   f"(default: {' and '.join(DEFAULT_MODELS)})")
    p.add_argument("--cc", default=DEFAULT_CC, help=f"C compiler command (default: {DEFAULT_CC})")
    p.add_argument("--cflags", default=os.environ.get("MCA_CFLAGS", "-O3"), help="C flags (default -O3)")
    p.add_argument("--swiftc", default="/opt/swift/usr/bin/swiftc")
    p.add_argument("--swiftflags", default="-O")
    p.add_argument("--name", help="kernel name in the table (default: the file name)")
    p.add_argument("--print-loop", action="store_true", help="print the measured loop")
    p.add_argument("--no-header", action="store_true", help="table rows only")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of the table")
    args = p.parse_args()
    if args.marker and args.function:
        p.error("--marker and --function exclude each other")
    if bool(args.list) == bool(args.source):
        p.error("give one source file or --list FILE")
    try:
        if args.list:
            return run_list(args)
        report = measure(args)
    except Failure as e:
        print(f"mca.py: {e}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    for w in report["warnings"]:
        print(f"mca.py: warning: {report['kernel']}: {w}", file=sys.stderr)
    if args.print_loop:
        print(f"# {report['kernel']}: {report['loop_insns']} instructions, {report['macs_per_iter']} binary MACs "
              f"per iteration", file=sys.stderr)
        sys.stderr.write(report["loop"])
    print_table([report], header=not args.no_header)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fails when benchmarks/aarch64/portable_xor_popcount_gemm.swift no longer mirrors
Sources/BitEngine/PortableKernels.swift: compares the text of xorPopcountGemm and store
in both (indentation and `public` ignored).

  check_swift_copy.py [ORIGINAL COPY]
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def function(text, name, path):
    m = re.search(r"^[^\n]*\bfunc " + name + r"\b", text, re.M)
    if not m:
        sys.exit(f"check_swift_copy.py: {path} has no func {name}")
    depth, i = 0, text.index("{", m.start())
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            body = text[m.start():j + 1]
            return [re.sub(r"\bpublic ", "", l).strip() for l in body.splitlines() if l.strip()]
    sys.exit(f"check_swift_copy.py: {path}: func {name} never closes")


def main():
    original, copy = (sys.argv[1:3] if len(sys.argv) == 3 else
                      (os.path.join(ROOT, "Sources/BitEngine/PortableKernels.swift"),
                       os.path.join(ROOT, "benchmarks/aarch64/portable_xor_popcount_gemm.swift")))
    texts = {p: open(p).read() for p in (original, copy)}
    for name in ("xorPopcountGemm", "store"):
        a, b = function(texts[original], name, original), function(texts[copy], name, copy)
        if a != b:
            for n, (x, y) in enumerate(zip(a + [""] * len(b), b + [""] * len(a))):
                if x != y:
                    sys.exit(f"check_swift_copy.py: {copy}: func {name} differs from {original} at line {n + 1} "
                             f"of the function:\n  original: {x}\n  copy:     {y}")
    print(f"check_swift_copy.py: {os.path.relpath(copy, ROOT)} mirrors {os.path.relpath(original, ROOT)}")


if __name__ == "__main__":
    main()

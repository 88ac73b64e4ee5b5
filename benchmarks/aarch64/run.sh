#!/usr/bin/env bash
# Static cycle estimates of aarch64 binary GEMM inner loops: every kernel of
# benchmarks/aarch64/kernels.list through llvm-mca 19 (Cortex-A72 = Pi 4, modelled by LLVM's
# Cortex-A57 model; Neoverse N1 + dotprod as the Pi 5's Cortex-A76), one table of cycles per
# iteration and binary MACs per cycle. Installs what is missing (as root): the aarch64 cross
# compilers, qemu-user, llvm-19, and uses the Swift toolchain for the Embedded-Swift row.
#
#   ./benchmarks/aarch64/run.sh                  the table
#   ./benchmarks/aarch64/run.sh --json           the same as JSON (mca.py's report per kernel)
#   ./benchmarks/aarch64/run.sh --list FILE      another kernel list
# See benchmarks/aarch64/README.md.
set -euo pipefail
source "$(dirname "$0")/../../scripts/aarch64-lib.sh"
cd "$BITFLEET_ROOT"

list=benchmarks/aarch64/kernels.list
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --list) list="$2"; shift 2 ;;
        --json) extra+=(--json); shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

require_aarch64_tools
command -v python3 >/dev/null || apt_install python3
if grep -v '^\s*#' "$list" | grep -q '\.swift'; then
    require_swift
fi
aarch64_versions | sed 's/^/# /' >&2
AARCH64_CC="$AARCH64_CC" LLVM_MCA="$LLVM_MCA" \
    python3 benchmarks/aarch64/mca.py --list "$list" --swiftc "$(command -v swiftc)" "${extra[@]}"

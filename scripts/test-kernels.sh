#!/usr/bin/env bash
# Conformance of every CBitKernels micro-kernel against the scalar reference in
# Tests/KernelConformance/conformance.c: natively (the x86-64 kernel sets this CPU has),
# then cross-compiled for aarch64 and run under qemu as a Cortex-A72 (Pi 4: NEON, no
# dotprod; the run fails if dotprod is reported) and as a Cortex-A76 (Pi 5: NEON + UDOT;
# the run fails unless the dotprod kernels ran). Installs the cross toolchain and qemu if
# missing. Called by scripts/test.sh; about 20 s.
#
#   ./scripts/test-kernels.sh [--seed N]
set -euo pipefail
source "$(dirname "$0")/aarch64-lib.sh"
cd "$BITFLEET_ROOT"

require_swift
require_aarch64_cross
out="$BITFLEET_ROOT/.build-aarch64/conformance"
mkdir -p "$out"
sources=(Tests/KernelConformance/conformance.c Sources/CBitKernels/*.c)
flags=(-O3 -Wall -Wextra -Werror -ISources/CBitKernels/include)

log "kernel conformance: native ($(uname -m))"
# shellcheck disable=SC2086
clang "${flags[@]}" -o "$out/conformance-native" "${sources[@]}" -lm
"$out/conformance-native" "$@"

log "kernel conformance: aarch64 under qemu"
# shellcheck disable=SC2086
$AARCH64_CC "${flags[@]}" -mcpu=cortex-a72 -o "$out/conformance-aarch64" "${sources[@]}" -lm
# shellcheck disable=SC2086
$AARCH64_QEMU -cpu cortex-a72 "$out/conformance-aarch64" --require neon --forbid neon-dotprod "$@"
# shellcheck disable=SC2086
$AARCH64_QEMU -cpu cortex-a76 "$out/conformance-aarch64" --require neon --require neon-dotprod "$@"

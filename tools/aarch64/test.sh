#!/usr/bin/env bash
# Checks the aarch64 measurement tooling on this x86-64 machine, under qemu-aarch64:
#  1. the insncount plugin's region counts are exact (tools/aarch64/insncount/selftest.c,
#     built with clang and with gcc);
#  2. one binary holding a plain NEON and a UDOT kernel picks UDOT from AT_HWCAP only where
#     the CPU has dotprod: -cpu cortex-a72 reports no ASIMDDP (and a forced UDOT dies with
#     SIGILL), -cpu cortex-a76 reports it and runs it (tools/aarch64/dotprod/);
#  3. benchmarks/aarch64/mca.py cuts the right loops out (LCE's, the sample's, the portable
#     Swift kernel's), detects markers put inside a loop, and the Swift copy check works.
# Installs what is missing (as root). Ends with "N passed, N failed"; exit 1 on a failure.
#
#   ./tools/aarch64/test.sh
set -euo pipefail
source "$(dirname "$0")/../../scripts/aarch64-lib.sh"
cd "$BITFLEET_ROOT"
require_aarch64_tools
ulimit -c 0  # qemu "dumps core" on the expected SIGILL

work="$AARCH64_BUILD/tooltest"
rm -rf "$work"; mkdir -p "$work"
passed=0; failed=0
check() {  # check WHAT EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok   $1 = $3"
    else failed=$((failed + 1)); echo "FAIL $1: expected $2, got $3"; fi
}

compilers=("gcc:$AARCH64_GCC")
[ -n "$AARCH64_CLANG" ] && compilers=("clang:$AARCH64_CLANG" "${compilers[@]}")

# --- 1. insncount regions ------------------------------------------------------------------
region() {  # region REPORT INDEX : the insns= of region INDEX (depth:insns)
    sed -n "s/^insncount: region index=$2 depth=\([0-9]*\) insns=\([0-9]*\)$/\1:\2/p" "$1"
}
hist() {  # hist REPORT INDEX MNEMONIC : that mnemonic's count in region INDEX's histogram
    awk -v idx="$2" -v mn="$3" '
        /^insncount: region index=/ { inside = ($3 == "index=" idx) ; next }
        /^insncount:/ { inside = 0 }
        inside && $1 == mn { print $2 }' "$1"
}
for entry in "${compilers[@]}"; do
    name="${entry%%:*}"; cc="${entry#*:}"
    log "insncount self-test, built with $name"
    # shellcheck disable=SC2086
    $cc -O2 -Wall -Werror -o "$work/selftest-$name" tools/aarch64/insncount/selftest.c
    report="$work/selftest-$name.report"
    # shellcheck disable=SC2086
    out="$($AARCH64_QEMU -cpu cortex-a72 -plugin "$AARCH64_INSNCOUNT_PLUGIN,hist=on,top=100,out=$report" \
        -d plugin "$work/selftest-$name")"
    check "$name: guest output" "selftest: done" "$out"
    check "$name: region 0 (empty)" "0:1" "$(region "$report" 0)"
    check "$name: region 1 (1000 x 5-insn loop)" "0:5002" "$(region "$report" 1)"
    check "$name: region 2 (outer)" "0:155" "$(region "$report" 2)"
    check "$name: region 3 (nested inner)" "1:52" "$(region "$report" 3)"
    for mn in add eor cnt subs b.ne; do
        check "$name: region 1 $mn" 1000 "$(hist "$report" 1 "$mn")"
    done
    check "$name: region 1 bl" 1 "$(hist "$report" 1 bl)"
    check "$name: region 1 histogram sum" 5002 "$(awk '
        /^insncount: region index=1 / { inside = 1; next } /^insncount:/ { inside = 0 }
        inside { s += $2 } END { print s }' "$report")"
    c100="$(region "$report" 4)"; c1100="$(region "$report" 5)"
    check "$name: regions 5 - 4 (asm_loop 1100 - 100 from C)" 5000 "$(( ${c1100#*:} - ${c100#*:} ))"
    check "$name: closing line" "insncount: regions=6 open=0 unmatched_end=0" "$(grep '^insncount: regions=' "$report")"
    total="$(sed -n 's/^insncount: total=\([0-9]*\) counted=\([0-9]*\) marker_insns=\([0-9]*\)$/\1 \2 \3/p' "$report")"
    read -r t c m <<<"$total"
    check "$name: total = counted + marker_insns" "$t" "$((c + m))"
    # begin is nop+ret (2), end nop+nop+ret (3): 6 regions.
    check "$name: marker instructions" 30 "$m"

    report="$work/unbalanced-$name.report"
    # shellcheck disable=SC2086
    $AARCH64_QEMU -plugin "$AARCH64_INSNCOUNT_PLUGIN,top=0,out=$report" -d plugin "$work/selftest-$name" unbalanced >/dev/null
    check "$name: unbalanced closing line" "insncount: regions=1 open=1 unmatched_end=1" "$(grep '^insncount: regions=' "$report")"
    # mov w0, #3; bl asm_loop; 3 x 5; ret; bl end
    check "$name: unbalanced inner region" "1:19" "$(region "$report" 1)"
done

# --- 2. dotprod run-time dispatch -----------------------------------------------------------
for entry in "${compilers[@]}"; do
    name="${entry%%:*}"; cc="${entry#*:}"
    log "dotprod dispatch, built with $name"
    bin="$work/dispatch-$name"
    # shellcheck disable=SC2086
    $cc -O2 -mcpu=cortex-a72 -Wall -Werror -o "$bin" tools/aarch64/dotprod/dispatch_check.c
    # shellcheck disable=SC2086
    out="$($AARCH64_QEMU -cpu cortex-a72 "$bin" || echo "exit $?")"
    check "$name: cortex-a72 picks the plain kernel" "hwcap=0x8fb asimddp=0 kernel=plain popcount=16486" "$out"
    # shellcheck disable=SC2086
    rc=0; { $AARCH64_QEMU -cpu cortex-a72 "$bin" udot >/dev/null 2>&1; } 2>/dev/null || rc=$?
    check "$name: cortex-a72 forced udot exit status (SIGILL)" 132 "$rc"
    # shellcheck disable=SC2086
    out="$($AARCH64_QEMU -cpu cortex-a76 "$bin" || echo "exit $?")"
    check "$name: cortex-a76 picks the udot kernel" "hwcap=0x119ffb asimddp=1 kernel=udot popcount=16486" "$out"
done

# --- 3. mca.py loop extraction ----------------------------------------------------------------
log "mca.py loop extraction"
mca() { AARCH64_CC="$AARCH64_CC" LLVM_MCA="$LLVM_MCA" python3 benchmarks/aarch64/mca.py "$@"; }
field() {  # field KEY : from mca.py's JSON report on stdin
    python3 -c 'import json, sys; r = json.load(sys.stdin); print(r[sys.argv[1]])' "$1"
}
macs_per_cycle() {  # macs_per_cycle MODEL : from mca.py's JSON report on stdin
    python3 -c 'import json, sys; r = json.load(sys.stdin)
print(next(round(x["macs_per_cycle"], 1) for x in r["results"] if x["model"] == sys.argv[1]))' "$1"
}
json="$(mca benchmarks/aarch64/lce_bgemm_inner_loop.s --macs 4096 --json)"
check "LCE 4x4 loop instructions" 123 "$(field loop_insns <<<"$json")"
check "LCE 4x4 cnt bits per iteration" 4096 "$(field cnt_bits_per_iter <<<"$json")"
check "LCE 4x4 MACs/cycle on cortex-a72 (issue 13: about 79)" 78.8 "$(macs_per_cycle cortex-a72 <<<"$json")"
json="$(mca benchmarks/aarch64/lce_bgemm_8x4_inner_loop.s --macs 4096 --json)"
check "LCE 8x4 loop instructions" 105 "$(field loop_insns <<<"$json")"
check "LCE 8x4 cnt bits per iteration" 4096 "$(field cnt_bits_per_iter <<<"$json")"
sample=benchmarks/aarch64/kernels/sample_eor_cnt_add.c
json="$(mca "$sample" --marker sample_tile_4x2 --cflags="-O3 -mcpu=cortex-a72" --json)"
check "sample loop cnt bits" 1024 "$(field cnt_bits_per_iter <<<"$json")"
check "sample markers leave the loop unchanged" True "$(field markers_leave_loop_unchanged <<<"$json")"
# The same markers moved inside the loop body: the loop's branch falls outside them.
sed -e '/LLVM-MCA-\(BEGIN\|END\) sample_tile_4x2"/d' \
    -e '1,/^__attribute__/s|^\( *\)uint8x16_t p0 = vld1q_u8(a0), p1|\1__asm__ volatile("// LLVM-MCA-BEGIN sample_tile_4x2");\n&|' \
    -e '1,/^__attribute__/s|^\( *\)a0 += 16; a1 += 16; w += 64;|&\n\1__asm__ volatile("// LLVM-MCA-END sample_tile_4x2");|' \
    "$sample" > "$work/markers_inside.c"
err="$(mca "$work/markers_inside.c" --marker sample_tile_4x2 2>&1 >/dev/null || true)"
check "markers inside the loop are refused" "no loop" "$(grep -o 'no loop' <<<"$err" | head -1)"
# A marker (of another region) inside the loop that ties the pointers to registers changes the
# loop's code, which the comparison with a marker-free compilation must notice.
sed '1,/^__attribute__/s|^\( *\)a0 += 16; a1 += 16; w += 64;|\1__asm__ volatile("// LLVM-MCA-BEGIN inner" : "+r"(a0), "+r"(a1), "+r"(w));\n&|' \
    "$sample" > "$work/markers_change_code.c"
json="$(mca "$work/markers_change_code.c" --marker sample_tile_4x2 --json)"
check "markers that change the loop are noticed" False "$(field markers_leave_loop_unchanged <<<"$json")"
if [ -x /opt/swift/usr/bin/swiftc ] || command -v swiftc >/dev/null; then
    json="$(mca benchmarks/aarch64/portable_xor_popcount_gemm.swift --function xorPopcountGemm --macs 1024 \
        --swiftc "$(command -v swiftc || echo /opt/swift/usr/bin/swiftc)" --json)"
    check "portable Swift loop cnt bits (2 pixels x 512)" 1024 "$(field cnt_bits_per_iter <<<"$json")"
else
    echo "skip portable Swift loop: no swiftc"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

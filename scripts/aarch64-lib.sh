# aarch64 tooling for an x86-64 Debian machine: a cross C compiler, qemu-aarch64 with the
# instruction-count plugin, and llvm-mca. Sourced, not executed:
#
#   source scripts/aarch64-lib.sh
#   require_aarch64_tools
#   $AARCH64_CC -O3 -mcpu=cortex-a72 -o prog prog.c
#   $AARCH64_QEMU -cpu cortex-a72 -plugin "$AARCH64_INSNCOUNT_PLUGIN" -d plugin ./prog
#   "$LLVM_MCA" -mtriple=aarch64 -mcpu=cortex-a72 loop.s
#
# require_aarch64_tools exports:
#   AARCH64_CC               the preferred cross C compiler (Swift toolchain's clang, else gcc)
#   AARCH64_CLANG            "/opt/swift/usr/bin/clang --target=aarch64-linux-gnu", if it works
#   AARCH64_GCC              "aarch64-linux-gnu-gcc" (always; it is what the Debian package gives)
#   AARCH64_QEMU             "qemu-aarch64 -L /usr/aarch64-linux-gnu" (add -cpu cortex-a72|cortex-a76)
#   AARCH64_INSNCOUNT_PLUGIN .build-aarch64/libinsncount.so (tools/aarch64/insncount/)
#   LLVM_MCA                 /usr/lib/llvm-19/bin/llvm-mca
#   AARCH64_DOTPROD_ATTR     the function attribute that enables UDOT in one function
#
# Run-time selection of a dotprod kernel in one binary (checked by tools/aarch64/test.sh,
# with both compilers, under -cpu cortex-a72 and -cpu cortex-a76):
#   - `__attribute__((target("arch=armv8.2-a+dotprod")))` works with the Swift toolchain's
#     clang (21) AND with Debian's aarch64-linux-gnu-gcc 12, whatever the global -mcpu/-march
#     (cortex-a72, armv8-a, none). Use this one.
#   - `__attribute__((target("+dotprod")))` works with clang only. gcc 12 accepts it, but then
#     refuses to inline vdotq_u32 ("inlining failed in call to 'always_inline' 'vdotq_u32':
#     target specific option mismatch"), because arm_neon.h declares the dotprod intrinsics
#     under `#pragma GCC target("arch=armv8.2-a+dotprod")` and armv8-a+dotprod is not a
#     superset of armv8.2-a. `target("arch=armv8-a+dotprod")` fails the same way on gcc;
#     `target("dotprod")` is a gcc error ("should be prefixed by '+'").
#   - Select with `getauxval(AT_HWCAP) & HWCAP_ASIMDDP` (<sys/auxv.h>, <asm/hwcap.h>; bit 20).
#     Under qemu 7.2, `-cpu cortex-a72` reports AT_HWCAP 0x8fb (no ASIMDDP) and a UDOT dies
#     with SIGILL (exit 132); `-cpu cortex-a76` reports 0x119ffb (ASIMDDP set) and runs it;
#     the default `-cpu max` has it too.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AARCH64_SYSROOT=/usr/aarch64-linux-gnu
AARCH64_BUILD="$BITFLEET_ROOT/.build-aarch64"
AARCH64_DOTPROD_ATTR='__attribute__((target("arch=armv8.2-a+dotprod")))'
export AARCH64_SYSROOT AARCH64_BUILD AARCH64_DOTPROD_ATTR

# aarch64_compiler_works "CC ARGS" : compiles, links and runs (under qemu) a NEON program.
aarch64_compiler_works() {
    local cc="$1" dir
    dir="$(mktemp -d)"
    cat > "$dir/probe.c" <<'EOF'
#include <arm_neon.h>
#include <stdio.h>
int main(void) {
    uint8x16_t x = vcntq_u8(vdupq_n_u8(0xff));
    printf("%u\n", (unsigned)vaddvq_u8(x));
    return 0;
}
EOF
    local ok=1
    # shellcheck disable=SC2086  # $cc is a command with arguments
    if $cc -O2 -o "$dir/probe" "$dir/probe.c" >"$dir/log" 2>&1 &&
        [ "$(qemu-aarch64 -L "$AARCH64_SYSROOT" "$dir/probe" 2>>"$dir/log")" = "128" ]; then
        ok=0
    fi
    rm -rf "$dir"
    return $ok
}

# host_cc : a C compiler for this (x86-64) machine, for the qemu plugin.
host_cc() {
    if command -v cc >/dev/null; then echo cc; return; fi
    if [ -x /opt/swift/usr/bin/clang ]; then echo /opt/swift/usr/bin/clang; return; fi
    apt_install gcc
    echo gcc
}

# build_insncount_plugin : .build-aarch64/libinsncount.so, rebuilt when its sources change.
build_insncount_plugin() {
    local src="$BITFLEET_ROOT/tools/aarch64/insncount"
    local out="$AARCH64_BUILD/libinsncount.so"
    mkdir -p "$AARCH64_BUILD"
    if [ ! -f "$out" ] || [ "$src/insncount.c" -nt "$out" ] || [ "$src/qemu-plugin-min.h" -nt "$out" ]; then
        log "building the insncount qemu plugin"
        "$(host_cc)" -O2 -Wall -Wextra -shared -fPIC -fvisibility=hidden \
            -o "$out" "$src/insncount.c" || die "building $out failed"
    fi
    AARCH64_INSNCOUNT_PLUGIN="$out"
    export AARCH64_INSNCOUNT_PLUGIN
}

# require_aarch64_cross : what the tests need (a cross compiler, the aarch64 sysroot and
# qemu-aarch64), not llvm-mca or the plugin. Exports AARCH64_CC, AARCH64_GCC, AARCH64_CLANG,
# AARCH64_QEMU.
require_aarch64_cross() {
    # qemu-user, not only qemu-user-static: only the dynamic qemu-aarch64 loads TCG plugins.
    apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
    command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 missing after installing qemu-user"
    AARCH64_QEMU="qemu-aarch64 -L $AARCH64_SYSROOT"
    AARCH64_GCC="aarch64-linux-gnu-gcc"
    aarch64_compiler_works "$AARCH64_GCC" || die "$AARCH64_GCC cannot build and run a NEON program under qemu"
    AARCH64_CLANG=""
    local clang=/opt/swift/usr/bin/clang
    [ -x "$clang" ] || clang="$(command -v clang || true)"
    if [ -n "$clang" ] && aarch64_compiler_works "$clang --target=aarch64-linux-gnu"; then
        AARCH64_CLANG="$clang --target=aarch64-linux-gnu"
    else
        log "no clang that cross-compiles for aarch64-linux-gnu; using $AARCH64_GCC"
    fi
    AARCH64_CC="${AARCH64_CLANG:-$AARCH64_GCC}"
    export AARCH64_QEMU AARCH64_GCC AARCH64_CLANG AARCH64_CC
}

require_aarch64_tools() {
    require_aarch64_cross
    apt_install llvm-19
    LLVM_MCA=/usr/lib/llvm-19/bin/llvm-mca
    [ -x "$LLVM_MCA" ] || die "$LLVM_MCA missing after installing llvm-19"
    export LLVM_MCA
    build_insncount_plugin
}

# aarch64_versions : one line per tool, for benchmark reports.
aarch64_versions() {
    echo "qemu: $(qemu-aarch64 --version | head -1)"
    echo "llvm-mca: $("$LLVM_MCA" --version | grep -m1 -i 'llvm version' | sed 's/^ *//')"
    echo "gcc: $($AARCH64_GCC --version | head -1)"
    [ -n "$AARCH64_CLANG" ] && echo "clang: $($AARCH64_CLANG --version | head -1)"
    return 0
}

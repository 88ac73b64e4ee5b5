#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (see docs/FUZZING.md). Builds the fuzz targets in
# Fuzz/ (release, -sanitize=fuzzer,address) and runs each for a bounded time on a copy of
# its committed seed corpus (Fuzz/Corpus/TARGET), so the committed corpus never grows.
# Crash artifacts, logs and the grown corpus go to .build-fuzz-out/TARGET/ (gitignored).
# Exits non-zero if any target crashes, hangs, runs out of memory or fails to start.
#
#   ./scripts/fuzz.sh                          every target, 30 s each (what CI runs)
#   ./scripts/fuzz.sh --seconds 600 onnx bnn   those targets, 10 minutes each
#   ./scripts/fuzz.sh --write-seeds            regenerate the committed seed corpus
#
# Targets: bnn (.bnn reader + validator), manifest (signed-manifest push path), onnx (ONNX
# importer), api (controller request bodies).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BITFLEET_ROOT"

ALL_TARGETS=(bnn manifest onnx api)
seconds=30
write_seeds=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) [ $# -ge 2 ] || die "--seconds needs a value"; seconds="$2"; shift 2 ;;
        --seconds=*) seconds="${1#--seconds=}"; shift ;;
        --write-seeds) write_seeds=1; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) targets+=("$1"); shift ;;
    esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || die "--seconds takes a positive number of seconds"
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for target in "${targets[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $target "* ]] || die "unknown target '$target' (targets: ${ALL_TARGETS[*]})"
done

# Longest input each target mutates: the seeds fit, and bigger inputs only slow it down.
max_len() {
    case "$1" in
        bnn) echo 16384 ;;
        manifest) echo 8192 ;;
        onnx) echo 131072 ;;  # the committed ONNX fixtures in the corpus are up to ~125 KB
        api) echo 16384 ;;
    esac
}

require_swift
scratch="$BITFLEET_ROOT/.build-fuzz"
# lld: gold hits an internal error linking swift-crypto's BoringSSL with the sanitizers.
build_flags=(--package-path Fuzz --scratch-path "$scratch" -c release
             -Xswiftc -sanitize=fuzzer,address -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld)
log "building the fuzz targets (release, -sanitize=fuzzer,address)"
swift build "${build_flags[@]}"
bin="$(swift build "${build_flags[@]}" --show-bin-path)"

# LeakSanitizer is off: the Swift runtime's lazily built metadata caches look like leaks.
# No Swift backtracer: it hangs or trips ASan inside libFuzzer; libFuzzer prints the stack.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=0:handle_abort=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

if [ "$write_seeds" -eq 1 ]; then
    for target in "${targets[@]}"; do
        corpus="Fuzz/Corpus/$target"
        log "writing seeds for $target into $corpus"
        if [ "$target" = onnx ]; then
            rm -rf "$corpus" && mkdir -p "$corpus"
            python_env tools/onnx_fixtures/requirements.txt
            "$BITFLEET_PYTHON" Fuzz/onnx_seeds.py "$corpus" >/dev/null
            # The committed fixtures small enough to mutate (the others are 0.5-3 MB).
            for fixture in binary_mlp binary_cnn_opset11 binary_cnn_opset21 xnor_alpha; do
                cp "Tests/Fixtures/onnx/$fixture.onnx" "$corpus/fixture-$fixture.onnx"
            done
        else
            "$bin/fuzz-$target" --write-seeds "$corpus"
        fi
        # Inputs that once crashed stay in the corpus (and in the regression tests).
        if [ -d "Tests/Fixtures/fuzz-regressions/$target" ]; then
            cp Tests/Fixtures/fuzz-regressions/"$target"/* "$corpus"/
        fi
    done
    du -sh Fuzz/Corpus
    exit 0
fi

out="$BITFLEET_ROOT/.build-fuzz-out"
# libFuzzer's mutations follow its seed; a run is repeated with FUZZ_SEED (the same seed,
# corpus and binary mutate the same way; how far it gets in --seconds depends on the machine).
seed="${FUZZ_SEED:-$(date +%s)}"
log "libFuzzer seed $seed (repeat with FUZZ_SEED=$seed)"
failed=()
for target in "${targets[@]}"; do
    work="$out/$target"
    rm -rf "$work"
    mkdir -p "$work/artifacts"
    cp -R "Fuzz/Corpus/$target" "$work/corpus"
    log "fuzzing $target for ${seconds}s (corpus: $(ls "$work/corpus" | wc -l) seeds; log: ${work#"$BITFLEET_ROOT"/}/fuzz.log)"
    dict=()
    [ -f "Fuzz/Dictionaries/$target.dict" ] && dict=(-dict="Fuzz/Dictionaries/$target.dict")
    status=0
    "$bin/fuzz-$target" "$work/corpus" "${dict[@]}" \
        -seed="$seed" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$target")" \
        -artifact_prefix="$work/artifacts/" -print_final_stats=1 -print_funcs=0 \
        >"$work/fuzz.log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^#[0-9]+ +DONE' "$work/fuzz.log" \
        | sed "s/^/    $target: /" >&2 || true
    artifacts=$(ls "$work/artifacts" | wc -l)
    if [ "$status" -ne 0 ] || [ "$artifacts" -gt 0 ]; then
        failed+=("$target")
        printf '\n%s: libFuzzer exited with %s; artifacts:\n' "$target" "$status" >&2
        ls -l "$work/artifacts" >&2 || true
        grep -E -A 30 'ERROR: (libFuzzer|AddressSanitizer)|FUZZ INVARIANT|Fatal error|deadly signal' "$work/fuzz.log" | head -60 >&2 || true
        printf 'reproduce: %s %s/artifacts/<file>\n\n' "${bin#"$BITFLEET_ROOT"/}/fuzz-$target" "${work#"$BITFLEET_ROOT"/}" >&2
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    die "fuzzing found problems in: ${failed[*]} (see docs/FUZZING.md for turning a crash into a regression test)"
fi
log "fuzzing passed: ${targets[*]} (${seconds}s each)"

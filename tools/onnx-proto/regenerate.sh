#!/usr/bin/env bash
# regenerate.sh - reproduce Sources/ModelImport/Generated/onnx.pb.swift from tools/onnx-proto/onnx.proto3.
#
# The Swift code for the ONNX protobuf messages is generated ONCE and checked in, so building
# BitFleet never runs protoc or the swift-protobuf build plugin. Run this script only when one of
# the pinned inputs below changes, then check in the new onnx.pb.swift (and onnx.proto3).
#
# Pinned inputs (change them together):
#   ONNX schema     onnx 1.23.2 (same pin as tools/models/requirements.txt). onnx.proto3 is the
#                   proto3 variant of onnx.proto, written by the wheel's own onnx/gen_proto.py
#                   (`gen_proto.py -l onnx`, i.e. how upstream produces onnx/onnx.proto3) from the
#                   wheel's onnx.in.proto; the same run reproduces the wheel's onnx.proto byte for byte.
#   swift-protobuf  1.39.0 (tag 1.39.0 = commit 4a4c32d9396c22e1dc558e94b7e8c0145c7de93b); the
#                   generated file only compiles against SwiftProtobuf 1.x >= the generator version.
#   protoc          Debian's protobuf-compiler (libprotoc 3.21.12 on Debian 12); another protoc is
#                   accepted with a warning (the Swift output is not expected to change).
#   protoc options  --swift_opt=Visibility=Public
#
# Usage (from anywhere):
#   tools/onnx-proto/regenerate.sh                 write Sources/ModelImport/Generated/onnx.pb.swift
#   tools/onnx-proto/regenerate.sh --check         generate into a temp dir and compare with the
#                                                  checked-in file; exit 1 if they differ
#   tools/onnx-proto/regenerate.sh --refresh-proto first re-derive onnx.proto3 from the onnx
#                                                  $ONNX_VERSION wheel (downloaded with pip, not installed)
#
# Environment:
#   PROTOC_GEN_SWIFT=/path/to/protoc-gen-swift   use this plugin instead of building one (must
#                                                report version $SWIFT_PROTOBUF_VERSION)
#   SWIFT_PROTOBUF_BUILD_DIR=DIR                 where swift-protobuf is cloned and built (default
#                                                ${TMPDIR:-/tmp}/bitfleet-swift-protobuf-<version>);
#                                                an existing build of the right version is reused.
#
# Idempotent: every run with the same inputs writes the same bytes; the protoc-gen-swift build
# (~2-10 minutes on 2 cores) happens once and is reused. Nothing outside the two output files and
# the temp/build directories is touched. Installing protobuf-compiler needs root (apt-get).
set -euo pipefail

ONNX_VERSION=1.23.2
SWIFT_PROTOBUF_VERSION=1.39.0
SWIFT_PROTOBUF_URL=https://github.com/apple/swift-protobuf
EXPECTED_PROTOC="libprotoc 3.21.12"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
PROTO_FILE="onnx.proto3"
OUT_DIR="$REPO_ROOT/Sources/ModelImport/Generated"
OUT_FILE="$OUT_DIR/onnx.pb.swift"

# Swift's per-process hash seed must not influence anything we build or run.
export SWIFT_DETERMINISTIC_HASHING=1

mode=write
refresh_proto=0
for arg in "$@"; do
    case "$arg" in
        --check) mode=check ;;
        --refresh-proto) refresh_proto=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "regenerate.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "regenerate.sh: $*" >&2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bitfleet-onnx-proto.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# --- 1. protoc ---------------------------------------------------------------------------------
if ! command -v protoc >/dev/null 2>&1; then
    log "protoc not found; installing Debian's protobuf-compiler"
    if [ "$(id -u)" -ne 0 ]; then
        log "need root to apt-get install protobuf-compiler"; exit 1
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q protobuf-compiler
fi
protoc_version="$(protoc --version)"
if [ "$protoc_version" != "$EXPECTED_PROTOC" ]; then
    log "warning: using $protoc_version (the checked-in file was made with $EXPECTED_PROTOC)"
fi

# --- 2. protoc-gen-swift $SWIFT_PROTOBUF_VERSION ----------------------------------------------
plugin_ok() { [ -x "$1" ] && [ "$("$1" --version 2>/dev/null)" = "protoc-gen-swift $SWIFT_PROTOBUF_VERSION" ]; }

if [ -n "${PROTOC_GEN_SWIFT:-}" ]; then
    plugin_ok "$PROTOC_GEN_SWIFT" || { log "PROTOC_GEN_SWIFT=$PROTOC_GEN_SWIFT is not protoc-gen-swift $SWIFT_PROTOBUF_VERSION"; exit 1; }
    PLUGIN="$PROTOC_GEN_SWIFT"
else
    BUILD_DIR="${SWIFT_PROTOBUF_BUILD_DIR:-${TMPDIR:-/tmp}/bitfleet-swift-protobuf-$SWIFT_PROTOBUF_VERSION}"
    PLUGIN="$BUILD_DIR/.build/release/protoc-gen-swift"
    if plugin_ok "$PLUGIN"; then
        log "reusing $PLUGIN"
    else
        command -v swift >/dev/null 2>&1 || export PATH="$PATH:/opt/swift/usr/bin"
        if [ ! -d "$BUILD_DIR/.git" ]; then
            log "cloning $SWIFT_PROTOBUF_URL into $BUILD_DIR"
            rm -rf "$BUILD_DIR"
            git clone -q "$SWIFT_PROTOBUF_URL" "$BUILD_DIR"
        fi
        git -C "$BUILD_DIR" fetch -q --tags origin 2>/dev/null || true
        git -C "$BUILD_DIR" -c advice.detachedHead=false checkout -q "refs/tags/$SWIFT_PROTOBUF_VERSION"
        log "building protoc-gen-swift $SWIFT_PROTOBUF_VERSION (takes a few minutes)"
        (cd "$BUILD_DIR" && swift build -c release --product protoc-gen-swift)
        plugin_ok "$PLUGIN" || { log "built plugin does not report version $SWIFT_PROTOBUF_VERSION"; exit 1; }
    fi
fi

# --- 3. (optional) re-derive onnx.proto3 from the onnx wheel ----------------------------------
if [ "$refresh_proto" = 1 ]; then
    log "deriving $PROTO_FILE from onnx $ONNX_VERSION"
    python3 -m pip download -q --no-deps --only-binary :all: "onnx==$ONNX_VERSION" -d "$WORK/wheel"
    python3 - "$WORK/wheel" "$WORK/unpacked" <<'PY'
import glob, sys, zipfile
(whl,) = glob.glob(sys.argv[1] + "/onnx-*.whl")
zipfile.ZipFile(whl).extractall(sys.argv[2])
PY
    # gen_proto.py uses only the standard library and reads onnx.in.proto next to itself.
    python3 "$WORK/unpacked/onnx/gen_proto.py" -l -o "$WORK/proto" onnx >/dev/null
    cmp -s "$WORK/proto/onnx.proto" "$WORK/unpacked/onnx/onnx.proto" \
        || { log "gen_proto.py output does not match the wheel's onnx.proto"; exit 1; }
    cp "$WORK/proto/onnx.proto3" "$SCRIPT_DIR/$PROTO_FILE"
fi

# --- 4. generate --------------------------------------------------------------------------------
mkdir -p "$WORK/out"
# Run from SCRIPT_DIR with -I . so the "Source:" line in the generated header is just onnx.proto3.
(cd "$SCRIPT_DIR" && protoc \
    --plugin=protoc-gen-swift="$PLUGIN" \
    --swift_out="$WORK/out" \
    --swift_opt=Visibility=Public \
    -I . "$PROTO_FILE")
GENERATED="$WORK/out/onnx.pb.swift"
[ -f "$GENERATED" ] || { log "protoc did not produce onnx.pb.swift"; exit 1; }

if [ "$mode" = check ]; then
    if cmp -s "$GENERATED" "$OUT_FILE"; then
        log "up to date: ${OUT_FILE#"$REPO_ROOT"/}"
    else
        log "DIFFERS: ${OUT_FILE#"$REPO_ROOT"/} is not what $PROTO_FILE + protoc-gen-swift $SWIFT_PROTOBUF_VERSION produce"
        diff -u "$OUT_FILE" "$GENERATED" | head -40 >&2 || true
        exit 1
    fi
else
    mkdir -p "$OUT_DIR"
    if cmp -s "$GENERATED" "$OUT_FILE"; then
        log "unchanged: ${OUT_FILE#"$REPO_ROOT"/}"
    else
        cp "$GENERATED" "$OUT_FILE"
        log "wrote ${OUT_FILE#"$REPO_ROOT"/} ($(wc -c <"$OUT_FILE") bytes)"
    fi
fi

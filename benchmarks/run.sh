#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md: builds the release fleetctl (as the README does), installs
# ONNX Runtime in .build-python, and runs benchmarks/compare.py.
#   ./benchmarks/run.sh [--runs N]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$BITFLEET_ROOT"
require_swift
log "building fleetctl (release)"
swift build -c release --product fleetctl
python_env benchmarks/requirements.txt
"$BITFLEET_PYTHON" benchmarks/compare.py --fleetctl .build/release/fleetctl --work .build-bench "$@"

#!/usr/bin/env bash
# Runs every BitFleet test: installs what is missing, checks that the committed ONNX
# fixtures still match a freshly installed ONNX Runtime, checks every C kernel against its
# scalar reference natively and on aarch64 under qemu (scripts/test-kernels.sh), runs
# `swift test`, then drives the dashboard in headless Chromium (Tests/Browser/dashboard_test.py)
# and checks that Ctrl-C stops the demo and a rerun reuses its state (Tests/Demo/).
#
#   ./scripts/test.sh            all tests
#   ./scripts/test.sh --filter X only Swift tests matching X (fixture check skipped)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BITFLEET_ROOT"

require_swift
require_system_packages
apt_install curl openssl  # the TLS test talks to the controller with curl, over a certificate made by openssl

if [ $# -eq 0 ]; then
    apt_install chromium
    python_env tools/onnx_fixtures/requirements.txt Tests/Browser/requirements.txt
    log "checking the ONNX fixtures against ONNX Runtime"
    "$BITFLEET_PYTHON" tools/onnx_fixtures/gen_fixtures.py --check
fi

if [ $# -eq 0 ]; then
    # Every C micro-kernel against a scalar reference: x86-64 natively, aarch64 under qemu
    # as a Cortex-A72 and a Cortex-A76.
    ./scripts/test-kernels.sh
fi

log "building and running the Swift tests"
swift build --build-tests
swift test --skip-build "$@"

if [ $# -eq 0 ]; then
    log "driving the dashboard in headless Chromium"
    "$BITFLEET_PYTHON" Tests/Browser/dashboard_test.py --bin "$(swift build --show-bin-path)"
    log "interrupting the demo and running it again on its state"
    Tests/Demo/demo_interrupt_test.sh "$(swift build --show-bin-path)"
fi

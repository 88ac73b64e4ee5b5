#!/usr/bin/env bash
# Builds the agent bundle (binary, systemd unit, example config, installer) as
#   .build-bundle/bitfleet-agent-<arch>.tar.gz
# Native build by default; for a Raspberry Pi from x86-64 pass a Swift SDK, e.g.
#   ./Deploy/build-agent-bundle.sh --swift-sdk aarch64-swift-linux-musl   (docs/RASPBERRY_PI.md)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$BITFLEET_ROOT"
require_swift
SDK=()
ARCH=$(uname -m)
if [ "${1:-}" = "--swift-sdk" ]; then
    SDK=(--swift-sdk "$2")
    ARCH=${2%%-*}
fi
apt_install libcurl4-openssl-dev libsqlite3-dev
log "building fleet-agent (release, static Swift runtime) for $ARCH"
swift build -c release --product fleet-agent --static-swift-stdlib "${SDK[@]}"
BIN=$(swift build -c release --show-bin-path "${SDK[@]}")
OUT=.build-bundle/bitfleet-agent-$ARCH
rm -rf "$OUT" && mkdir -p "$OUT/bin" "$OUT/systemd" "$OUT/config"
cp "$BIN/fleet-agent" "$OUT/bin/"
strip "$OUT/bin/fleet-agent" 2>/dev/null || true
cp Deploy/systemd/bitfleet-agent.service "$OUT/systemd/"
cp Deploy/config/agent.env "$OUT/config/agent.env.example"
cp Deploy/install-agent.sh "$OUT/"
tar -C .build-bundle -czf "$OUT.tar.gz" "bitfleet-agent-$ARCH"
log "wrote $OUT.tar.gz ($(du -h "$OUT.tar.gz" | cut -f1); binary $(du -h "$OUT/bin/fleet-agent" | cut -f1))"

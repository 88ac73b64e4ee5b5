#!/usr/bin/env bash
# BitFleet demo. Installs what is missing, builds in release mode, then shows the engine on
# the sample Fashion-MNIST models: conversion from ONNX, inspection, accuracy on the full
# test set and latency. (The fleet demo with controller and agents replaces this once the
# controller and agent exist.)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$BITFLEET_ROOT"

require_swift
require_system_packages
log "building fleetctl (release; the first build takes a few minutes)"
swift build -c release --product fleetctl
F=.build/release/fleetctl
out=demo-data
mkdir -p "$out"

for model in bnn-mlp bnn-cnn; do
    log "converting Models/fashion-mnist/$model.onnx"
    $F model convert "Models/fashion-mnist/$model.onnx" -o "$out/$model.bnn" --name "fashion-$model" --version v1 \
        --labels Models/fashion-mnist/labels.txt --mean 0.286 --std 0.353
    log "inspecting $model"
    $F model inspect "$out/$model.bnn"
    log "accuracy of $model on the 10,000 Fashion-MNIST test images"
    $F model run "$out/$model.bnn" --idx /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --threads 2
    log "latency of $model"
    $F model bench "$out/$model.bnn" --runs 200
done
log "done; the converted models are in $out/"

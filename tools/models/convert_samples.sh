#!/usr/bin/env bash
# Converts the trained Fashion-MNIST ONNX models to BitFleet's sample .bnn files, with
# labels, preprocessing and the ONNX Runtime test accuracy in their metadata.
#   tools/models/convert_samples.sh [path/to/fleetctl]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$BITFLEET_ROOT"
FLEETCTL=${1:-}
if [ -z "$FLEETCTL" ]; then
    require_swift
    swift build -c release --product fleetctl
    FLEETCTL=.build/release/fleetctl
fi
dir=Models/fashion-mnist
for model in bnn-mlp bnn-cnn; do
    accuracy=$(python3 -c "import json; print(json.load(open('$dir/accuracy.json'))['models']['$model']['onnxruntime_accuracy'])")
    "$FLEETCTL" model convert "$dir/$model.onnx" -o "$dir/$model.bnn" --name "fashion-$model" --version v1 \
        --description "Binary $( [ $model = bnn-mlp ] && echo MLP || echo CNN ) trained on Fashion-MNIST (tools/models/train_fashion_mnist.py)" \
        --labels "$dir/labels.txt" --mean 0.286 --std 0.353 \
        --property "accuracy=$accuracy" --property dataset=fashion-mnist --property test_images=10000
done

import BitModel
import Foundation

/// A deliberately naive float interpreter of a `Model`: every value is a float NHWC array
/// (binarized values are +1/-1 floats), every op is written straight from its definition
/// with no packing, fusion or blocking. The engine must agree with it.
struct ReferenceInterpreter {
    let model: Model

    func run(_ input: [Float]) throws -> [Float] {
        let shapes = try model.validate()
        var values = [[Float]](repeating: [], count: shapes.count)
        values[0] = toNHWC(input, spec: model.metadata.input, shape: shapes[0])
        for (index, layer) in model.layers.enumerated() {
            let inputs = layer.inputs.map { values[$0] }
            let inShapes = layer.inputs.map { shapes[$0] }
            values[index + 1] = evaluate(layer.operation, inputs: inputs, shapes: inShapes, output: shapes[index + 1])
        }
        return fromNHWC(values[model.output], spec: model.metadata.output, shape: shapes[model.output])
    }

    private func t(_ id: TensorID) -> [Float] {
        let tensor = model.tensors[id]
        return tensor.dataType == .float32 ? tensor.floats : tensor.unpackedSigns()
    }

    private func toNHWC(_ x: [Float], spec: TensorSpec, shape: ValueShape) -> [Float] {
        guard spec.layout == .nchw else { return x }
        var y = [Float](repeating: 0, count: x.count)
        for c in 0..<shape.channels { for p in 0..<shape.pixels { y[p * shape.channels + c] = x[c * shape.pixels + p] } }
        return y
    }

    private func fromNHWC(_ x: [Float], spec: TensorSpec, shape: ValueShape) -> [Float] {
        guard spec.layout == .nchw else { return x }
        var y = [Float](repeating: 0, count: x.count)
        for c in 0..<shape.channels { for p in 0..<shape.pixels { y[c * shape.pixels + p] = x[p * shape.channels + c] } }
        return y
    }

    /// Convolution by definition; `padValue` is what positions outside the input hold.
    private func convolve(_ x: [Float], _ s: ValueShape, weights: [Float], outChannels: Int, window w: Window2D,
                          padValue: Float, output: ValueShape) -> [Float] {
        var y = [Float](repeating: 0, count: output.elementCount)
        for oy in 0..<output.height {
            for ox in 0..<output.width {
                for o in 0..<outChannels {
                    var sum: Float = 0
                    for ky in 0..<w.kernelH {
                        for kx in 0..<w.kernelW {
                            let iy = oy * w.strideH - w.padTop + ky, ix = ox * w.strideW - w.padLeft + kx
                            let inside = iy >= 0 && iy < s.height && ix >= 0 && ix < s.width
                            for c in 0..<s.channels {
                                let v = inside ? x[(iy * s.width + ix) * s.channels + c] : padValue
                                sum += v * weights[((o * w.kernelH + ky) * w.kernelW + kx) * s.channels + c]
                            }
                        }
                    }
                    y[(oy * output.width + ox) * outChannels + o] = sum
                }
            }
        }
        return y
    }

    private func evaluate(_ op: LayerOperation, inputs: [[Float]], shapes: [ValueShape], output: ValueShape) -> [Float] {
        let x = inputs.first ?? []
        let c = output.channels
        switch op {
        case .binarize, .sign:
            return x.map { $0 >= 0 ? 1 : -1 }
        case .binaryConv2D(let l):
            let pad: Float = l.padValue == .zero ? 0 : (l.padValue == .plusOne ? 1 : -1)
            let dots = convolve(x, shapes[0], weights: t(l.weights), outChannels: l.outChannels, window: l.window,
                                padValue: pad, output: output)
            let m = t(l.multiplier), b = t(l.bias)
            return dots.indices.map { m[$0 % c] * dots[$0] + b[$0 % c] }
        case .binaryDense(let l):
            let w = t(l.weights), m = t(l.multiplier), b = t(l.bias)
            return (0..<l.outFeatures).map { o in
                var dot: Float = 0
                for i in 0..<l.inFeatures { dot += x[i] * w[o * l.inFeatures + i] }
                return m[o] * dot + b[o]
            }
        case .conv2D(let l):
            let y = convolve(x, shapes[0], weights: t(l.weights), outChannels: l.outChannels, window: l.window,
                             padValue: 0, output: output)
            guard let bias = l.bias.map(t) else { return y }
            return y.indices.map { y[$0] + bias[$0 % c] }
        case .groupedConv2D(let l):
            // Each group convolved on its own slice of channels, by definition.
            let s = shapes[0], gi = l.inChannels / l.groups, go = l.outChannels / l.groups
            let w = t(l.weights), bias = l.bias.map(t)
            var y = [Float](repeating: 0, count: output.elementCount)
            for g in 0..<l.groups {
                let slice = ValueShape(kind: .real, height: s.height, width: s.width, channels: gi)
                var xs = [Float](repeating: 0, count: slice.elementCount)
                for p in 0..<s.pixels { for i in 0..<gi { xs[p * gi + i] = x[p * s.channels + g * gi + i] } }
                let ws = Array(w[(g * go * l.window.kernelH * l.window.kernelW * gi)..<((g + 1) * go * l.window.kernelH * l.window.kernelW * gi)])
                let part = ValueShape(kind: .real, height: output.height, width: output.width, channels: go)
                let ys = convolve(xs, slice, weights: ws, outChannels: go, window: l.window, padValue: 0, output: part)
                for p in 0..<output.pixels { for j in 0..<go { y[p * c + g * go + j] = ys[p * go + j] + (bias?[g * go + j] ?? 0) } }
            }
            return y
        case .dense(let l):
            let w = t(l.weights), bias = l.bias.map(t)
            return (0..<l.outFeatures).map { o in
                var sum: Float = 0
                for i in 0..<l.inFeatures { sum += x[i] * w[o * l.inFeatures + i] }
                return sum + (bias?[o] ?? 0)
            }
        case .channelAffine(let l):
            let m = t(l.multiplier), b = t(l.bias)
            return x.indices.map { m[$0 % c] * x[$0] + b[$0 % c] }
        case .add:
            return zip(inputs[0], inputs[1]).map { $0 + $1 }
        case .concat:
            var y = [Float]()
            for p in 0..<output.pixels {
                for (i, input) in inputs.enumerated() {
                    let ci = shapes[i].channels
                    y += input[(p * ci)..<((p + 1) * ci)]
                }
            }
            return y
        case .pool2D(let pool):
            let s = shapes[0], w = pool.window
            var y = [Float](repeating: 0, count: output.elementCount)
            for oy in 0..<output.height {
                for ox in 0..<output.width {
                    for ch in 0..<c {
                        var values: [Float] = []
                        for ky in 0..<w.kernelH {
                            for kx in 0..<w.kernelW {
                                let iy = oy * w.strideH - w.padTop + ky, ix = ox * w.strideW - w.padLeft + kx
                                if iy >= 0 && iy < s.height && ix >= 0 && ix < s.width {
                                    values.append(x[(iy * s.width + ix) * c + ch])
                                }
                            }
                        }
                        let r: Float
                        if pool.kind == .max {
                            r = values.max()!
                        } else {
                            let divisor = pool.countIncludesPadding ? Float(w.kernelH * w.kernelW) : Float(values.count)
                            r = values.reduce(0, +) / divisor
                        }
                        y[(oy * output.width + ox) * c + ch] = r
                    }
                }
            }
            return y
        case .globalAveragePool:
            let s = shapes[0]
            return (0..<c).map { ch in
                (0..<s.pixels).reduce(Float(0)) { $0 + x[$1 * c + ch] } / Float(s.pixels)
            }
        case .relu:
            return x.map { max($0, 0) }
        case .prelu(let l):
            let slope = t(l.slope)
            return x.indices.map { x[$0] < 0 ? x[$0] * slope[$0 % c] : x[$0] }
        case .clip(let l):
            return x.map { min(max($0, l.min), l.max) }
        case .flatten:
            return x
        case .softmax:
            var y = [Float](repeating: 0, count: x.count)
            for p in 0..<output.pixels {
                let row = x[(p * c)..<((p + 1) * c)]
                let largest = row.max()!
                let e = row.map { exp($0 - largest) }
                let sum = e.reduce(0, +)
                for i in 0..<c { y[p * c + i] = e[i] / sum }
            }
            return y
        case .logSoftmax:
            var y = [Float](repeating: 0, count: x.count)
            for p in 0..<output.pixels {
                let row = x[(p * c)..<((p + 1) * c)].map(Double.init)
                let logSum = log(row.map { exp($0) }.reduce(0, +))
                for i in 0..<c { y[p * c + i] = Float(row[i] - logSum) }
            }
            return y
        }
    }
}

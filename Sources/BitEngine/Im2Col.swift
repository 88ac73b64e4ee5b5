import BitModel

/// Validity of kernel taps per output row/column, precomputed so the inner loops never
/// test bounds: bit `k` of `rows[oy]` is set when kernel row `k` reads inside the input.
struct TapValidity {
    let rows: [UInt64]
    let columns: [UInt64]
    let fullRows: UInt64
    let fullColumns: UInt64

    init(window: Window2D, inputHeight: Int, inputWidth: Int, outputHeight: Int, outputWidth: Int) {
        func masks(out: Int, input: Int, kernel: Int, stride: Int, pad: Int) -> [UInt64] {
            (0..<out).map { o in
                var mask: UInt64 = 0
                for k in 0..<kernel {
                    let i = o * stride - pad + k
                    if i >= 0 && i < input { mask |= 1 << UInt64(k) }
                }
                return mask
            }
        }
        rows = masks(out: outputHeight, input: inputHeight, kernel: window.kernelH, stride: window.strideH, pad: window.padTop)
        columns = masks(out: outputWidth, input: inputWidth, kernel: window.kernelW, stride: window.strideW, pad: window.padLeft)
        fullRows = window.kernelH == 64 ? ~0 : (1 << UInt64(window.kernelH)) - 1
        fullColumns = window.kernelW == 64 ? ~0 : (1 << UInt64(window.kernelW)) - 1
    }
}

/// Gathers the receptive field of output pixels into rows of `kernelH * kernelW *
/// pixelStride` elements, in (ky, kx, channel) order, the order weights are packed in.
/// Positions outside the input get `padding` (a word pattern for bits, 0 for floats).
@inline(__always)
func im2col<Element>(input: UnsafePointer<Element>, inputWidth: Int, inputHeight: Int, pixelStride: Int,
                     window: Window2D, outputWidth: Int, pixels: Range<Int>,
                     padding: UnsafePointer<Element>, into columns: UnsafeMutablePointer<Element>) {
    let kw = window.kernelW
    let rowLength = window.kernelH * kw * pixelStride
    var destination = columns
    for pixel in pixels {
        let oy = pixel / outputWidth, ox = pixel % outputWidth
        let iy0 = oy * window.strideH - window.padTop
        let ix0 = ox * window.strideW - window.padLeft
        let columnsInside = ix0 >= 0 && ix0 + kw <= inputWidth
        var d = destination
        for ky in 0..<window.kernelH {
            let iy = iy0 + ky
            if iy < 0 || iy >= inputHeight {
                for _ in 0..<kw { d.update(from: padding, count: pixelStride); d += pixelStride }
                continue
            }
            let rowStart = input + (iy * inputWidth) * pixelStride
            if columnsInside {
                d.update(from: rowStart + ix0 * pixelStride, count: kw * pixelStride)
                d += kw * pixelStride
            } else {
                for kx in 0..<kw {
                    let ix = ix0 + kx
                    if ix < 0 || ix >= inputWidth {
                        d.update(from: padding, count: pixelStride)
                    } else {
                        d.update(from: rowStart + ix * pixelStride, count: pixelStride)
                    }
                    d += pixelStride
                }
            }
        }
        destination += rowLength
    }
}

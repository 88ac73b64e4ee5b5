import BitModel
import Foundation

/// Turns raw image bytes into a model's input tensor using the preprocessing stored in the
/// model: nearest-neighbour resize to the input size, gray replicated to every channel,
/// `(x * scale - mean[c]) / std[c]`, laid out as the model declares.
public enum ImageInput {
    public struct Error: Swift.Error, CustomStringConvertible {
        public var description: String
    }

    /// `gray` holds `width * height` values in 0...255.
    public static func tensor(gray: [Float], width: Int, height: Int, for metadata: ModelMetadata) throws -> [Float] {
        guard let shape = metadata.input.spatialShape else {
            throw Error(description: "the model input \(metadata.input.shape) is not an image")
        }
        guard metadata.input.layout != .nc || shape.c == width * height else {
            throw Error(description: "the model takes a flat vector of \(shape.c) values, the image has \(width * height) pixels")
        }
        let pre = metadata.preprocessing ?? Preprocessing()
        let (h, w, c) = metadata.input.layout == .nc ? (height, width, 1) : (shape.h, shape.w, shape.c)
        var output = [Float](repeating: 0, count: h * w * c)
        for channel in 0..<c {
            let mean = pre.mean.count == 1 ? pre.mean[0] : pre.mean[channel]
            let std = pre.std.count == 1 ? pre.std[0] : pre.std[channel]
            for y in 0..<h {
                for x in 0..<w {
                    let source = gray[(y * height / h) * width + (x * width / w)]
                    let value = (source * pre.scale - mean) / std
                    let index = metadata.input.layout == .nhwc ? (y * w + x) * c + channel : (channel * h + y) * w + x
                    output[index] = value
                }
            }
        }
        return output
    }

    public static func tensor(pgm data: Data, for metadata: ModelMetadata) throws -> [Float] {
        let image = try PGMImage(data)
        let scale = 255 / Float(image.maxValue)
        return try tensor(gray: image.pixels.map { Float($0) * scale }, width: image.width, height: image.height, for: metadata)
    }
}

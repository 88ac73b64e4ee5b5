/// Upper bounds that keep a hostile or corrupted file from making the reader or the
/// planner allocate absurd amounts of memory. They are far above any model a
/// Raspberry Pi class device can run.
public enum ModelLimits {
    public static let maxFileBytes = 1 << 31            // 2 GiB
    public static let maxSections = 32
    public static let maxJSONSectionBytes = 64 << 20    // 64 MiB of metadata/graph text
    public static let maxLayers = 100_000
    public static let maxTensors = 200_000
    public static let maxDimension = 1 << 24
    public static let maxTensorElements = 1 << 31
    public static let maxKernelSize = 64
    public static let maxStride = 64
    public static let maxActivationElements = 1 << 28   // one activation: 1 GiB of float32
    public static let maxSelfTests = 64
    public static let maxLabels = 100_000
}

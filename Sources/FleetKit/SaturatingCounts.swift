/// Counts from devices are untrusted: a sum of values that are each in range can still
/// overflow `Int`, and Swift traps on overflow, which took the whole controller down (one
/// heartbeat with two shadow reports of `samples` near `Int.max`). Every sum of counts
/// that came over the network goes through these instead of `+`.
extension Int {
    /// `self + other`, pinned to `Int.min`/`Int.max` instead of trapping.
    @inlinable
    public func saturatingAdding(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }

    @inlinable
    public mutating func saturatingAdd(_ other: Int) {
        self = saturatingAdding(other)
    }
}

extension Array where Element == Int {
    /// Element-wise saturating addition; `self` grows to `other`'s length.
    @inlinable
    public mutating func saturatingAdd(_ other: [Int]) {
        if count < other.count { append(contentsOf: repeatElement(0, count: other.count - count)) }
        for index in other.indices { self[index].saturatingAdd(other[index]) }
    }

    /// The saturating sum of the elements.
    @inlinable
    public var saturatingSum: Int { reduce(0) { $0.saturatingAdding($1) } }
}

import Foundation

/// Minimum-count (k) suppression of exact counts, such that no withheld count can be
/// recovered by subtraction from any other released number (docs/PRIVACY.md,
/// "Minimum-count suppression"). Every released non-zero number is a count of at least k
/// events, and every released total is the sum of released parts.
public enum Suppression {
    /// A partition of `total` events into cells (e.g. class counts), released under k.
    public struct Partition: Equatable, Sendable {
        /// Released cells: each is 0 or >= k.
        public var cells: [Int]
        /// Indices of cells withheld (sent as 0), ascending.
        public var withheld: [Int]
        /// The withheld cells' events together (plus events in no cell): 0 or >= k.
        public var other: Int
        /// What is released as the total: sum of `cells` plus `other`.
        public var total: Int

        public init(cells: [Int], withheld: [Int], other: Int, total: Int) {
            self.cells = cells
            self.withheld = withheld
            self.other = other
            self.total = total
        }
    }

    /// Cells below k are withheld and pooled in `other`. If the pool is then non-empty but
    /// below k, it alone would reveal them (total - released cells), so the smallest
    /// released cells join it until it reaches k. If even all of `total` is below k,
    /// nothing is released. `total` may exceed the sum of the cells (events no cell counts).
    public static func partition(_ cells: [Int], total: Int, k: Int) -> Partition {
        guard k > 1 else { return Partition(cells: cells, withheld: [], other: max(0, total - cells.reduce(0, +)), total: total) }
        var released = cells
        var withheld = Set<Int>()
        for index in cells.indices where cells[index] < k {
            withheld.insert(index)
            released[index] = 0
        }
        var other = total - released.reduce(0, +)
        while other > 0 && other < k {
            guard let smallest = released.indices.filter({ !withheld.contains($0) && released[$0] > 0 })
                .min(by: { (released[$0], $0) < (released[$1], $1) }) else { break }
            other += released[smallest]
            released[smallest] = 0
            withheld.insert(smallest)
        }
        if other > 0 && other < k {
            // Fewer than k events in all: not even the total is released.
            return Partition(cells: [Int](repeating: 0, count: cells.count), withheld: Array(cells.indices), other: 0, total: 0)
        }
        return Partition(cells: released, withheld: withheld.sorted(), other: other, total: released.reduce(0, +) + other)
    }

    /// A histogram over the same events as a released total: buckets below k merge upward
    /// with their neighbours until each group holds at least k, and the group's count is
    /// shown at its highest non-empty bucket (so latency percentiles stay upper bounds).
    /// The sum is unchanged, so it equals the released total and reveals nothing more; a
    /// histogram of fewer than k events in all is withheld (all zeros).
    public static func coarsen(_ buckets: [Int], k: Int) -> [Int] {
        guard k > 1 else { return buckets }
        var out = [Int](repeating: 0, count: buckets.count)
        guard buckets.reduce(0, +) >= k else { return out }
        var run = 0
        var lastNonEmpty: Int?
        var lastEmitted: Int?
        for (index, count) in buckets.enumerated() {
            run += count
            if count > 0 { lastNonEmpty = index }
            if run >= k, let at = lastNonEmpty {
                out[at] = run
                lastEmitted = at
                run = 0
            }
        }
        if run > 0, let previous = lastEmitted, let at = lastNonEmpty {
            // A tail below k joins the group before it, shown at the tail's highest bucket.
            out[at] = out[previous] + run
            if at != previous { out[previous] = 0 }
        }
        return out
    }
}

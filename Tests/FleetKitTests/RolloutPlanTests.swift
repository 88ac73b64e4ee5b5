import FleetKit
import Foundation
import Testing

/// The canary rule of docs/ROLLOUTS.md pinned by vectors computed outside the code under
/// test (Python: `int.from_bytes(hashlib.sha256(id.encode()).digest()[:8], "big") >> 11`,
/// divided by 2^53), so a change of hash, byte order or byte count fails here.
@Suite("Rollout plan")
struct RolloutPlanTests {
    /// (device id, first 8 bytes of SHA-256 in hex, those bytes as a big-endian integer
    /// shifted right by 11, stage at 5%,25%,100%)
    static let vectors: [(id: String, prefix: String, numerator: UInt64, stage: Int)] = [
        ("dev_0044", "0163cb416d15f397", 48_899_950_486_206, 0),        // 0.00543
        ("dev_0003", "06c25091e803441a", 237_812_645_167_208, 0),       // 0.02640
        ("dev_0004", "16ac184f8e5c86cc", 797_708_737_694_608, 1),       // 0.08856
        ("dev_0008", "1bec0141d02a6229", 982_414_314_308_940, 1),       // 0.10907
        ("dev_canary", "6cb8845ad4c14fc4", 3_825_272_010_479_657, 2),   // 0.42469
        ("r1", "82f3e9c695dc6b8d", 4_607_491_544_628_109, 2),           // 0.51153
        ("pi-kitchen", "bc1115cefeb04d67", 6_617_010_123_298_313, 2),   // 0.73464
        ("", "e3b0c44298fc1c14", 8_011_147_086_339_971, 2),             // 0.88942
    ]

    @Test("a device's position is the first 8 bytes of SHA-256(device id), as a fraction of 2^64")
    func positions() {
        for vector in Self.vectors {
            #expect(UInt64(vector.prefix, radix: 16)! >> 11 == vector.numerator, "the vector itself: \(vector.id)")
            #expect(RolloutPlan.position(of: vector.id) == Double(vector.numerator) / 9_007_199_254_740_992, "position of '\(vector.id)'")
        }
    }

    @Test("a device is in the first stage whose percentage exceeds its position")
    func stages() {
        for vector in Self.vectors {
            #expect(RolloutPlan.stage(of: vector.id, stages: [5, 25, 100]) == vector.stage, "'\(vector.id)'")
        }
        // Boundaries: 0.02640 is in a 2.65% stage and not in a 2.64% one.
        #expect(RolloutPlan.stage(of: "dev_0003", stages: [2.65, 100]) == 0)
        #expect(RolloutPlan.stage(of: "dev_0003", stages: [2.64, 100]) == 1)
    }
}

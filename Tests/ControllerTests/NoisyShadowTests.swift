import FleetKit
import Foundation
import Testing
@testable import FleetController

/// The controller's side of noised shadow reports (docs/PRIVACY.md, "Shadow evaluation"):
/// noisy counts are accepted within bounds, and the gate's agreement stays a share.
@Suite("Noisy shadow reports")
struct NoisyShadowTests {
    @Test("agreement from noisy counts is clamped to 0...1 and absent until samples are positive")
    func agreement() {
        #expect(RolloutService.agreement(agreements: 20, samples: 40) == 0.5)
        #expect(RolloutService.agreement(agreements: 45, samples: 40) == 1, "noise made agreements exceed samples")
        #expect(RolloutService.agreement(agreements: -3, samples: 40) == 0)
        #expect(RolloutService.agreement(agreements: 5, samples: -2) == nil)
        #expect(RolloutService.agreement(agreements: 0, samples: 0) == nil)
    }

    @Test("a noised report may have negative cells and agreements above samples; an exact one may not")
    func wellFormed() {
        var report = ShadowReport(sequence: 1, classes: 2)
        report.samples = 3
        report.agreements = 7
        report.confusion = [-4, 2, 9, 0]
        #expect(!report.isWellFormed, "exact counts must be consistent")
        report.privacy = "laplace epsilon=1.0"
        #expect(report.isWellFormed)
        report.samples = 1 << 41
        #expect(!report.isWellFormed, "noisy counts stay within the bound")
    }
}

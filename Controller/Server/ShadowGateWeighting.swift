import FleetKit
import Foundation

/// How devices' shadow reports add up to a stage's verdict. A plain sum let one device
/// with a stolen credential decide a stage: report a million agreeing samples and the
/// stage's agreement is that device's. So each device counts for at most `cap` samples,
/// with its agreements scaled down in proportion, and the cap is set so that a gate needs
/// at least min(devices in the stage, `spreadDevices`) devices to reach its sample count:
/// one device moves a stage's agreement by at most 1/min(devices, 10) of its weight.
enum ShadowGateWeighting {
    static let spreadDevices = 10

    /// Samples one device counts for when `devices` devices take part and the gate wants
    /// `minSamples`.
    static func cap(minSamples: Int, devices: Int) -> Int {
        let spread = max(1, min(devices, spreadDevices))
        return max(1, (minSamples + spread - 1) / spread)
    }

    static func summary(of reports: [ShadowReport], cap: Int?) -> ShadowSummary {
        var samples = 0, agreements = 0, capped = 0
        var raw: ShadowReport?
        for report in reports {
            if raw == nil { raw = ShadowReport(sequence: report.sequence, classes: report.classes) }
            raw!.merge(report)
            // Noised counts can be negative, or agreements above samples: clamp first.
            let deviceSamples = max(report.samples, 0)
            let deviceAgreements = min(max(report.agreements, 0), deviceSamples)
            guard let cap, deviceSamples > cap else {
                samples.saturatingAdd(deviceSamples)
                agreements.saturatingAdd(deviceAgreements)
                continue
            }
            capped += 1
            samples.saturatingAdd(cap)
            agreements.saturatingAdd(Int((Double(deviceAgreements) / Double(deviceSamples) * Double(cap)).rounded()))
        }
        let total = raw ?? ShadowReport(sequence: 0, classes: 0)
        let rawSamples = Double(max(total.samples, 1))
        return ShadowSummary(samples: samples, agreements: agreements,
                             agreement: samples > 0 ? Double(agreements) / Double(samples) : nil,
                             meanConfidenceDelta: total.samples > 0 ? total.confidenceDeltaSum / rawSamples : nil,
                             meanLatencyDeltaMs: total.samples > 0 ? total.latencyDeltaSumMs / rawSamples : nil,
                             classes: total.classes, confusion: total.confusion, perDeviceCap: cap, cappedDevices: cap == nil ? nil : capped)
    }
}

import Foundation
import Testing
@testable import FleetController

/// The dashboard's SVG charts: every window visible, a labelled time axis, values on hover.
@Suite("Dashboard charts")
struct DashboardChartTests {
    @Test("a series with a single window is drawn as a dot in the middle, with its time and value on hover")
    func singleWindow() {
        let at = Date(timeIntervalSince1970: 1_780_000_000)  // 2026-05-28 20:26:40 UTC
        let svg = HTML.lineChart([("fashion v1", [(at, 37)])], unit: "inferences", width: 760)
        #expect(svg.contains("<circle cx=\"395.0\""), "centred between x = 50 and 740: \(svg)")
        #expect(svg.contains("<title>fashion v1 at 20:26 UTC: 37 inferences</title>"))
        #expect(svg.contains("<text class=tick") && svg.contains(">20:26</text>"), "a time label under the dot")
        #expect(!svg.contains("<polyline"), "one point is no line")
    }

    @Test("several windows: a line through dots, time labels at both ends and the middle, dates once the range spans days")
    func range() {
        let start = Date(timeIntervalSince1970: 1_780_000_000)
        let points = (0..<4).map { (start.addingTimeInterval(Double($0) * 3600), Double($0 * 10)) }
        let svg = HTML.lineChart([("p50", points)], unit: "ms")
        #expect(svg.contains("<polyline") && svg.components(separatedBy: "<circle").count - 1 == 4)
        #expect(svg.components(separatedBy: "<text class=tick").count - 1 == 3)
        #expect(svg.contains(">20:26</text>") && svg.contains(">23:26</text>"))
        let week = HTML.lineChart([("p50", [(start, 1), (start.addingTimeInterval(7 * 86_400), 2)])], unit: "ms")
        #expect(week.contains(">05-28 20:26</text>") && week.contains(">06-04 20:26</text>"))
        #expect(HTML.lineChart([], unit: "ms").contains("no data"))
    }
}

import Foundation

/// Small helpers for the server-rendered dashboard: escaping, the page frame and inline
/// SVG charts. No external asset: the dashboard works on a network without internet.
enum HTML {
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    static let style = """
    body{font-family:system-ui,-apple-system,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
    header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:18px;align-items:center}
    header a{color:#cfd6e4;text-decoration:none}header a:hover{color:#fff}header b{color:#fff;margin-right:12px}
    main{padding:18px 20px;max-width:1200px}h1{font-size:22px;margin:4px 0 14px}h2{font-size:17px;margin:18px 0 8px}
    .cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px 16px;min-width:140px}
    .card .n{font-size:28px;font-weight:600}.muted{color:#6b7385;font-size:13px}
    table{border-collapse:collapse;background:#fff;width:100%;font-size:14px}th,td{border-bottom:1px solid #e5e8ee;padding:6px 8px;text-align:left}
    th{background:#eef0f4}.ok{color:#167a3d}.warn{color:#a15c00}.bad{color:#b3261e}
    .bar{display:flex;height:14px;width:260px;background:#e5e8ee;border-radius:3px;overflow:hidden}
    .bar span{display:block;height:100%}.active{background:#2e9d5b}.failed{background:#d04437}.progress{background:#f0b400}
    form.inline{display:inline}button{padding:4px 10px;margin-right:6px}input,select{padding:4px}
    """

    /// A complete page; `fragment` requests get only the contents of <main>, which the
    /// page's script fetches every 5 seconds to stay live without reloading.
    static func page(title: String, body: String, fragment: Bool, csrf: String?) -> String {
        if fragment { return body }
        let logout = csrf.map { "<form class=inline method=post action=\"/logout\"><input type=hidden name=csrf value=\"\(escape($0))\"><button>Sign out</button></form>" } ?? ""
        return """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><title>\(escape(title)) - BitFleet</title>
        <meta name="viewport" content="width=device-width,initial-scale=1"><style>\(style)</style></head><body>
        <header><b>BitFleet</b><a href="/">Overview</a><a href="/devices">Devices</a><a href="/models">Models</a>
        <a href="/rollouts">Rollouts</a><a href="/charts">Metrics</a><a href="/audit">Audit</a><span style="flex:1"></span>\(logout)</header>
        <main id="main">\(body)</main>
        <script>
        setInterval(function(){var u=new URL(location.href);u.searchParams.set('fragment','1');
        fetch(u,{credentials:'same-origin'}).then(function(r){return r.ok?r.text():null}).then(function(h){if(h!==null){document.getElementById('main').innerHTML=h}}).catch(function(){})},5000);
        </script></body></html>
        """
    }

    static func table(_ header: [String], _ rows: [[String]]) -> String {
        "<table><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>"
            + rows.map { "<tr>" + $0.map { "<td>\($0)</td>" }.joined() + "</tr>" }.joined() + "</table>"
    }

    /// A stacked progress bar: active (green), failed (red), in progress (amber) of total.
    static func progress(active: Int, failed: Int, inProgress: Int, total: Int) -> String {
        guard total > 0 else { return "<div class=bar></div>" }
        func width(_ n: Int) -> String { String(format: "%.1f%%", Double(n) * 100 / Double(total)) }
        return "<div class=bar title=\"\(active) active, \(failed) failed, \(inProgress) in progress of \(total)\">"
            + "<span class=active style=\"width:\(width(active))\"></span><span class=failed style=\"width:\(width(failed))\"></span>"
            + "<span class=progress style=\"width:\(width(inProgress))\"></span></div>"
    }

    /// Horizontal bar chart as inline SVG.
    static func barChart(_ items: [(label: String, value: Double)], width: Int = 520) -> String {
        guard !items.isEmpty else { return "<p class=muted>no data</p>" }
        let largest = max(items.map(\.value).max() ?? 1, 1)
        let rowHeight = 22
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(items.count * rowHeight + 4)\" role=img>"
        for (index, item) in items.enumerated() {
            let y = index * rowHeight + 2
            let barWidth = Int(Double(width - 230) * item.value / largest)
            svg += "<text x=\"0\" y=\"\(y + 15)\" font-size=\"12\">\(escape(String(item.label.prefix(26))))</text>"
            svg += "<rect x=\"170\" y=\"\(y + 3)\" width=\"\(max(barWidth, 1))\" height=\"15\" fill=\"#3b6fd8\"></rect>"
            svg += "<text x=\"\(176 + barWidth)\" y=\"\(y + 15)\" font-size=\"12\">\(formatNumber(item.value))</text>"
        }
        return svg + "</svg>"
    }

    /// Line chart of several series over time as inline SVG: a time axis with labels (UTC),
    /// every point also drawn as a dot whose tooltip gives its time and value, so a series
    /// with a single window (all data in one bucket) still shows, as a dot in the middle.
    static func lineChart(_ series: [(name: String, points: [(Date, Double)])], unit: String, width: Int = 760, height: Int = 240) -> String {
        let all = series.flatMap(\.points)
        guard let first = all.map(\.0).min(), let last = all.map(\.0).max() else { return "<p class=muted>no data</p>" }
        let top = max(all.map(\.1).max() ?? 1, 0.001)
        let span = last.timeIntervalSince(first)
        let colors = ["#3b6fd8", "#d04437", "#2e9d5b", "#a15c00", "#7b3fd8", "#1a8fa0"]
        let left = 50, right = width - 20, bottom = height - 40
        func x(_ date: Date) -> Double {
            span > 0 ? Double(left) + Double(right - left) * date.timeIntervalSince(first) / span : Double(left + right) / 2
        }
        func y(_ value: Double) -> Double { Double(bottom) - Double(bottom - 10) * value / top }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" role=img>"
        svg += "<line x1=\"\(left)\" y1=\"10\" x2=\"\(left)\" y2=\"\(bottom)\" stroke=\"#999\"/><line x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(right)\" y2=\"\(bottom)\" stroke=\"#999\"/>"
        svg += "<text x=\"2\" y=\"16\" font-size=\"11\">\(formatNumber(top)) \(escape(unit))</text><text x=\"2\" y=\"\(bottom)\" font-size=\"11\">0</text>"
        // Time axis: the first and last bucket, and the middle when there is a range.
        let ticks = span > 0 ? [first, first.addingTimeInterval(span / 2), last] : [first]
        for tick in ticks {
            let tx = x(tick)
            svg += "<line x1=\"\(String(format: "%.1f", tx))\" y1=\"\(bottom)\" x2=\"\(String(format: "%.1f", tx))\" y2=\"\(bottom + 4)\" stroke=\"#999\"/>"
            svg += "<text class=tick x=\"\(String(format: "%.1f", tx))\" y=\"\(bottom + 16)\" font-size=\"11\" text-anchor=\"middle\">\(timeLabel(tick, span: span))</text>"
        }
        for (index, line) in series.enumerated() {
            let color = colors[index % colors.count]
            let points = line.points.sorted { $0.0 < $1.0 }
            if points.count > 1 {
                let coordinates = points.map { String(format: "%.1f,%.1f", x($0.0), y($0.1)) }
                svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(coordinates.joined(separator: " "))\"/>"
            }
            for point in points {
                svg += "<circle cx=\"\(String(format: "%.1f", x(point.0)))\" cy=\"\(String(format: "%.1f", y(point.1)))\" r=\"3.5\" fill=\"\(color)\">"
                    + "<title>\(escape(line.name)) at \(timeLabel(point.0, span: span)) UTC: \(formatNumber(point.1)) \(escape(unit))</title></circle>"
            }
            svg += "<text x=\"\(left + 10 + index * 150)\" y=\"\(height - 6)\" font-size=\"11\" fill=\"\(color)\">\(escape(line.name))</text>"
        }
        return svg + "</svg>"
    }

    /// "14:05" within a day, "12-02 14:05" across days (UTC, so every operator reads the same).
    static func timeLabel(_ date: Date, span: TimeInterval) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.month, .day, .hour, .minute], from: date)
        let time = String(format: "%02d:%02d", c.hour ?? 0, c.minute ?? 0)
        return span >= 86_400 ? String(format: "%02d-%02d ", c.month ?? 0, c.day ?? 0) + time : time
    }

    static func formatNumber(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(format: "%.2f", value)
    }

    static func ago(_ date: Date?, now: Date) -> String {
        guard let date else { return "never" }
        let seconds = Int(now.timeIntervalSince(date))
        switch seconds {
        case ..<60: return "\(max(seconds, 0))s ago"
        case ..<3600: return "\(seconds / 60)m ago"
        case ..<86400: return "\(seconds / 3600)h ago"
        default: return "\(seconds / 86400)d ago"
        }
    }
}

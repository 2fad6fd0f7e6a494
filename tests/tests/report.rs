//! `report.html`: written by every run, self-contained, and drawn: rendered
//! headless by Debian's `chromium` (installed by
//! `scripts/install-test-deps.sh`), its DOM holds each chart with real path
//! data and its screenshot is not a blank page; driven through the
//! DevTools protocol (`chorus_tests::cdp`), its charts name the values
//! under the mouse and zoom on a dragged time range, with no error in the
//! console.

use std::path::Path;
use std::process::Command;

use chorus_tests::{cdp, controller, run_quickstart};

/// Charts every stage section has (ids end in `-<stage position>`).
const CHARTS: [&str; 5] = [
    "throughput-ops",
    "throughput-mib",
    "latency-time",
    "agents",
    "latency-dist",
];

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let mut all = vec!["120", cdp::chromium_bin()];
    all.extend_from_slice(&cdp::HEADLESS);
    all.push(&profile_arg);
    all.extend_from_slice(args);
    Command::new("timeout")
        .args(&all)
        .output()
        .expect("run chromium")
}

/// The `d` attributes of `<path class="series" …>` elements inside the svg
/// with `id` in `dom`.
fn series_paths(dom: &str, id: &str) -> Vec<String> {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("chart {id} not in the rendered DOM"));
    let end = start + dom[start..].find("</svg>").expect("closed svg");
    let svg = &dom[start..end];
    svg.match_indices("<path class=\"series\"")
        .map(|(i, _)| {
            let tag = &svg[i..i + svg[i..].find('>').unwrap()];
            let d = tag.find(" d=\"").expect("path has d") + 4;
            tag[d..d + tag[d..].find('"').unwrap()].to_string()
        })
        .collect()
}

#[test]
fn run_writes_a_self_contained_report_that_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("runs");
    let target = format!("file://{}", tmp.path().join("data").display());
    let run = run_quickstart(&target, &results, &[]);
    let report = run.join("report.html");
    let html = std::fs::read_to_string(&report).expect("report.html written by the run");

    // Self-contained: no external resources; the only scripts are inline,
    // the charts' data and the one script that reads it.
    for bad in ["<link", " src=", "url(", "@import"] {
        assert!(!html.contains(bad), "report.html contains {bad}");
    }
    let data = html
        .matches("<script type=\"application/json\" class=\"chart-data\"")
        .count();
    assert!(data > 0, "no chart data");
    assert_eq!(html.matches("<script").count(), data + 1, "scripts");
    assert_eq!(html.matches("<script>").count(), 1, "chart.js inline");
    let without_ns = html.replace("http://www.w3.org/2000/svg", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"));

    // It leads with an overview: one row per stage, before the first
    // stage's section, each linking to its section.
    let overview = html.find("id=\"overview\"").expect("an overview table");
    assert!(overview < html.find("id=\"stage-0\"").expect("stage sections"));
    for stage in 0..3 {
        assert!(
            html.contains(&format!("<a href=\"#stage-{stage}\">")),
            "row {stage}"
        );
        assert!(
            html.contains(&format!("id=\"stage-{stage}\"")),
            "section {stage}"
        );
    }

    // `analyze --html` writes the same kind of page.
    let other = tmp.path().join("again.html");
    let out = controller(&[
        "analyze",
        run.to_str().unwrap(),
        "--html",
        other.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(&other)
            .unwrap()
            .contains("id=\"latency-dist-1\"")
    );

    // Rendered: three stages (prepare, mixed, cleanup), every chart drawn.
    let profile = tmp.path().join("chromium");
    let url = format!("file://{}", report.display());
    let dom = chromium(&["--dump-dom", &url], &profile);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success() && dom_text.contains("</svg>"),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    for stage in 0..3 {
        for chart in CHARTS {
            let id = format!("{chart}-{stage}");
            if chart == "agents" {
                let start = dom_text.find(&format!("id=\"{id}\"")).expect(&id);
                let svg = &dom_text[start..start + dom_text[start..].find("</svg>").unwrap()];
                assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2, "{id}");
                continue;
            }
            let paths = series_paths(&dom_text, &id);
            assert!(!paths.is_empty(), "{id}: no series");
            for d in &paths {
                assert!(d.starts_with('M') && d.len() > 4, "{id}: empty path {d:?}");
            }
        }
    }
    // Each stage's per-agent heatmap: a row per agent (two), a cell per
    // segment, each with its value on hover.
    for stage in 0..3 {
        let id = format!("id=\"agents-time-{stage}\"");
        let start = dom_text.find(&id).unwrap_or_else(|| panic!("no {id}"));
        let svg = &dom_text[start..start + dom_text[start..].find("</svg>").unwrap()];
        let cells = svg.matches("<rect class=\"cell\"").count();
        assert!(cells >= 2 && cells.is_multiple_of(2), "{id}: {cells} cells");
        assert!(svg.contains("ops/s</title>"), "{id}: no values on hover");
    }
    // The mixed stage has four ops, so several lines per chart.
    assert!(series_paths(&dom_text, "throughput-ops-1").len() >= 4);

    // A screenshot of the report is far from blank: a uniform image of the
    // same size compresses to almost nothing.
    let shot = tmp.path().join("report.png");
    let blank_html = tmp.path().join("blank.html");
    std::fs::write(&blank_html, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank = tmp.path().join("blank.png");
    for (png, page) in [(&shot, report.as_path()), (&blank, blank_html.as_path())] {
        let arg = format!("--screenshot={}", png.display());
        let o = chromium(
            &[
                &arg,
                "--window-size=1000,1400",
                &format!("file://{}", page.display()),
            ],
            &profile,
        );
        assert!(
            png.is_file(),
            "no screenshot: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (report_len, blank_len) = (
        std::fs::metadata(&shot).unwrap().len(),
        std::fs::metadata(&blank).unwrap().len(),
    );
    assert!(
        report_len > 10 * blank_len && report_len > 20_000,
        "screenshot looks blank: {report_len} bytes vs blank {blank_len}"
    );
}

/// A line chart as its data in the file says it was drawn: the plot box
/// `[left, right, top, bottom]` in SVG units, the x domain, and each
/// series' name and points.
struct ChartData {
    plot: [f64; 4],
    x: (f64, f64),
    series: Vec<(String, Vec<(f64, f64)>)>,
}

impl ChartData {
    /// Chart `id`'s data, read from the report's text (not the page).
    fn read(html: &str, id: &str) -> ChartData {
        let tag = format!(r#"<script type="application/json" class="chart-data" data-for="{id}">"#);
        let start = html
            .find(&tag)
            .unwrap_or_else(|| panic!("no data for {id}"))
            + tag.len();
        let end = start + html[start..].find("</script>").unwrap();
        let v: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
        let f = |v: &serde_json::Value| v.as_f64().unwrap();
        let pair = |v: &serde_json::Value| (f(&v[0]), f(&v[1]));
        ChartData {
            plot: [0, 1, 2, 3].map(|k| f(&v["plot"][k])),
            x: pair(&v["x"]),
            series: v["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let points = s["points"].as_array().unwrap().iter().map(pair).collect();
                    (s["name"].as_str().unwrap().to_string(), points)
                })
                .collect(),
        }
    }

    /// The SVG x of data value `x` over the whole domain.
    fn svg_x(&self, x: f64) -> f64 {
        let [left, right, ..] = self.plot;
        left + (x - self.x.0) / (self.x.1 - self.x.0) * (right - left)
    }

    /// The data value at fraction `t` of the plot's width.
    fn at_fraction(&self, t: f64) -> f64 {
        self.x.0 + t * (self.x.1 - self.x.0)
    }
}

/// Where a chart is on screen once scrolled to the viewport's middle: a
/// map from its SVG units to CSS pixels of the viewport.
struct OnScreen {
    left: f64,
    top: f64,
    scale: f64,
}

impl OnScreen {
    fn find(page: &mut cdp::Page, id: &str) -> OnScreen {
        let r = page.eval(&format!(
            "(() => {{ const s = document.getElementById('{id}'); s.scrollIntoView({{block: 'center'}}); \
             const r = s.getBoundingClientRect(); return [r.left, r.top, r.width / s.viewBox.baseVal.width]; }})()"
        ));
        let v = |k: usize| r[k].as_f64().unwrap();
        OnScreen {
            left: v(0),
            top: v(1),
            scale: v(2),
        }
    }

    fn at(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (self.left + x * self.scale, self.top + y * self.scale)
    }
}

/// The text of chart `id`'s x-axis tick labels, left to right.
fn ticks(page: &mut cdp::Page, id: &str) -> Vec<String> {
    let v = page.eval(&format!(
        "[...document.querySelectorAll('#{id} g.xticks text')].map(t => t.textContent)"
    ));
    serde_json::from_value(v).unwrap()
}

/// The `d` of chart `id`'s series paths, in order.
fn paths(page: &mut cdp::Page, id: &str) -> Vec<String> {
    let v = page.eval(&format!(
        "[...document.querySelectorAll('#{id} path.series')].map(p => p.getAttribute('d'))"
    ));
    serde_json::from_value(v).unwrap()
}

/// The x of every vertex of a path written as `M x y L x y …`.
fn vertex_xs(d: &str) -> Vec<f64> {
    d.trim_end_matches("h2")
        .split(['M', 'L'])
        .filter(|s| !s.is_empty())
        .map(|s| s.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// The tooltip as shown: whether it is visible inside the viewport, its
/// x text and its (series, value) rows.
fn tooltip(page: &mut cdp::Page) -> (bool, String, Vec<(String, String)>) {
    let v = page.eval(
        "(() => { const t = document.querySelector('.chart-tip'); if (!t) return null; \
         const r = t.getBoundingClientRect(); \
         const shown = getComputedStyle(t).display !== 'none' && r.width > 0 && r.height > 0 \
           && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight; \
         const x = t.querySelector('.tip-x'); \
         return [shown, x ? x.textContent : '', \
           [...t.querySelectorAll('tr')].map(tr => [tr.cells[0].textContent.trim(), tr.cells[1].textContent])]; })()",
    );
    assert!(!v.is_null(), "no tooltip element: chart.js did not run");
    serde_json::from_value(v).unwrap()
}

/// Equal to the 4 significant digits a tooltip shows.
fn close(shown: &str, want: f64) -> bool {
    let got: f64 = shown.trim().trim_end_matches(" s").parse().unwrap();
    (got - want).abs() <= 1e-3 * want.abs() + 1e-9
}

/// The time charts of stage 1 (mixed), which zoom together.
const TIME_CHARTS: [&str; 4] = [
    "throughput-ops-1",
    "throughput-mib-1",
    "latency-time-1",
    "client-cpu-1",
];

#[test]
fn charts_show_values_on_hover_and_zoom_on_a_dragged_time_range() {
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("file://{}", tmp.path().join("data").display());
    let run = run_quickstart(&target, &tmp.path().join("runs"), &[]);
    let report = run.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    let id = TIME_CHARTS[0];
    let data = ChartData::read(&html, id);
    let [left, right, top, bottom] = data.plot;
    let mid_y = (top + bottom) / 2.0;

    let mut page = cdp::Page::open(&tmp.path().join("chromium"), 1200, 900);
    page.navigate(&format!("file://{}", report.display()));
    let screen = OnScreen::find(&mut page, id);

    // Hover: the mouse over a segment's point names every op's value there.
    let (_, points) = &data.series[0];
    let k = points.len() / 3;
    let x = points[k].0;
    page.mouse("mouseMoved", screen.at((data.svg_x(x), mid_y)), false, 0);
    let (shown, x_text, rows) = tooltip(&mut page);
    assert!(shown, "no tooltip on hover");
    assert!(
        close(&x_text, x),
        "tooltip at {x_text}, the point is at {x} s"
    );
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let want: Vec<&str> = data.series.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, want, "a row per series");
    for ((name, value), (_, points)) in rows.iter().zip(&data.series) {
        assert!(
            close(value, points[k].1),
            "{name}: {value}, want {}",
            points[k].1
        );
    }
    // Leaving the plot hides it.
    page.mouse("mouseMoved", (2.0, 2.0), false, 0);
    assert!(!tooltip(&mut page).0, "tooltip stays after the mouse left");

    // Zoom: a drag over 25 % to 55 % of the plot shows that time range in
    // the chart and its siblings (ticks inside it, lines redrawn edge to
    // edge with fewer vertices); stage 0's charts stay whole.
    let before: Vec<Vec<String>> = TIME_CHARTS.iter().map(|c| ticks(&mut page, c)).collect();
    let other = ticks(&mut page, "throughput-ops-0");
    let paths_before = paths(&mut page, id);
    let (from, to) = (data.at_fraction(0.25), data.at_fraction(0.55));
    let y = screen.at((0.0, mid_y)).1;
    page.drag(
        (screen.at((data.svg_x(from), mid_y)).0, y),
        (screen.at((data.svg_x(to), mid_y)).0, y),
    );
    for (chart, before) in TIME_CHARTS.iter().zip(&before) {
        let after = ticks(&mut page, chart);
        assert_ne!(&after, before, "{chart} not zoomed");
        assert!(after.len() >= 2, "{chart}: ticks {after:?}");
        for t in &after {
            let v: f64 = t.parse().unwrap();
            assert!(
                v >= from - 1e-6 && v <= to + 1e-6,
                "{chart}: tick {v} outside the zoomed {from}..{to} s"
            );
        }
    }
    assert_eq!(
        ticks(&mut page, "throughput-ops-0"),
        other,
        "stage 0 zoomed too"
    );
    for (d, was) in paths(&mut page, id).iter().zip(&paths_before) {
        let xs = vertex_xs(d);
        assert!(
            (xs[0] - left).abs() < 0.11 && (xs[xs.len() - 1] - right).abs() < 0.11,
            "a zoomed line runs from edge to edge: {d}"
        );
        assert!(xs.len() < vertex_xs(was).len(), "no fewer points: {d}");
    }
    // Hover still names the zoomed chart's points.
    page.mouse(
        "mouseMoved",
        screen.at(((left + right) / 2.0, mid_y)),
        false,
        0,
    );
    let (shown, x_text, _) = tooltip(&mut page);
    let shown_x: f64 = x_text.trim_end_matches(" s").parse().unwrap();
    assert!(
        shown && shown_x > from && shown_x < to,
        "zoomed hover at {x_text}"
    );

    // A picture of it, for people too: zoomed, tooltip shown.
    let shot = tmp.path().join("report-zoomed.png");
    let bytes = page.screenshot(&shot);
    assert!(bytes > 20_000, "screenshot looks blank: {bytes} bytes");
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-hover-zoom.png");
    std::fs::copy(&shot, &keep).unwrap();

    // "reset zoom" puts back the chart as written, in every sibling.
    let reset = page.eval(&format!(
        "(() => {{ const r = document.querySelector('#{id} g.reset').getBoundingClientRect(); \
         return [r.left + r.width / 2, r.top + r.height / 2, r.width]; }})()"
    ));
    assert!(reset[2].as_f64().unwrap() > 0.0, "no reset button shown");
    page.click((reset[0].as_f64().unwrap(), reset[1].as_f64().unwrap()), 1);
    for (chart, before) in TIME_CHARTS.iter().zip(&before) {
        assert_eq!(&ticks(&mut page, chart), before, "{chart} not reset");
    }
    assert_eq!(paths(&mut page, id), paths_before, "paths not as written");
    // So does a double-click, after another zoom.
    page.drag(
        screen.at((left + 10.0, mid_y)),
        screen.at((right - 10.0, mid_y)),
    );
    assert_ne!(ticks(&mut page, id), before[0], "second zoom");
    page.click(screen.at(((left + right) / 2.0, mid_y)), 2);
    assert_eq!(
        ticks(&mut page, id),
        before[0],
        "double-click did not reset"
    );

    // The percentile curve names percentiles.
    let dist = ChartData::read(&html, "latency-dist-1");
    let screen = OnScreen::find(&mut page, "latency-dist-1");
    page.mouse("mouseMoved", screen.at((dist.svg_x(2.0), mid_y)), false, 0);
    let (shown, x_text, _) = tooltip(&mut page);
    assert!(
        shown && x_text.starts_with('p'),
        "percentile hover: {x_text}"
    );

    let errors = page.errors();
    assert!(errors.is_empty(), "the page reported errors: {errors:#?}");
    // And an error would have been seen: one thrown now is.
    let from = page.events.len();
    page.eval("setTimeout(() => { throw new Error('chorus-probe'); }, 0)");
    page.wait_event("Runtime.exceptionThrown", from);
    assert!(page.errors().iter().any(|e| e.contains("chorus-probe")));
}

//! `report.html`: written by every run, self-contained, and drawn: rendered
//! headless by Debian's `chromium` (installed by
//! `scripts/install-test-deps.sh`), its DOM holds each chart with real path
//! data and its screenshot is not a blank page.

use std::path::Path;
use std::process::Command;

use chorus_tests::{controller, run_quickstart};

/// Charts every stage section has (ids end in `-<stage position>`).
const CHARTS: [&str; 5] = [
    "throughput-ops",
    "throughput-mib",
    "latency-time",
    "agents",
    "latency-dist",
];

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is missing: run scripts/install-test-deps.sh (apt-get install chromium)");
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let mut all = vec![
        "120",
        bin,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        &profile_arg,
    ];
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

//! The data behind a line chart, for `chart.js`: a
//! `<script type="application/json" class="chart-data" data-for="ID">`
//! after the chart's `<svg>`, holding what the script needs to map values
//! to the SVG's coordinates as [`super::svg`] did (plot box, x and y
//! domains, log y) and each series' points, so it can name the values
//! under the mouse and redraw paths and ticks for a zoomed x range.
//!
//! Bounded: values keep 6 significant digits, and a chart of more than
//! [`MAX_POINTS`] points gets no data (it stays a static picture, which
//! its SVG already is), so a run of many agents cannot make the page
//! megabytes of JSON.

use serde_json::{Value, json};

use super::svg::{Axis, Series, color};

/// Most points a chart's data may hold (about 15 bytes each). A stage's
/// time charts have at most a few hundred segments per op; only charts of
/// one line per agent (client CPU) of many agents pass this.
pub const MAX_POINTS: usize = 50_000;

/// Where [`super::svg`] drew a chart: the plot box
/// `[left, right, top, bottom]` in SVG units, and the domains of its axes.
pub struct Frame {
    pub plot: [f64; 4],
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub y_log: bool,
}

/// Writes the data of chart `id` into `out`: each series with the points
/// it was drawn from (already filtered of those it could not draw).
pub fn write(
    out: &mut String,
    id: &str,
    x: &Axis,
    y: &Axis,
    frame: &Frame,
    series: &[(&Series, Vec<(f64, f64)>)],
) {
    let points: usize = series.iter().map(|s| s.1.len()).sum();
    if points == 0 || points > MAX_POINTS {
        return;
    }
    let series: Vec<Value> = series
        .iter()
        .map(|(s, points)| {
            json!({
                "name": s.name,
                "color": color(s.color),
                "dashed": s.dashed,
                "points": points.iter().map(|p| [round(p.0), round(p.1)]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let data = json!({
        "id": id,
        "hover": x.hover.name(),
        "zoom": x.zoom,
        "ylabel": y.label,
        "plot": frame.plot,
        "x": [frame.x.0, frame.x.1],
        "y": [frame.y.0, frame.y.1],
        "ylog": frame.y_log,
        "series": series,
    });
    // `<` only occurs inside JSON strings, where `\u003c` is the same
    // character: no name can close the script element early.
    let text = data.to_string().replace('<', "\\u003c");
    out.push_str(r#"<script type="application/json" class="chart-data" data-for=""#);
    out.push_str(&super::svg::escape(id));
    out.push_str("\">");
    out.push_str(&text);
    out.push_str("</script>");
}

/// `v` to 6 significant digits, which prints short in JSON (`1234.57`,
/// not `1234.5678901234`) and is finer than a pixel or a tooltip's digits.
fn round(v: f64) -> f64 {
    format!("{v:.5e}").parse().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            plot: [72.0, 650.0, 28.0, 258.0],
            x: (0.0, 10.0),
            y: (0.0, 100.0),
            y_log: false,
        }
    }

    #[test]
    fn data_is_json_that_cannot_close_its_script() {
        let s = Series {
            name: "GET </script><b>".into(),
            points: vec![],
            dashed: true,
            color: 1,
        };
        let mut out = String::new();
        let pts = vec![(0.5, 1234.5678901234), (1.5, 2.0)];
        write(
            &mut out,
            "c-1",
            &Axis::time("time-1".into()),
            &Axis::linear("ops/s"),
            &frame(),
            &[(&s, pts)],
        );
        let start = out.find('>').unwrap() + 1;
        let body = &out[start..out.len() - "</script>".len()];
        assert!(!body.contains('<'), "{body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["zoom"], "time-1");
        assert_eq!(v["hover"], "seconds");
        assert_eq!(v["series"][0]["name"], "GET </script><b>");
        assert_eq!(v["series"][0]["color"], "#D55E00");
        assert_eq!(v["series"][0]["points"][0][1], 1234.57);
        assert_eq!(out.matches("</script>").count(), 1);
    }

    #[test]
    fn too_many_points_leave_the_chart_static() {
        let s = Series {
            name: "a".into(),
            points: vec![],
            dashed: false,
            color: 0,
        };
        let many: Vec<(f64, f64)> = (0..=MAX_POINTS).map(|i| (i as f64, 1.0)).collect();
        let mut out = String::new();
        let (x, y) = (Axis::linear("s"), Axis::linear("v"));
        write(&mut out, "c", &x, &y, &frame(), &[(&s, many)]);
        assert!(out.is_empty());
        write(&mut out, "c", &x, &y, &frame(), &[(&s, vec![(0.0, 1.0)])]);
        assert!(out.contains(r#""zoom":null"#), "{out}");
    }
}

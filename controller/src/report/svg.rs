//! Inline SVG charts drawn in Rust: line charts (linear or log axes) and
//! bar charts. No fonts or network: the markup is the chart, complete
//! without scripts.
//!
//! Every chart is one `<svg id=…>`; data series are `<path class="series"
//! data-i="K">` (K: the series' position) and bars `<rect class="bar">`, so a
//! test can check real data was drawn. X-axis ticks are in one
//! `<g class="xticks">`. A line chart is followed by its data
//! ([`super::data`]), which `chart.js` redraws its paths and ticks from
//! when zoomed.

use std::fmt::Write as _;

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 42.0;

/// Colours of series, in order (colour-blind-friendly Okabe–Ito palette).
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// A series' colour.
pub fn color(k: usize) -> &'static str {
    PALETTE[k % PALETTE.len()]
}

/// One line of a line chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Index into the palette (series of one op share a colour).
    pub color: usize,
}

/// An axis: label, scale, and optional fixed ticks (value, label); for an
/// x axis, also how a value reads on hover and which charts zoom with it.
#[derive(Clone, Debug, Default)]
pub struct Axis {
    pub label: String,
    pub log: bool,
    pub ticks: Option<Vec<(f64, String)>>,
    pub hover: Hover,
    /// Charts whose x axes have the same group zoom together (a stage's
    /// time charts); `None`: the chart is not zoomed.
    pub zoom: Option<String>,
}

/// How the tooltip names an x value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hover {
    /// The number as it is.
    #[default]
    Number,
    /// Seconds (`12.5 s`).
    Seconds,
    /// A number of nines, named as the percentile (2 is `p99`).
    Nines,
}

impl Hover {
    /// The name `chart.js` knows it by.
    pub fn name(self) -> &'static str {
        match self {
            Hover::Number => "number",
            Hover::Seconds => "seconds",
            Hover::Nines => "nines",
        }
    }
}

impl Axis {
    pub fn linear(label: &str) -> Axis {
        Axis {
            label: label.to_string(),
            ..Axis::default()
        }
    }

    pub fn log(label: &str) -> Axis {
        Axis {
            label: label.to_string(),
            log: true,
            ..Axis::default()
        }
    }

    /// Seconds from a stage's start, zoomed with the other charts of
    /// `group` (one per stage, so zooming one chart zooms its siblings).
    pub fn time(group: String) -> Axis {
        Axis {
            label: "seconds from stage start".to_string(),
            hover: Hover::Seconds,
            zoom: Some(group),
            ..Axis::default()
        }
    }
}

/// Escapes text for XML content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A compact number label: 1.5k, 2M, 0.25.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if x.fract().abs() < 1e-9 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{suffix}")
}

/// A scale from data values to pixels.
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    px_lo: f64,
    px_hi: f64,
}

impl Scale {
    fn new(values: impl Iterator<Item = f64>, log: bool, px: (f64, f64)) -> Scale {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = (if log { 1.0 } else { 0.0 }, 1.0);
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
        } else {
            lo = lo.min(0.0);
            if hi <= lo {
                hi = lo + 1.0;
            }
            let step = nice_step((hi - lo) / 5.0);
            hi = (hi / step).ceil() * step;
        }
        Scale {
            lo,
            hi,
            log,
            px_lo: px.0,
            px_hi: px.1,
        }
    }

    fn fixed(lo: f64, hi: f64, px: (f64, f64)) -> Scale {
        Scale {
            lo,
            hi: if hi > lo { hi } else { lo + 1.0 },
            log: false,
            px_lo: px.0,
            px_hi: px.1,
        }
    }

    fn px(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.px_lo + t.clamp(0.0, 1.0) * (self.px_hi - self.px_lo)
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let mut t = Vec::new();
            let mut v = self.lo;
            while v <= self.hi * 1.0001 {
                t.push((v, short_number(v)));
                v *= 10.0;
            }
            return t;
        }
        let step = nice_step((self.hi - self.lo) / 5.0);
        let mut t = Vec::new();
        let mut v = (self.lo / step).ceil() * step;
        while v <= self.hi + step * 1e-9 {
            t.push((v, short_number(v)));
            v += step;
        }
        t
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// The frame: svg open tag, title, axes and tick labels.
fn frame(out: &mut String, id: &str, title: &str, xs: &Scale, ys: &Scale, x: &Axis, y: &Axis) {
    let _ = write!(
        out,
        r##"<svg id="{id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{t}</title><text x="{LEFT}" y="18" class="title">{t}</text>"##,
        id = escape(id),
        t = escape(title)
    );
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    // An axis may name its own ticks (none: a heatmap labels its rows).
    let yticks = y.ticks.clone().unwrap_or_else(|| ys.ticks());
    for (v, label) in yticks {
        let py = ys.px(v);
        let _ = write!(
            out,
            r##"<path class="grid" d="M{x0:.1} {py:.1}H{x1:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            py + 4.0,
            escape(&label)
        );
    }
    // Grouped, so a zoom can replace them; the rest of the frame stays.
    out.push_str(r#"<g class="xticks">"#);
    let xticks = x.ticks.clone().unwrap_or_else(|| xs.ticks());
    for (v, label) in xticks {
        let px = xs.px(v);
        let _ = write!(
            out,
            r##"<path class="tick" d="M{px:.1} {y0:.1}v5"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y0 + 18.0,
            escape(&label)
        );
    }
    out.push_str("</g>");
    let _ = write!(
        out,
        r##"<path class="axis" d="M{x0:.1} {y1:.1}V{y0:.1}H{x1:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        (x0 + x1) / 2.0,
        HEIGHT - 6.0,
        escape(&x.label),
        (y0 + y1) / 2.0,
        escape(&y.label)
    );
}

fn legend(out: &mut String, i: usize, name: &str, color: &str, dashed: bool) {
    let lx = WIDTH - RIGHT + 14.0;
    let ly = TOP + 8.0 + i as f64 * 18.0;
    let _ = write!(
        out,
        r##"<path class="key" d="M{lx:.1} {ly:.1}h22" stroke="{color}"{}/><text x="{:.1}" y="{:.1}">{}</text>"##,
        if dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        },
        lx + 28.0,
        ly + 4.0,
        escape(name)
    );
}

/// A line chart, then its data for `chart.js` (unless it has more than
/// [`super::data::MAX_POINTS`]); points outside a log axis's domain (≤ 0)
/// are skipped.
pub fn line_chart(id: &str, title: &str, x: &Axis, y: &Axis, series: &[Series]) -> String {
    let usable = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite() && (!y.log || p.1 > 0.0);
    let xs = Scale::new(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        x.log,
        (LEFT, WIDTH - RIGHT),
    );
    let xs = match &x.ticks {
        Some(t) if !t.is_empty() => Scale::fixed(
            t.first().map_or(0.0, |t| t.0),
            t.last().map_or(1.0, |t| t.0),
            (LEFT, WIDTH - RIGHT),
        ),
        _ => xs,
    };
    let ys = Scale::new(
        series
            .iter()
            .flat_map(|s| s.points.iter().filter(|p| usable(p)).map(|p| p.1)),
        y.log,
        (HEIGHT - BOTTOM, TOP),
    );
    let mut out = String::new();
    frame(&mut out, id, title, &xs, &ys, x, y);
    for (i, s) in series.iter().enumerate() {
        let color = color(s.color);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| usable(p))
            .map(|&(a, b)| (xs.px(a), ys.px(b)))
            .collect();
        let mut d = String::new();
        for (k, (px, py)) in pts.iter().enumerate() {
            let _ = write!(d, "{}{px:.1} {py:.1}", if k == 0 { "M" } else { "L" });
        }
        if pts.len() == 1 {
            // A lone point: a short tick, so it shows.
            d.push_str("h2");
        }
        if !d.is_empty() {
            let _ = write!(
                out,
                r##"<path class="series" data-i="{i}" data-name="{}" d="{d}" fill="none" stroke="{color}" stroke-width="1.8"{}/>"##,
                escape(&s.name),
                if s.dashed {
                    r#" stroke-dasharray="5 3""#
                } else {
                    ""
                }
            );
        }
        legend(&mut out, i, &s.name, color, s.dashed);
    }
    out.push_str("</svg>");
    let frame = super::data::Frame {
        plot: [LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM],
        x: (xs.lo, xs.hi),
        y: (ys.lo, ys.hi),
        y_log: ys.log,
    };
    let data: Vec<(&Series, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| (s, s.points.iter().copied().filter(|p| usable(p)).collect()))
        .collect();
    super::data::write(&mut out, id, x, y, &frame, &data);
    out
}

/// Most rows and columns of a heatmap: more agents are averaged in groups
/// of neighbours (in id order), more segments merged, so a run of 1,000
/// agents stays one readable picture of at most this many cells a side.
pub const HEATMAP_CELLS: usize = 100;

/// A heatmap of one value per row and time segment (agents' ops/s over a
/// stage): rows top to bottom, segments of `segment_s` seconds left to
/// right, white for 0 to dark blue for the largest value; each cell's
/// value and row on hover. Rows and segments beyond [`HEATMAP_CELLS`] are
/// grouped.
pub fn heatmap(
    id: &str,
    title: &str,
    unit: &str,
    segment_s: f64,
    rows: &[(&str, &[f64])],
) -> String {
    let columns = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let row_group = rows.len().div_ceil(HEATMAP_CELLS).max(1);
    let col_group = columns.div_ceil(HEATMAP_CELLS).max(1);
    // Mean over each group of rows and of columns.
    let grid: Vec<(String, Vec<f64>)> = rows
        .chunks(row_group)
        .map(|g| {
            let label = match g {
                [one] => one.0.to_string(),
                [first, .., last] => format!("{} … {}", first.0, last.0),
                [] => String::new(),
            };
            let cells = (0..columns.div_ceil(col_group))
                .map(|c| {
                    let (mut sum, mut n) = (0.0, 0usize);
                    for (_, values) in g {
                        for col in c * col_group..((c + 1) * col_group).min(columns) {
                            sum += values.get(col).copied().unwrap_or(0.0);
                            n += 1;
                        }
                    }
                    if n == 0 { 0.0 } else { sum / n as f64 }
                })
                .collect();
            (label, cells)
        })
        .collect();
    let max = grid
        .iter()
        .flat_map(|r| r.1.iter().copied())
        .fold(0.0, f64::max);
    let span_s = columns as f64 * segment_s;
    let xs = Scale::fixed(0.0, span_s.max(segment_s), (LEFT, WIDTH - RIGHT));
    let ys = Scale::fixed(0.0, 1.0, (HEIGHT - BOTTOM, TOP));
    let x = Axis::linear("seconds from stage start");
    let y = Axis {
        ticks: Some(Vec::new()),
        ..Axis::default()
    };
    let mut out = String::new();
    // The frame's value ticks would mean nothing here: rows are labelled.
    frame(&mut out, id, title, &xs, &ys, &x, &y);
    let (plot_h, plot_w) = (HEIGHT - BOTTOM - TOP, WIDTH - RIGHT - LEFT);
    let cell_h = plot_h / grid.len().max(1) as f64;
    let cell_w = plot_w / grid.first().map_or(1, |r| r.1.len()).max(1) as f64;
    let label_every = (grid.len() / 10).max(1);
    for (r, (label, cells)) in grid.iter().enumerate() {
        let top = TOP + r as f64 * cell_h;
        for (c, v) in cells.iter().enumerate() {
            let shade = if max > 0.0 { v / max } else { 0.0 };
            // White to dark blue (#08306b).
            let mix = |to: f64| (255.0 - (255.0 - to) * shade).round() as u8;
            let _ = write!(
                out,
                r##"<rect class="cell" x="{:.2}" y="{top:.2}" width="{:.2}" height="{:.2}" fill="#{:02x}{:02x}{:02x}"><title>{} at {:.1} s: {} {}</title></rect>"##,
                LEFT + c as f64 * cell_w,
                cell_w + 0.05,
                cell_h + 0.05,
                mix(8.0),
                mix(48.0),
                mix(107.0),
                escape(label),
                c as f64 * col_group as f64 * segment_s,
                short_number(*v),
                escape(unit)
            );
        }
        if r % label_every == 0 {
            // The margin holds about 11 characters: ids differ at their
            // ends, so a long one keeps its end (the hover has it whole).
            let first = label.split(" … ").next().unwrap_or("");
            let cut = first.char_indices().rev().nth(10).map_or(0, |(i, _)| i);
            let short = if cut > 0 {
                format!("…{}", &first[cut..])
            } else {
                first.to_string()
            };
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT - 6.0,
                top + cell_h / 2.0 + 4.0,
                escape(&short)
            );
        }
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}">max {} {}</text></svg>"##,
        WIDTH - RIGHT + 14.0,
        TOP + 12.0,
        short_number(max),
        escape(unit)
    );
    out
}

/// A bar chart of labelled values (e.g. ops/s per agent).
pub fn bar_chart(id: &str, title: &str, y: &Axis, bars: &[(String, f64)]) -> String {
    let ys = Scale::new(bars.iter().map(|b| b.1), false, (HEIGHT - BOTTOM, TOP));
    let n = bars.len().max(1) as f64;
    let xs = Scale::fixed(0.0, n, (LEFT, WIDTH - RIGHT));
    // Label every bar when they fit, else about twenty of them.
    let every = (bars.len() / 20).max(1);
    let ticks = bars
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, b)| (i as f64 + 0.5, b.0.clone()))
        .collect();
    let x = Axis {
        ticks: Some(ticks),
        ..Axis::default()
    };
    let mut out = String::new();
    frame(&mut out, id, title, &xs, &ys, &x, y);
    let slot = (WIDTH - RIGHT - LEFT) / n;
    for (i, (name, v)) in bars.iter().enumerate() {
        let top = ys.px(*v);
        let base = ys.px(0.0);
        let _ = write!(
            out,
            r##"<rect class="bar" x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"##,
            LEFT + slot * i as f64 + slot * 0.15,
            slot * 0.7,
            (base - top).max(0.5),
            PALETTE[0],
            escape(name),
            short_number(*v)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heatmap_of_many_agents_groups_rows_and_columns() {
        // 1,000 agents over 250 segments: agent a runs a ops/s throughout.
        let rows: Vec<(String, Vec<f64>)> = (0..1000)
            .map(|a| (format!("agent-{a:04}"), vec![a as f64; 250]))
            .collect();
        let rows: Vec<(&str, &[f64])> = rows
            .iter()
            .map(|(a, v)| (a.as_str(), v.as_slice()))
            .collect();
        let svg = heatmap("h", "H", "ops/s", 1.0, &rows);
        // Groups of 10 agents, 100 rows; 3 segments a column, 84 columns.
        assert_eq!(svg.matches("<rect class=\"cell\"").count(), 100 * 84);
        // The last group averages agents 990 to 999: the largest value,
        // the darkest cell; the first group (0 to 9) is nearly white.
        assert!(
            svg.contains("max 994.5 ops/s"),
            "{}",
            &svg[svg.len() - 200..]
        );
        assert!(svg.contains("fill=\"#08306b\"><title>agent-0990 … agent-0999 at 0.0 s"));
        assert!(svg.contains("fill=\"#fefefe\"><title>agent-0000 … agent-0009 at 0.0 s"));
    }

    #[test]
    fn charts_have_ids_and_data() {
        let s = Series {
            name: "GET <p50>".into(),
            points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)],
            dashed: false,
            color: 0,
        };
        let svg = line_chart("c1", "T", &Axis::linear("s"), &Axis::log("us"), &[s]);
        assert!(svg.starts_with(r#"<svg id="c1""#));
        assert!(svg.contains(r#"class="series""#));
        assert!(svg.contains("GET &lt;p50&gt;"));
        let bars = bar_chart("b", "B", &Axis::linear("ops/s"), &[("a".into(), 3.0)]);
        assert!(bars.contains(r#"<rect class="bar""#));
    }

    #[test]
    fn numbers_and_steps() {
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(2_000_000.0), "2M");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(0.7), 1.0);
    }
}

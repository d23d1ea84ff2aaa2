//! A hand-written SVG plot: throughput and p99 latency against concurrency,
//! one line per system, two panels side by side. Concurrency levels are
//! spaced evenly (they are usually powers of two).

use std::fmt::Write;

/// One system's measurements, in level order.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    /// (concurrency, throughput ops/s, p99 ms)
    pub points: Vec<(usize, f64, f64)>,
}

const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];
const PANEL_W: f64 = 440.0;
const PANEL_H: f64 = 300.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_T: f64 = 50.0;
const MARGIN_B: f64 = 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound and step for an axis reaching `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v >= 10.0 {
        format!("{:.0}", v)
    } else if v >= 1.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

/// Renders the plot. `title` goes on top.
pub fn render(title: &str, series: &[Series]) -> String {
    let mut levels: Vec<usize> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    levels.sort_unstable();
    levels.dedup();
    let width = 2.0 * (MARGIN_L + PANEL_W) + 40.0;
    let height = MARGIN_T + PANEL_H + MARGIN_B + 30.0 + 20.0 * series.len() as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    type Getter = fn(&(usize, f64, f64)) -> f64;
    let panels: [(&str, Getter); 2] = [
        ("throughput (ops/s)", |p| p.1),
        ("p99 latency (ms)", |p| p.2),
    ];
    for (pi, (label, get)) in panels.iter().enumerate() {
        let x0 = MARGIN_L + pi as f64 * (MARGIN_L + PANEL_W + 40.0);
        let y0 = MARGIN_T;
        let ymax_data = series
            .iter()
            .flat_map(|s| s.points.iter().map(get))
            .fold(0.0f64, f64::max);
        let (ymax, step) = nice_axis(ymax_data);
        let xpos = |level: usize| -> f64 {
            let i = levels.iter().position(|l| *l == level).unwrap_or(0) as f64;
            let n = levels.len().max(2) as f64 - 1.0;
            x0 + 20.0 + i * (PANEL_W - 40.0) / n
        };
        let ypos = |v: f64| -> f64 { y0 + PANEL_H - (v / ymax) * PANEL_H };
        // Frame, grid and y labels.
        let _ = writeln!(
            svg,
            r##"<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#333"/>"##
        );
        let mut v = 0.0;
        while v <= ymax + step / 2.0 {
            let y = ypos(v);
            let _ = writeln!(
                svg,
                r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                x0 + PANEL_W,
                x0 - 6.0,
                y + 4.0,
                fmt_num(v)
            );
            v += step;
        }
        for &l in &levels {
            let x = xpos(l);
            let _ = writeln!(
                svg,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#333"/><text x="{x}" y="{}" text-anchor="middle">{l}</text>"##,
                y0 + PANEL_H,
                y0 + PANEL_H + 5.0,
                y0 + PANEL_H + 18.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">concurrent clients</text>"#,
            x0 + PANEL_W / 2.0,
            y0 + PANEL_H + 36.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{}</text>"#,
            x0 + PANEL_W / 2.0,
            y0 - 10.0,
            esc(label)
        );
        for (si, s) in series.iter().enumerate() {
            let color = COLORS[si % COLORS.len()];
            let pts: Vec<String> = s
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", xpos(p.0), ypos(get(p))))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                pts.join(" ")
            );
            for p in &s.points {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{}: {} clients, {}</title></circle>"#,
                    xpos(p.0),
                    ypos(get(p)),
                    esc(&s.name),
                    p.0,
                    fmt_num(get(p))
                );
            }
        }
    }
    // Legend.
    for (si, s) in series.iter().enumerate() {
        let y = MARGIN_T + PANEL_H + MARGIN_B + 10.0 + 20.0 * si as f64;
        let color = COLORS[si % COLORS.len()];
        let _ = writeln!(
            svg,
            r#"<line x1="{MARGIN_L}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            MARGIN_L + 30.0,
            MARGIN_L + 38.0,
            y + 4.0,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_is_nice() {
        assert_eq!(nice_axis(9.3), (10.0, 2.0));
        assert_eq!(nice_axis(1234.0), (1250.0, 250.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
    }

    #[test]
    fn renders_a_line_per_system_with_escaped_names() {
        let s = render(
            "etcd put <fsync>",
            &[
                Series {
                    name: "janus".into(),
                    points: vec![(1, 100.0, 2.0), (8, 700.0, 4.0)],
                },
                Series {
                    name: "etcd 3.4".into(),
                    points: vec![(1, 90.0, 2.5), (8, 650.0, 5.0)],
                },
            ],
        );
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 4); // 2 systems x 2 panels
        assert!(s.contains("etcd put &lt;fsync&gt;"));
    }
}

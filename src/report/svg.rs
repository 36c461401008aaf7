//! Simple inline SVG bar charts for the HTML report: vertical (optionally stacked) bars and
//! horizontal bars with a previous-period marker. No script, no external resource; every
//! label is escaped. Output depends only on the input (report verification re-renders).

use std::fmt::Write as _;

use super::html::esc;

/// Width of every chart's view box.
const W: f64 = 720.0;

/// A round axis maximum at or above `max`: 1, 2 or 5 times a power of ten.
fn nice_max(max: u64) -> u64 {
    let max = max.max(1);
    let mut p = 1u64;
    loop {
        for m in [1u64, 2, 5] {
            let v = m.saturating_mul(p);
            if v >= max {
                return v;
            }
        }
        if p > u64::MAX / 10 {
            return max;
        }
        p *= 10;
    }
}

/// Cuts a label to `max` characters, with `…`.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// One series of a chart: a legend label and a fill colour.
pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'a str,
}

/// Vertical bars, stacked when a bar has several values (one per series). `title` is the
/// accessible name; `empty` the text shown when there is nothing to draw.
pub fn vbars(
    title: &str,
    bars: &[(String, Vec<u64>)],
    series: &[Series<'_>],
    empty: &str,
) -> String {
    let h = 260.0;
    let (left, right, top, bottom) = (48.0, 12.0, 28.0, 64.0);
    let plot_w = W - left - right;
    let plot_h = h - top - bottom;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(title)
    );
    let total: u64 = bars
        .iter()
        .map(|(_, v)| v.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    if bars.is_empty() || total == 0 {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"muted\">{}</text></svg>",
            W / 2.0,
            h / 2.0,
            esc(empty)
        );
        return s;
    }
    let max = nice_max(total);
    // Legend.
    if series.len() > 1 {
        let mut x = left;
        for se in series {
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"6\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"16\" class=\"lbl\">{}</text>",
                se.color,
                x + 16.0,
                esc(se.label)
            );
            x += 24.0 + 13.0 * se.label.chars().count() as f64;
        }
    }
    // Grid and y labels.
    for i in 0..=4u64 {
        let v = max * i / 4;
        let y = top + plot_h - plot_h * (i as f64) / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"lbl\">{v}</text>",
            W - right,
            left - 6.0,
            y + 4.0
        );
    }
    let n = bars.len();
    let slot = plot_w / n as f64;
    let bw = (slot * 0.7).max(1.0);
    let every = n.div_ceil(16).max(1);
    for (i, (label, values)) in bars.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bw) / 2.0;
        let mut y = top + plot_h;
        for (j, v) in values.iter().enumerate() {
            if *v == 0 {
                continue;
            }
            let bh = plot_h * (*v as f64) / (max as f64);
            y -= bh;
            let color = series.get(j).map_or("#455a64", |se| se.color);
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{}: {v}</title></rect>",
                esc(label)
            );
        }
        let sum: u64 = values.iter().sum();
        if n <= 24 && sum > 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"val\">{sum}</text>",
                x + bw / 2.0,
                y - 3.0
            );
        }
        if i % every == 0 {
            let lx = x + bw / 2.0;
            let ly = top + plot_h + 12.0;
            let _ = write!(
                s,
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" transform=\"rotate(-40 {lx:.1} {ly:.1})\" class=\"lbl\">{}</text>",
                esc(&cut(label, 12))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: one row per item with the current count (solid) and the previous one
/// (a thin grey bar below it).
pub fn hbars(
    title: &str,
    items: &[(String, u64, u64)],
    now: Series<'_>,
    before: Series<'_>,
    empty: &str,
) -> String {
    let row = 24.0;
    let (left, right, top) = (250.0, 48.0, 26.0);
    let h = top + row * items.len().max(1) as f64 + 8.0;
    let plot_w = W - left - right;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {h:.0}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(title)
    );
    let top_value = items
        .iter()
        .map(|(_, a, b)| (*a).max(*b))
        .max()
        .unwrap_or(0);
    if items.is_empty() || top_value == 0 {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"muted\">{}</text></svg>",
            W / 2.0,
            top + 8.0,
            esc(empty)
        );
        return s;
    }
    let max = nice_max(top_value) as f64;
    let _ = write!(
        s,
        "<rect x=\"{left}\" y=\"6\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"16\" class=\"lbl\">{}</text><rect x=\"{:.1}\" y=\"10\" width=\"12\" height=\"4\" fill=\"{}\"/><text x=\"{:.1}\" y=\"16\" class=\"lbl\">{}</text>",
        now.color,
        left + 16.0,
        esc(now.label),
        left + 40.0 + 13.0 * now.label.chars().count() as f64,
        before.color,
        left + 56.0 + 13.0 * now.label.chars().count() as f64,
        esc(before.label)
    );
    for (i, (label, a, b)) in items.iter().enumerate() {
        let y = top + row * i as f64;
        let aw = plot_w * (*a as f64) / max;
        let bw = plot_w * (*b as f64) / max;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"lbl\">{}</text>",
            left - 6.0,
            y + 13.0,
            esc(&cut(label, 34))
        );
        let _ = write!(
            s,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"{aw:.1}\" height=\"13\" fill=\"{}\"><title>{}: {a}</title></rect>",
            y + 2.0,
            now.color,
            esc(label)
        );
        let _ = write!(
            s,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"4\" fill=\"{}\"><title>{}: {b}</title></rect>",
            y + 16.0,
            before.color,
            esc(label)
        );
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"val\">{a}</text>",
            left + aw + 4.0,
            y + 13.0
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(4999), 5000);
        assert_eq!(nice_max(u64::MAX), u64::MAX);
    }

    #[test]
    fn labels_are_escaped_and_cut() {
        let svg = vbars(
            "t<",
            &[("<script>".into(), vec![3, 1])],
            &[
                Series {
                    label: "a&b",
                    color: "#000",
                },
                Series {
                    label: "c",
                    color: "#111",
                },
            ],
            "none",
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("a&amp;b"));
        assert!(svg.contains(">4</text>"), "stack total shown: {svg}");
        assert_eq!(cut("abcdef", 4), "abc…");
        let h = hbars(
            "x",
            &[("<b>".into(), 2, 5)],
            Series {
                label: "now",
                color: "#000",
            },
            Series {
                label: "then",
                color: "#999",
            },
            "none",
        );
        assert!(h.contains("&lt;b&gt;") && !h.contains("<b>"));
    }

    #[test]
    fn empty_charts_say_so() {
        let svg = vbars("t", &[("a".into(), vec![0])], &[], "no data");
        assert!(svg.contains("no data") && !svg.contains("<rect"));
        let h = hbars(
            "t",
            &[],
            Series {
                label: "n",
                color: "#000",
            },
            Series {
                label: "b",
                color: "#999",
            },
            "nothing",
        );
        assert!(h.contains("nothing"));
    }
}

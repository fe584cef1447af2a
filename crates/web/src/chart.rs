//! Charts drawn on the server as SVG: no script, readable by a screen
//! reader through its title and the table beside it.

use std::fmt::Write as _;

/// One bar: its label under the axis and its value.
pub struct Bar {
    pub label: String,
    pub value: i64,
    /// What a pointer over the bar shows (`<title>`).
    pub caption: String,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const AXIS: f64 = 24.0;

/// A bar chart of `bars`, titled `title`.
pub fn bars(title: &str, bars: &[Bar]) -> String {
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1) as f64;
    let n = bars.len().max(1) as f64;
    let slot = WIDTH / n;
    // A few bars stay bars, not blocks.
    let width = (slot * 0.7).clamp(1.0, 40.0);
    let plot = HEIGHT - AXIS;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}"><title>{}</title>"#,
        escape(title),
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<line x1="0" y1="{plot}" x2="{WIDTH}" y2="{plot}" class="axis"/>"#
    );
    // Every label when they fit, else about twelve of them.
    let every = (bars.len() / 12).max(1);
    for (i, bar) in bars.iter().enumerate() {
        let h = (bar.value.max(0) as f64 / max) * (plot - 8.0);
        let x = i as f64 * slot + (slot - width) / 2.0;
        let y = plot - h;
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}" class="bar"><title>{}</title></rect>"#,
            escape(&bar.caption)
        );
        if i % every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" class="label">{}</text>"#,
                i as f64 * slot + slot / 2.0,
                HEIGHT - 6.0,
                escape(&bar.label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_their_text() {
        let svg = bars(
            "Sales <by day>",
            &[
                Bar {
                    label: "1".into(),
                    value: 50,
                    caption: "a".into(),
                },
                Bar {
                    label: "2".into(),
                    value: 100,
                    caption: "b & c".into(),
                },
            ],
        );
        assert!(svg.contains("Sales &lt;by day&gt;"));
        assert!(svg.contains("b &amp; c"));
        // The largest bar spans the plot (196 - 8 = 188), the other half of it.
        assert!(svg.contains(r#"height="188.0""#));
        assert!(svg.contains(r#"height="94.0""#));
    }

    #[test]
    fn no_bars_draws_an_empty_axis() {
        let svg = bars("Nothing", &[]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<rect"));
    }
}

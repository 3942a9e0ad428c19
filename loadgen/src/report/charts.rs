//! The report's charts: plotters drawing into an in-memory SVG string, later inlined into the
//! page. Every chart has a title, axis labels with units and a legend; a variant keeps its colour
//! (its index in the summary) in every chart. No fonts are loaded: the SVG carries `<text>`
//! elements that the browser lays out.

use plotters::prelude::*;

/// Tableau-10: distinct, readable on white, colour-blind friendlier than the defaults.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of the `index`-th variant.
pub fn colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// The same colour as CSS, for table swatches.
pub fn css_colour(index: usize) -> String {
    let RGBColor(r, g, b) = colour(index);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// One line; repetitions of a variant are several lines of one colour, labelled once.
#[derive(Debug, Clone)]
pub struct Line {
    pub label: Option<String>,
    pub colour_index: usize,
    pub points: Vec<(f64, f64)>,
}

/// How the x axis is labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Plain numbers (seconds).
    Seconds,
    /// "Nines": x = -log10(1 - percentile); labelled 0 %, 90 %, 99 %, 99.9 %, …
    Nines,
}

/// A chart's text and geometry.
#[derive(Debug, Clone)]
pub struct ChartSpec {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_axis: XAxis,
    pub width_px: u32,
    pub height_px: u32,
    /// A shaded x span with its label (the warm-up).
    pub shade: Option<(f64, f64, String)>,
    /// A dashed horizontal reference line with its label (the target rate).
    pub reference_y: Option<(f64, String)>,
}

/// Percentile → "nines" x coordinate, capped at 99.999 % (x = 5).
pub fn nines(percentile: f64) -> f64 {
    let q = (percentile / 100.0).clamp(0.0, 0.99999);
    -(1.0 - q).log10()
}

fn nines_label(x: f64) -> String {
    if (x - x.round()).abs() > 1e-6 {
        return String::new();
    }
    match x.round() as i64 {
        0 => "0 %".into(),
        1 => "90 %".into(),
        2 => "99 %".into(),
        3 => "99.9 %".into(),
        4 => "99.99 %".into(),
        5 => "99.999 %".into(),
        _ => String::new(),
    }
}

fn number_label(v: f64) -> String {
    let a = v.abs();
    let decimals = if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 0.1 {
        2
    } else {
        3
    };
    let text = format!("{v:.decimals$}");
    // "2.00" → "2", "2.50" → "2.5": axis ticks read cleaner without trailing zeros.
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Draws a line chart into an SVG string. `Err` carries plotters' message (drawing into memory
/// does not fail in practice).
pub fn line_chart(spec: &ChartSpec, lines: &[Line]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (spec.width_px, spec.height_px)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let points = lines.iter().flat_map(|l| l.points.iter());
        let (mut x_max, mut y_max) = points.fold((0.0f64, 0.0f64), |(x, y), (px, py)| {
            (x.max(*px), y.max(*py))
        });
        if let Some((_, end, _)) = &spec.shade {
            x_max = x_max.max(*end);
        }
        if let Some((y, _)) = &spec.reference_y {
            y_max = y_max.max(*y);
        }
        let x_max = match spec.x_axis {
            XAxis::Nines => 5.0,
            XAxis::Seconds => x_max.max(1.0),
        };
        // Over time the legend (upper left) would sit on the lines: leave it a band of its own.
        let headroom = match spec.x_axis {
            XAxis::Nines => 1.1,
            XAxis::Seconds => 1.5,
        };
        let y_max = if y_max > 0.0 { y_max * headroom } else { 1.0 };

        let mut chart = ChartBuilder::on(&root)
            .caption(
                &spec.title,
                ("sans-serif", 18).into_font().style(FontStyle::Bold),
            )
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        let x_fmt = |x: &f64| match spec.x_axis {
            XAxis::Nines => nines_label(*x),
            XAxis::Seconds => number_label(*x),
        };
        let y_fmt = |y: &f64| number_label(*y);
        chart
            .configure_mesh()
            .x_desc(spec.x_label.as_str())
            .y_desc(spec.y_label.as_str())
            .x_labels(match spec.x_axis {
                XAxis::Nines => 6,
                XAxis::Seconds => 10,
            })
            .y_labels(8)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()
            .map_err(|e| e.to_string())?;

        if let Some((start, end, label)) = &spec.shade {
            let grey = RGBColor(225, 225, 225);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*start, 0.0), (*end, y_max)],
                    grey.mix(0.6).filled(),
                )))
                .map_err(|e| e.to_string())?
                .label(label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], grey.filled()));
        }
        if let Some((y, label)) = &spec.reference_y {
            let style = BLACK.mix(0.55).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, *y), (x_max, *y)],
                    6,
                    4,
                    style,
                ))
                .map_err(|e| e.to_string())?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        for line in lines {
            let style = colour(line.colour_index).stroke_width(2);
            let drawn = chart
                .draw_series(LineSeries::new(line.points.iter().copied(), style))
                .map_err(|e| e.to_string())?;
            if let Some(label) = &line.label {
                drawn
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(190, 190, 190))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    // The namespace is an identifier, not a fetch; inline SVG in HTML does not need it, and
    // without it the page holds no URL at all.
    Ok(svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_put_the_tail_on_a_log_scale() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!((nines(100.0) - 5.0).abs() < 1e-9);
        assert_eq!(nines_label(3.0), "99.9 %");
        assert_eq!(number_label(2.0), "2");
        assert_eq!(number_label(2.5), "2.5");
        assert_eq!(number_label(35.0), "35");
    }

    #[test]
    fn charts_are_svg_without_urls() {
        let spec = ChartSpec {
            title: "t <&>".into(),
            x_label: "time (s)".into(),
            y_label: "latency (ms)".into(),
            x_axis: XAxis::Seconds,
            width_px: 400,
            height_px: 300,
            shade: Some((0.0, 2.0, "warm-up".into())),
            reference_y: Some((3.0, "target".into())),
        };
        let svg = line_chart(
            &spec,
            &[Line {
                label: Some("a".into()),
                colour_index: 0,
                points: vec![(0.0, 1.0), (5.0, 2.0)],
            }],
        )
        .expect("draws");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(!svg.contains("http"));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert!(svg.contains("latency (ms)"));
    }
}

//! The report's charts: plotters drawing into an in-memory SVG string, later inlined into the
//! page. Every chart has a title, axis labels with units and a legend; a variant keeps its colour
//! (its index in the summary) in every chart. No fonts are loaded: the SVG carries `<text>`
//! elements that the browser lays out. A series longer than a chart can show is thinned here
//! for drawing only ([`downsample`]); the figures never come from a thinned series.

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
    /// Time for long runs: points (and the shade) are given in seconds and drawn in minutes, so
    /// a 2 h run reads 0 … 120 rather than 0 … 7200.
    Minutes,
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
    /// Fault windows (x from, x to, label): shaded red, each labelled at the top; one legend
    /// entry for them all. A window too narrow to see is drawn [`MIN_BAND_SHARE`] of the axis
    /// wide.
    pub bands: Vec<(f64, f64, String)>,
    /// A dashed horizontal reference line with its label (the target rate).
    pub reference_y: Option<(f64, String)>,
}

/// The narrowest a fault window is drawn, as a share of the x axis (an instant fault is a line).
pub const MIN_BAND_SHARE: f64 = 0.004;

/// How consecutive points become one when a series has more than a chart can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// Their mean: for a rate such as CPU.
    Mean,
    /// Their maximum: for memory, so that a peak is never smoothed away.
    Max,
}

/// How many consecutive points go into one drawn point so that `len` points draw as at most
/// `max_points` (1: drawn as they are).
pub fn points_per_bucket(len: usize, max_points: usize) -> usize {
    len.div_ceil(max_points.max(1)).max(1)
}

/// `points` (in x order) in consecutive runs of [`points_per_bucket`], each drawn at its first x
/// with the runs' mean or max y. For drawing only: never a figure's source.
pub fn downsample(points: &[(f64, f64)], max_points: usize, reduce: Reduce) -> Vec<(f64, f64)> {
    let per = points_per_bucket(points.len(), max_points);
    if per == 1 {
        return points.to_vec();
    }
    points
        .chunks(per)
        .filter_map(|run| {
            let (x, _) = *run.first()?;
            let ys = run.iter().map(|(_, y)| *y);
            let y = match reduce {
                Reduce::Mean => ys.sum::<f64>() / run.len() as f64,
                Reduce::Max => ys.fold(f64::NEG_INFINITY, f64::max),
            };
            Some((x, y))
        })
        .collect()
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

/// Every chart's frame: the bold title, margins and room for the axis labels.
fn framed<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, plotters::coord::Shift>,
    title: &'b str,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 18).into_font().style(FontStyle::Bold))
        .margin(12)
        .margin_right(36)
        .x_label_area_size(44)
        .y_label_area_size(64);
    builder
}

/// Every chart's axis titles, text sizes and grid colours.
fn house_style<'m, 'a, 'b, X, Y, DB>(
    mesh: &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>,
    spec: &ChartSpec,
) -> &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
    DB: DrawingBackend,
{
    mesh.x_desc(spec.x_label.as_str())
        .y_desc(spec.y_label.as_str())
        .y_labels(8)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
}

/// Draws a line chart into an SVG string. `Err` carries plotters' message (drawing into memory
/// does not fail in practice).
pub fn line_chart(spec: &ChartSpec, lines: &[Line]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (spec.width_px, spec.height_px)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        // Minutes: the x coordinates are divided here, once, for the lines and the shade alike.
        let x_scale = match spec.x_axis {
            XAxis::Minutes => 1.0 / 60.0,
            XAxis::Seconds | XAxis::Nines => 1.0,
        };
        let scaled: Vec<Vec<(f64, f64)>> = lines
            .iter()
            .map(|l| l.points.iter().map(|&(x, y)| (x * x_scale, y)).collect())
            .collect();
        let shade = spec
            .shade
            .as_ref()
            .map(|(start, end, label)| (start * x_scale, end * x_scale, label));
        let (mut x_max, mut y_max) = scaled
            .iter()
            .flatten()
            .fold((0.0f64, 0.0f64), |(x, y), (px, py)| {
                (x.max(*px), y.max(*py))
            });
        if let Some((_, end, _)) = &shade {
            x_max = x_max.max(*end);
        }
        let bands: Vec<(f64, f64, &String)> = spec
            .bands
            .iter()
            .map(|(start, end, label)| (start * x_scale, end * x_scale, label))
            .collect();
        for (_, end, _) in &bands {
            x_max = x_max.max(*end);
        }
        if let Some((y, _)) = &spec.reference_y {
            y_max = y_max.max(*y);
        }
        let x_max = match spec.x_axis {
            XAxis::Nines => 5.0,
            XAxis::Seconds | XAxis::Minutes => x_max.max(1.0),
        };
        // Over time the legend (upper left) would sit on the lines: leave it a band of its own.
        let headroom = match spec.x_axis {
            XAxis::Nines => 1.1,
            XAxis::Seconds | XAxis::Minutes => 1.5,
        };
        let y_max = if y_max > 0.0 { y_max * headroom } else { 1.0 };

        let mut chart = framed(&root, &spec.title)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        let x_fmt = |x: &f64| match spec.x_axis {
            XAxis::Nines => nines_label(*x),
            XAxis::Seconds | XAxis::Minutes => number_label(*x),
        };
        let y_fmt = |y: &f64| number_label(*y);
        house_style(&mut chart.configure_mesh(), spec)
            .x_labels(match spec.x_axis {
                XAxis::Nines => 6,
                XAxis::Seconds | XAxis::Minutes => 10,
            })
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(|e| e.to_string())?;

        if let Some((start, end, label)) = shade {
            let grey = RGBColor(225, 225, 225);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(start, 0.0), (end, y_max)],
                    grey.mix(0.6).filled(),
                )))
                .map_err(|e| e.to_string())?
                .label(label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], grey.filled()));
        }
        let fault_red = RGBColor(214, 39, 40);
        for (i, (start, end, label)) in bands.iter().enumerate() {
            let end = end.max(start + x_max * MIN_BAND_SHARE);
            let drawn = chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*start, 0.0), (end, y_max)],
                    fault_red.mix(0.18).filled(),
                )))
                .map_err(|e| e.to_string())?;
            if i == 0 {
                drawn.label("fault window").legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 20, y + 6)], fault_red.mix(0.3).filled())
                });
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    (*label).clone(),
                    (*start, y_max * 0.97),
                    ("sans-serif", 12).into_font().color(&fault_red),
                )))
                .map_err(|e| e.to_string())?;
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
        for (line, points) in lines.iter().zip(&scaled) {
            let style = colour(line.colour_index).stroke_width(2);
            let drawn = chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
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

/// One bar of a waterfall: a step's multiplicative change.
#[derive(Debug, Clone, PartialEq)]
pub struct WaterfallStep {
    pub label: String,
    /// after / before; `None` draws no bar (not measured, or excluded).
    pub ratio: Option<f64>,
    /// Written in grey where the bar would be when there is none ("excluded"), so a step left out
    /// on purpose does not look like a step that changed nothing.
    pub note: Option<String>,
}

/// One bar as drawn: it spans `from` → `to` (cumulative levels), or has no span and maybe a note
/// written at `level`.
struct Bar {
    label: String,
    span: Option<(f64, f64)>,
    is_total: bool,
    note: Option<String>,
    level: f64,
}

/// A waterfall of ratios on a log scale: each step's bar floats from the cumulative level before
/// it to the level after it, and a last "total" bar runs from 1× to the end (when every step has
/// a figure; else the total reads "n/a"). Green bars moved in the good direction
/// (`higher_is_better`), red ones in the bad one.
pub fn waterfall_chart(
    spec: &ChartSpec,
    steps: &[WaterfallStep],
    higher_is_better: bool,
) -> Result<String, String> {
    let mut bars = Vec::with_capacity(steps.len() + 1);
    let mut level = 1.0f64;
    for step in steps {
        let ratio = step.ratio.filter(|r| r.is_finite() && *r > 0.0);
        bars.push(Bar {
            label: step.label.clone(),
            span: ratio.map(|r| (level, level * r)),
            is_total: false,
            note: step.note.clone(),
            level,
        });
        level *= ratio.unwrap_or(1.0);
    }
    // A step without a figure leaves the total unknown: no total bar rather than a wrong one.
    let total = bars.iter().all(|b| b.span.is_some());
    bars.push(Bar {
        label: "total".to_string(),
        span: total.then_some((1.0, level)),
        is_total: true,
        note: (!total).then(|| "n/a".to_string()),
        level: 1.0,
    });
    let levels = bars.iter().filter_map(|b| b.span).flat_map(|(a, b)| [a, b]);
    let (low, high) = levels.fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (low, high) = (low / 1.6, high * 1.6);
    let good = colour(2);
    let bad = colour(3);
    let total_colour = colour(0);
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (spec.width_px, spec.height_px)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = framed(&root, &spec.title)
            // `0..n` has n + 1 segments in plotters: the last bar is at index `bars.len() - 1`.
            .build_cartesian_2d(
                (0..bars.len().saturating_sub(1)).into_segmented(),
                (low..high).log_scale(),
            )
            .map_err(|e| e.to_string())?;
        let x_fmt = |x: &SegmentValue<usize>| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let y_fmt = |y: &f64| format!("{}×", number_label(*y));
        house_style(&mut chart.configure_mesh(), spec)
            .x_labels(bars.len() + 1)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .disable_x_mesh()
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![
                    (SegmentValue::Exact(0), 1.0),
                    (SegmentValue::Exact(bars.len()), 1.0),
                ],
                6,
                4,
                BLACK.mix(0.55).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?;
        for (i, bar) in bars.iter().enumerate() {
            let Some((from, to)) = bar.span else {
                if let Some(text) = &bar.note {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            text.clone(),
                            (SegmentValue::CenterOf(i), bar.level * 1.12),
                            ("sans-serif", 13)
                                .into_font()
                                .color(&RGBColor(128, 128, 128)),
                        )))
                        .map_err(|e| e.to_string())?;
                }
                continue;
            };
            let improved = (to >= from) == higher_is_better;
            let fill = if bar.is_total {
                total_colour
            } else if improved {
                good
            } else {
                bad
            };
            let (bottom, top) = (from.min(to), from.max(to));
            // A step that changed nothing still gets a visible sliver.
            let top = if top / bottom < 1.01 {
                bottom * 1.01
            } else {
                top
            };
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), bottom),
                    (SegmentValue::Exact(i + 1), top),
                ],
                fill.filled(),
            );
            bar.set_margin(0, 0, 14, 14);
            let ratio = to / from;
            let text = if ratio >= 1.0 {
                format!("×{ratio:.2}")
            } else {
                format!("÷{:.2}", 1.0 / ratio)
            };
            chart
                .draw_series(std::iter::once(bar))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (SegmentValue::CenterOf(i), top * 1.12),
                    ("sans-serif", 13).into_font(),
                )))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
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
            bands: vec![(2.5, 2.5, "pg_restart".into())],
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
        assert!(svg.contains("pg_restart") && svg.contains("fault window"));
    }

    /// The text of every `<text>` element of an SVG.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("</text>")
            .filter_map(|chunk| {
                chunk
                    .rsplit_once('>')
                    .map(|(_, text)| text.trim().to_string())
            })
            .collect()
    }

    #[test]
    fn minutes_draw_seconds_as_minutes() {
        let spec = ChartSpec {
            title: "p99".into(),
            x_label: "time since load start (min)".into(),
            y_label: "latency (ms)".into(),
            x_axis: XAxis::Minutes,
            width_px: 600,
            height_px: 300,
            shade: Some((0.0, 300.0, "warm-up".into())),
            bands: Vec::new(),
            reference_y: None,
        };
        let points: Vec<(f64, f64)> = (0..=720).map(|i| (i as f64 * 10.0, 1.0)).collect();
        let line = Line {
            label: None,
            colour_index: 0,
            points,
        };
        let svg = line_chart(&spec, std::slice::from_ref(&line)).expect("draws");
        let labels = texts(&svg);
        assert!(
            labels.iter().any(|t| t == "120"),
            "ticks in minutes: {labels:?}"
        );
        assert!(!labels.iter().any(|t| t == "6000"), "{labels:?}");
        // The same series in seconds has ticks in the thousands.
        let seconds = ChartSpec {
            x_axis: XAxis::Seconds,
            ..spec
        };
        let labels = texts(&line_chart(&seconds, &[line]).expect("draws"));
        assert!(
            labels.iter().any(|t| t == "6000"),
            "ticks in seconds: {labels:?}"
        );
    }

    #[test]
    fn downsampling_keeps_peaks_or_means_and_never_more_points_than_asked() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(downsample(&points, 20, Reduce::Max), points, "fits: as is");
        assert_eq!(points_per_bucket(10, 4), 3);
        assert_eq!(
            downsample(&points, 4, Reduce::Max),
            [(0.0, 2.0), (3.0, 5.0), (6.0, 8.0), (9.0, 9.0)]
        );
        assert_eq!(
            downsample(&points, 4, Reduce::Mean),
            [(0.0, 1.0), (3.0, 4.0), (6.0, 7.0), (9.0, 9.0)]
        );
        let long: Vec<(f64, f64)> = (0..28_800).map(|i| (i as f64 / 4.0, 1.0)).collect();
        assert!(downsample(&long, 720, Reduce::Mean).len() <= 720);
    }

    #[test]
    fn waterfall_labels_each_step_and_the_total() {
        let spec = ChartSpec {
            title: "throughput by step".into(),
            x_label: "step".into(),
            y_label: "cumulative change".into(),
            x_axis: XAxis::Seconds,
            width_px: 600,
            height_px: 300,
            shade: None,
            bands: Vec::new(),
            reference_y: None,
        };
        let svg = waterfall_chart(
            &spec,
            &[
                WaterfallStep {
                    label: "batched".into(),
                    ratio: Some(2.0),
                    note: None,
                },
                WaterfallStep {
                    label: "rust".into(),
                    ratio: Some(0.5),
                    note: None,
                },
                WaterfallStep {
                    label: "tuned".into(),
                    ratio: None,
                    note: Some("excluded".into()),
                },
            ],
            true,
        )
        .expect("draws");
        assert!(svg.starts_with("<svg"));
        // The excluded step is written, not drawn, and leaves the total unknown.
        for text in [
            "batched", "rust", "tuned", "total", "×2.00", "÷2.00", "excluded", "n/a",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        assert!(!svg.contains("http"));
    }
}

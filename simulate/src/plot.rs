//! The trade-off chart: median detection delay against false alarms, one
//! labelled point per policy.

use plotters::prelude::*;

use crate::SimulateError;
use crate::report::{Report, duration, number};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 680;

/// One colour per recovery threshold, cycled (colour-blind-friendly tones).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
];

/// Draw the report as an SVG chart and return the SVG text.
///
/// The x axis is false alarms per engine-day (log scale); policies with no
/// false alarm in the run sit on the left edge, below one alarm in the whole
/// run. The y axis is the median detection delay in seconds. Policies with the
/// same recovery threshold share a colour and a line. Deterministic: the same
/// report gives the same bytes.
pub fn render_svg(report: &Report) -> Result<String, SimulateError> {
    let mut svg = String::new();
    draw(report, &mut svg).map_err(|e| SimulateError::Draw(e.to_string()))?;
    Ok(svg)
}

/// A policy as drawn.
struct Point {
    label: String,
    failures: u32,
    recovery: u32,
    false_alarms: f64,
    delay_s: f64,
}

fn draw(report: &Report, svg: &mut String) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let s = &report.scenario;
    let engine_days = s.probes_per_policy as f64 * s.interval_s / 86_400.0;
    // One false alarm in the whole run; a policy with none is drawn below it.
    let resolution = if engine_days > 0.0 {
        1.0 / engine_days
    } else {
        1.0
    };
    let floor = resolution / 2.0;

    let mut points = Vec::new();
    let mut undetected = Vec::new();
    for p in &report.policies {
        match &p.detection.seconds {
            Some(seconds) => points.push(Point {
                label: p.policy.clone(),
                failures: p.failures_threshold,
                recovery: p.recovery_threshold,
                false_alarms: p.false_alarms_per_engine_day.max(floor),
                delay_s: seconds.p50,
            }),
            None => undetected.push(p.policy.as_str()),
        }
    }
    let mut recoveries: Vec<u32> = points.iter().map(|p| p.recovery).collect();
    recoveries.sort_unstable();
    recoveries.dedup();

    let x_max = points
        .iter()
        .map(|p| p.false_alarms)
        .fold(floor * 10.0, f64::max)
        * 3.0;
    let x_min = floor / 2.0;
    let y_max = points
        .iter()
        .map(|p| p.delay_s)
        .fold(s.interval_s, f64::max)
        * 1.15;

    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(78);
    let title = ("sans-serif", 22).into_font().style(FontStyle::Bold);
    header.draw(&Text::new(
        "Which policy? Median detection delay against false alarms",
        (24, 14),
        title,
    ))?;
    let outages = match (s.outage_rate_per_engine_day, s.outage_mean_s) {
        (Some(rate), Some(mean)) => format!(
            "{} outage{} per engine-day (mean {})",
            number(rate),
            if rate == 1.0 { "" } else { "s" },
            duration(mean)
        ),
        _ => format!(
            "{} fixed outages per engine",
            s.fixed_outages_per_engine.unwrap_or(0)
        ),
    };
    let subtitle = format!(
        "{} engines × {} days, a probe every {}, {}% of probes flake, {}, seed {}",
        s.engines,
        number(s.days),
        duration(s.interval_s),
        number(s.flake * 100.0),
        outages,
        s.seed
    );
    let small = ("sans-serif", 14).into_font().color(&RGBColor(60, 60, 60));
    header.draw(&Text::new(subtitle, (24, 44), small.clone()))?;
    let mut note = format!(
        "Lower is faster detection, left is quieter. fN/rM = failures_threshold N, recovery_threshold M. \
         Grey line: 1 false alarm in {} engine-days.",
        number(engine_days)
    );
    if !undetected.is_empty() {
        note.push_str(&format!(
            " Not drawn (no outage detected): {}.",
            undetected.join(", ")
        ));
    }
    header.draw(&Text::new(note, (24, 62), small))?;

    let mut chart = ChartBuilder::on(&body)
        .margin_left(16)
        .margin_right(36)
        .margin_top(10)
        .margin_bottom(10)
        .x_label_area_size(52)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("false alarms per engine-day (log scale)")
        .y_desc("median detection delay (s)")
        .x_label_formatter(&|v| number(*v))
        .y_label_formatter(&|v| number(*v))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;

    // Left of this line: policies with no false alarm in the whole run.
    let edge = RGBColor(150, 150, 150);
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(resolution, 0.0), (resolution, y_max)],
        edge.stroke_width(1),
    )))?;
    chart.draw_series(std::iter::once(
        EmptyElement::at((resolution, y_max))
            + Text::new(
                "← no false alarm in the run",
                (5, 6),
                ("sans-serif", 13).into_font().color(&edge),
            ),
    ))?;

    let stack = recoveries.len();
    for (index, &recovery) in recoveries.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let mut line: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.recovery == recovery)
            .map(|p| (p.false_alarms, p.delay_s))
            .collect();
        line.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.total_cmp(&b.0)));
        chart
            .draw_series(LineSeries::new(line, colour.mix(0.55).stroke_width(2)))?
            .label(format!(
                "r{recovery}: recover after {recovery} healthy probe{}",
                if recovery == 1 { "" } else { "s" }
            ))
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
        chart.draw_series(
            points
                .iter()
                .filter(|p| p.recovery == recovery)
                .map(|p| Circle::new((p.false_alarms, p.delay_s), 5, colour.filled())),
        )?;
        // Labels of one failures threshold stack to the right of its
        // rightmost point, one line per recovery threshold, so they neither
        // overlap each other nor cover a point.
        let dy = (index as i32 - (stack as i32 - 1) / 2) * 15 - 7;
        let font = ("sans-serif", 13).into_font().color(&colour);
        chart.draw_series(points.iter().filter(|p| p.recovery == recovery).map(|p| {
            let right = points
                .iter()
                .filter(|q| q.failures == p.failures)
                .map(|q| q.false_alarms)
                .fold(p.false_alarms, f64::max);
            EmptyElement::at((right, p.delay_s)) + Text::new(p.label.clone(), (9, dy), font.clone())
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .draw()?;
    root.present()?;
    Ok(())
}

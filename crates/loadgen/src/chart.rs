//! The SVG chart: latency percentiles and throughput over time, from the report's timeline.
//!
//! Three panels share the time axis: end-to-end latency p50/p90/p99 with the TTFT median; requests
//! per second (successful and failed); output tokens per second. plotters is built with its SVG
//! backend only (no bitmap codecs, no system fonts): the SVG names a generic sans-serif font and
//! the viewer draws the text.

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;

use crate::report::{Percentiles, Report};

const WIDTH: u32 = 1000;
const PANEL_HEIGHT: u32 = 300;

/// One line of a panel.
struct Series {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Writes the chart of `report` to `path`.
pub fn write_svg(report: &Report, path: &Path) -> anyhow::Result<()> {
    let svg = render_svg(report)?;
    std::fs::write(path, svg).with_context(|| format!("writing chart {}", path.display()))
}

/// The chart of `report` as an SVG document.
pub fn render_svg(report: &Report) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, PANEL_HEIGHT * 3)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("drawing the chart: {e}"))?;
        let panels = root.split_evenly((3, 1));
        // Each second's values are drawn at the middle of the second.
        let mid = |t: u64| t as f64 + 0.5;
        let pick = |f: fn(&Percentiles) -> f64, ttft: bool| -> Vec<(f64, f64)> {
            report
                .timeline
                .iter()
                .filter_map(|s| if ttft { s.ttft_ms } else { s.latency_ms }.map(|p| (mid(s.t_s), f(&p))))
                .collect()
        };
        let latency = [
            Series { label: "latency p50", color: BLUE, points: pick(|p| p.p50, false) },
            Series { label: "latency p90", color: RGBColor(230, 140, 0), points: pick(|p| p.p90, false) },
            Series { label: "latency p99", color: RED, points: pick(|p| p.p99, false) },
            Series { label: "TTFT p50", color: RGBColor(0, 150, 0), points: pick(|p| p.p50, true) },
        ];
        let requests = [
            Series {
                label: "ok req/s",
                color: BLUE,
                points: report.timeline.iter().map(|s| (mid(s.t_s), s.ok as f64)).collect(),
            },
            Series {
                label: "failed req/s",
                color: RED,
                points: report.timeline.iter().map(|s| (mid(s.t_s), s.failed as f64)).collect(),
            },
        ];
        let tokens = [Series {
            label: "output tok/s",
            color: RGBColor(120, 60, 170),
            points: report.timeline.iter().map(|s| (mid(s.t_s), s.output_tokens as f64)).collect(),
        }];
        let title = report.config.scenario.as_deref().unwrap_or("llamagate-load");
        let seconds = report.timeline.len().max(1) as f64;
        draw_panel(&panels[0], &format!("{title}: latency (ms, by completion second)"), seconds, &latency)?;
        draw_panel(&panels[1], "requests per second", seconds, &requests)?;
        draw_panel(&panels[2], "output tokens per second", seconds, &tokens)?;
        root.present().map_err(|e| anyhow!("drawing the chart: {e}"))?;
    }
    Ok(svg)
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    seconds: f64,
    series: &[Series],
) -> anyhow::Result<()> {
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing the chart: {e}");
    let top = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..seconds, 0.0..top)
        .map_err(err)?;
    chart.configure_mesh().x_desc("seconds").light_line_style(WHITE.mix(0.0)).draw().map_err(err)?;
    for s in series {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

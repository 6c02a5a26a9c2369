//! SVG plots beside `report.json`: the report→blocked latency CDF (every node's curve
//! and all pairs together) and convergence over time.

use anyhow::Context;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Points of the empirical CDF of `values`: (value, fraction ≤ value).
pub fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / n)).collect()
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e}")
}

/// The chart every plot draws on: x from 0 to `x_max`, y from 0 to 1.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// An 800×500 white SVG canvas at `path`.
fn canvas(path: &Path) -> anyhow::Result<DrawingArea<SVGBackend<'_>, Shift>> {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// A titled chart on `root` with its axes labelled `x_desc` and `y_desc`.
fn chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    x_max: f64,
    (x_desc, y_desc): (&str, &str),
) -> anyhow::Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// Writes the canvas out.
fn present(root: &DrawingArea<SVGBackend<'_>, Shift>, path: &Path) -> anyhow::Result<()> {
    root.present()
        .map_err(err)
        .with_context(|| format!("writing {}", path.display()))
}

/// Draws the latency CDF: one thin line per node, a thick one for all pairs.
pub fn latency_cdf(path: &Path, per_node: &[Vec<f64>], title: &str) -> anyhow::Result<()> {
    let all: Vec<f64> = per_node.iter().flatten().copied().collect();
    let x_max = all.iter().copied().fold(1.0, f64::max) * 1.05;
    let root = canvas(path)?;
    let labels = ("report → blocked latency (ms)", "fraction of pairs");
    let mut chart = chart(&root, title, x_max, labels)?;
    for lat in per_node.iter().filter(|l| !l.is_empty()) {
        chart
            .draw_series(LineSeries::new(cdf(lat), BLUE.mix(0.25)))
            .map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(cdf(&all), BLACK.stroke_width(2)))
        .map_err(err)?
        .label("all nodes")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    present(&root, path)
}

/// Draws convergence over time: fraction of (node, target) pairs blocked.
pub fn convergence(path: &Path, points: &[(u64, f64)], title: &str) -> anyhow::Result<()> {
    let x_max = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64 * 1.05;
    let root = canvas(path)?;
    let labels = ("ms since the first report", "fraction of (node, target) pairs blocked");
    let mut chart = chart(&root, title, x_max, labels)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|(t, f)| (*t as f64, *f)),
            RED.stroke_width(2),
        ))
        .map_err(err)?;
    present(&root, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_ends_at_one_and_is_sorted() {
        let c = cdf(&[3.0, 1.0, 2.0, 2.0]);
        assert_eq!(c, vec![(1.0, 0.25), (2.0, 0.5), (2.0, 0.75), (3.0, 1.0)]);
    }

    #[test]
    fn plots_are_written_as_svg() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cdf.svg");
        latency_cdf(&p, &[vec![1.0, 2.0, 5.0], vec![2.0, 3.0]], "t").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("<svg") && text.contains("polyline"), "{text}");
        let p = dir.path().join("conv.svg");
        convergence(&p, &[(0, 0.0), (10, 0.5), (20, 1.0)], "t").unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains("polyline"));
    }
}

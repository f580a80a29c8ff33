//! SVG plots of the report: grouped bars, one group per distribution, one bar per structure.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{DistributionResult, Figures};

const COLORS: [RGBColor; 3] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
];

/// Writes `lookup.svg`, `inserts.svg` and `bytes_per_key.svg` into `dir`.
pub fn write_alex_plots(dir: &Path, results: &[DistributionResult]) -> Result<(), String> {
    grouped_bars(
        &dir.join("lookup.svg"),
        "Random lookup, ns (lower is better)",
        results,
        |f| f.lookup_ns,
    )?;
    grouped_bars(
        &dir.join("inserts.svg"),
        "Inserts per second, millions (higher is better)",
        results,
        |f| f.inserts_per_s / 1e6,
    )?;
    grouped_bars(
        &dir.join("bytes_per_key.svg"),
        "Bytes per key after inserts (lower is better)",
        results,
        |f| f.bytes_per_key_final,
    )
}

fn grouped_bars(
    path: &Path,
    title: &str,
    results: &[DistributionResult],
    value: impl Fn(&Figures) -> f64,
) -> Result<(), String> {
    let structures = results.first().map_or(0, |r| r.figures.len()).max(1);
    let max = results
        .iter()
        .flat_map(|r| r.figures.iter().map(&value))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let groups = results.len().max(1);
    let width = (structures + 1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..groups as f64 * width, 0.0..max * 1.15)
        .map_err(|e| e.to_string())?;
    let names: Vec<&str> = results.iter().map(|r| r.distribution.name()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&|x| {
            let group = (x / width).floor() as usize;
            let centre = group as f64 * width + width / 2.0;
            if (x - centre).abs() < width / 4.0 {
                names.get(group).copied().unwrap_or("").to_string()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    for s in 0..structures {
        let color = COLORS[s % COLORS.len()];
        let label = results.first().map_or("", |r| r.figures[s].structure);
        chart
            .draw_series(results.iter().enumerate().filter_map(|(g, r)| {
                let v = value(&r.figures[s]);
                let x = g as f64 * width + 0.5 + s as f64;
                v.is_finite()
                    .then(|| Rectangle::new([(x, 0.0), (x + 0.9, v)], color.filled()))
            }))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

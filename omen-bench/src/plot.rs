//! SVG plots of the reports: grouped bars, one group per distribution, one bar per structure
//! (ALEX); lines on log-log axes, one per writer (WAL); lines over time (replicator).

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

/// One line of [`log_lines`].
pub struct Line {
    /// Legend text.
    pub label: String,
    /// Points `(x, y)`, both positive.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed, for baselines.
    pub dashed: bool,
}

const LINE_COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
];

const BASELINE_COLORS: [RGBColor; 2] = [RGBColor(0x22, 0x22, 0x22), RGBColor(0x94, 0x67, 0xbd)];

/// Writes a line chart with logarithmic x and y axes to `path`. Solid lines and dashed lines
/// (baselines) take their own colours in order. The x axis runs on past the last point to
/// leave room for the legend, which would otherwise hide points.
pub fn log_lines(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    lines: &[Line],
) -> Result<(), String> {
    let points = || lines.iter().flat_map(|l| l.points.iter().copied());
    let positive = |v: &f64| v.is_finite() && *v > 0.0;
    let (x_min, x_max) = bounds(points().map(|p| p.0).filter(positive));
    let (y_min, y_max) = bounds(points().map(|p| p.1).filter(positive));
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x_min / 1.3..x_max * 4.0).log_scale(),
            (y_min / 2.0..y_max * 2.0).log_scale(),
        )
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| si(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    let (mut solid, mut dashed) = (0, 0);
    for line in lines {
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .copied()
            .filter(|(x, y)| positive(x) && positive(y))
            .collect();
        let color = if line.dashed {
            dashed += 1;
            BASELINE_COLORS[(dashed - 1) % BASELINE_COLORS.len()]
        } else {
            solid += 1;
            LINE_COLORS[(solid - 1) % LINE_COLORS.len()]
        };
        let style = color.stroke_width(2);
        let dashed_line = line.dashed;
        if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(points.clone(), 8, 5, style))
                .map_err(|e| e.to_string())?;
        } else {
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| e.to_string())?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                // Two dashes for a dashed line, one stroke for a solid one.
                let gap = if dashed_line { 4 } else { 0 };
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (10 - gap / 2, 0)], color.stroke_width(2))
                    + PathElement::new(vec![(10 + gap / 2, 0), (20, 0)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// The smallest and largest of `values`, or `(1, 10)` if there are none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if min.is_finite() && max >= min {
        (min, max)
    } else {
        (1.0, 10.0)
    }
}

/// `12K`, `4.5M`: short axis labels for values spanning decades.
fn si(value: f64) -> String {
    let (scaled, suffix) = match value {
        v if v >= 1e6 => (v / 1e6, "M"),
        v if v >= 1e3 => (v / 1e3, "K"),
        v => (v, ""),
    };
    if scaled >= 10.0 || scaled.fract() == 0.0 {
        format!("{scaled:.0}{suffix}")
    } else {
        format!("{scaled:.1}{suffix}")
    }
}

/// Writes a line chart with linear axes from zero to `path`, one solid line per entry (no
/// markers: the lines may have thousands of points). For series over time.
pub fn linear_lines(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    lines: &[Line],
) -> Result<(), String> {
    let points = || lines.iter().flat_map(|l| l.points.iter().copied());
    let finite = |v: &f64| v.is_finite();
    let x_max = points().map(|p| p.0).filter(finite).fold(0.0f64, f64::max);
    let y_max = points().map(|p| p.1).filter(finite).fold(0.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max.max(1e-9) * 1.02, 0.0..y_max.max(1e-9) * 1.15)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(WHITE)
        .y_label_formatter(&|y| si(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, line) in lines.iter().enumerate() {
        let color = LINE_COLORS[i % LINE_COLORS.len()];
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .copied()
            .filter(|(x, y)| finite(x) && finite(y))
            .collect();
        let style = color.stroke_width(2);
        let series = if line.dashed {
            chart.draw_series(DashedLineSeries::new(points, 8, 5, style))
        } else {
            chart.draw_series(LineSeries::new(points, style))
        };
        series
            .map_err(|e| e.to_string())?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

//! The incentives chart: mean download time per upload class (the median of
//! the rounds' class means), one bar per choking policy side by side; SVG
//! and PNG in the bundled font.

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{class_order, ClassMean};
use super::IncentivesConfig;

/// Draws `<base>.svg` and `<base>.png`.
pub fn write(base: &Path, cfg: &IncentivesConfig, means: &[ClassMean]) -> anyhow::Result<()> {
    crate::chart::register_font()?;
    let svg = base.with_extension("svg");
    let png = base.with_extension("png");
    {
        let root = SVGBackend::new(&svg, (1000, 640)).into_drawing_area();
        draw(&root, cfg, means).with_context(|| format!("cannot draw {}", svg.display()))?;
    }
    let root = BitMapBackend::new(&png, (1000, 640)).into_drawing_area();
    draw(&root, cfg, means).with_context(|| format!("cannot draw {}", png.display()))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    cfg: &IncentivesConfig,
    means: &[ClassMean],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    let classes = class_order(cfg);
    let y_max = means
        .iter()
        .flat_map(|m| m.per_round.iter().copied())
        .fold(1.0_f64, f64::max)
        * 1.2;
    root.fill(&WHITE).map_err(err)?;
    let caption = format!(
        "Mean download time per upload class (median of {} round{}): F = {}, u_s = {}{}",
        cfg.runs,
        if cfg.runs == 1 { "" } else { "s" },
        cfg.size,
        cfg.server_upload,
        if cfg.leave_when_done {
            ", leechers leave when done"
        } else {
            ", leechers seed on"
        }
    );
    let n = classes.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..n, 0.0..y_max)
        .map_err(err)?;
    let labels = classes.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(classes.len() * 2 + 1)
        .x_label_formatter(&move |x| {
            let k = x.floor();
            if (x - k - 0.5).abs() < 0.01 {
                labels.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("upload class")
        .y_desc("mean download time (s)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let colors = [
        RGBColor(30, 90, 200),
        RGBColor(200, 60, 40),
        RGBColor(60, 150, 60),
    ];
    let k = cfg.policies.len().max(1) as f64;
    let width = 0.8 / k;
    for (pi, policy) in cfg.policies.iter().enumerate() {
        let color = colors[pi % colors.len()];
        let bars: Vec<(f64, f64, f64)> = classes
            .iter()
            .enumerate()
            .filter_map(|(ci, class)| {
                let m = means
                    .iter()
                    .find(|m| &m.policy == policy && &m.class == class)?;
                if m.per_round.is_empty() {
                    return None;
                }
                let x0 = ci as f64 + 0.1 + pi as f64 * width;
                Some((x0, x0 + width * 0.9, m.median()))
            })
            .collect();
        chart
            .draw_series(
                bars.iter()
                    .map(|&(a, b, y)| Rectangle::new([(a, 0.0), (b, y)], color.filled())),
            )
            .map_err(err)?
            .label(format!("--choke {policy}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled()));
        // Each round's class mean as a small mark, so the spread shows.
        let marks: Vec<(f64, f64)> = classes
            .iter()
            .enumerate()
            .flat_map(|(ci, class)| {
                let x = ci as f64 + 0.1 + pi as f64 * width + width * 0.45;
                means
                    .iter()
                    .filter(move |m| &m.policy == policy && &m.class == class)
                    .flat_map(|m| m.per_round.clone())
                    .map(move |y| (x, y))
            })
            .collect();
        chart
            .draw_series(marks.into_iter().map(|p| Circle::new(p, 3, BLACK.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

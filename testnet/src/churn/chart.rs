//! The churn chart: each leecher's download time against its arrival time,
//! selfish and altruistic leechers in two colours, quitters hollow, the
//! seeder's departure as a vertical line; SVG and PNG, in the bundled font.

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::ChurnReport;
use super::ChurnConfig;

/// Draws `<base>.svg` and `<base>.png`.
pub fn write(base: &Path, cfg: &ChurnConfig, r: &ChurnReport) -> anyhow::Result<()> {
    crate::chart::register_font()?;
    let svg = base.with_extension("svg");
    let png = base.with_extension("png");
    {
        let root = SVGBackend::new(&svg, (1000, 640)).into_drawing_area();
        draw(&root, cfg, r).with_context(|| format!("cannot draw {}", svg.display()))?;
    }
    let root = BitMapBackend::new(&png, (1000, 640)).into_drawing_area();
    draw(&root, cfg, r).with_context(|| format!("cannot draw {}", png.display()))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    cfg: &ChurnConfig,
    r: &ChurnReport,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    let pts: Vec<(f64, f64, bool, bool)> = r
        .peers
        .iter()
        .filter_map(|p| {
            let d = p.download_time()?;
            Some((p.arrive.as_secs_f64(), d.as_secs_f64(), p.selfish, p.quits))
        })
        .collect();
    let x_max = r
        .peers
        .iter()
        .map(|p| p.arrive.as_secs_f64())
        .chain(r.seeder.at.map(|d| d.as_secs_f64()))
        .fold(1.0_f64, f64::max)
        * 1.08;
    let y_max = pts.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.15;
    root.fill(&WHITE).map_err(err)?;
    let caption = format!(
        "Churn: {} leechers at {}/s, p(selfish) = {}, stay {} s, F = {}, u = {}, u_s = {}; {}/{} verified",
        r.peers.len(),
        cfg.plan.rate,
        cfg.plan.selfish,
        cfg.stay.as_secs(),
        cfg.size,
        cfg.upload,
        cfg.server_upload,
        r.verified(),
        r.peers.len()
    );
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("arrival time (s)")
        .y_desc("download time (s, time away included)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    if let Some(at) = r.seeder.at {
        let x = at.as_secs_f64();
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(LineSeries::new(
                [(x, 0.0), (x, y_max)],
                grey.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!(
                "seeder leaves ({:.2} copies uploaded)",
                r.seeder.uploaded as f64 / cfg.size.0 as f64
            ))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], grey.stroke_width(2)));
    }
    let selfish = RGBColor(200, 60, 40);
    let altruistic = RGBColor(30, 90, 200);
    for (is_selfish, quits, color, label) in [
        (true, false, selfish, "selfish (leaves on finishing)"),
        (false, false, altruistic, "altruistic (stays T s)"),
        (true, true, selfish, "selfish, quit and resumed once"),
        (false, true, altruistic, "altruistic, quit and resumed once"),
    ] {
        let these: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.2 == is_selfish && p.3 == quits)
            .map(|p| (p.0, p.1))
            .collect();
        if these.is_empty() {
            continue;
        }
        let style = if quits {
            color.stroke_width(2)
        } else {
            color.filled()
        };
        chart
            .draw_series(these.into_iter().map(move |p| Circle::new(p, 6, style)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 12, y), 6, style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

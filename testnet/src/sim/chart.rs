//! The simulator's chart: distribution time against N on log-log axes (N
//! spans 10 to 10,000), the client-server and P2P bounds as lines and the
//! simulated times as points, one series per policy. Drawn with plotters
//! like [`crate::chart`], in its bundled font.

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::bound::Params;

/// One series of simulated points: a label and (N, seconds) pairs.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text, e.g. the policies.
    pub label: String,
    /// Simulated distribution times.
    pub points: Vec<(usize, f64)>,
}

/// Draws the bounds for `params` (its `n` ignored) over N in `[n_min, n_max]` and `series`, to `path` (SVG).
pub fn write_svg(
    path: &Path,
    params: Params,
    n_min: usize,
    n_max: usize,
    series: &[Series],
) -> anyhow::Result<()> {
    crate::chart::register_font()?;
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    draw(&root, params, n_min.max(1), n_max.max(2), series)
        .with_context(|| format!("cannot draw {}", path.display()))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    params: Params,
    n_min: usize,
    n_max: usize,
    series: &[Series],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    let at = |n: usize| Params { n, ..params };
    // Enough samples for smooth lines on a log axis.
    let ns: Vec<usize> = {
        let mut v: Vec<usize> = (0..=200)
            .map(|k| {
                let f = (n_min as f64).ln()
                    + (k as f64 / 200.0) * ((n_max as f64).ln() - (n_min as f64).ln());
                f.exp().round() as usize
            })
            .collect();
        v.dedup();
        v
    };
    let cs: Vec<(f64, f64)> = ns
        .iter()
        .map(|&n| (n as f64, at(n).client_server()))
        .collect();
    let p2p: Vec<(f64, f64)> = ns.iter().map(|&n| (n as f64, at(n).p2p())).collect();
    let ys = cs
        .iter()
        .chain(&p2p)
        .map(|p| p.1)
        .chain(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let y_max = ys.clone().fold(1.0_f64, f64::max) * 1.5;
    let y_min = ys.fold(f64::MAX, f64::min).max(0.01) / 1.5;

    root.fill(&WHITE).map_err(err)?;
    let caption = format!(
        "Simulated distribution time of F = {} (u = {}, u_s = {}; log-log)",
        params.size, params.upload, params.server_upload
    );
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (n_min as f64 * 0.8..n_max as f64 * 1.25).log_scale(),
            (y_min..y_max).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("N (peers)")
        .y_desc("distribution time (s)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        // A log axis has a minor line per unit; they read as a grey band.
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let cs_color = RGBColor(200, 60, 40);
    let p2p_color = RGBColor(30, 90, 200);
    chart
        .draw_series(LineSeries::new(cs, cs_color.stroke_width(2)))
        .map_err(err)?
        .label("client-server bound")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], cs_color.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(p2p, p2p_color.stroke_width(2)))
        .map_err(err)?
        .label("P2P bound")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], p2p_color.stroke_width(2)));
    let palette = [
        RGBColor(20, 20, 20),
        RGBColor(40, 160, 60),
        RGBColor(230, 140, 20),
        RGBColor(150, 60, 180),
        RGBColor(0, 150, 160),
        RGBColor(120, 120, 120),
    ];
    for (i, s) in series.iter().enumerate() {
        let color = palette[i % palette.len()];
        let pts: Vec<(f64, f64)> = s.points.iter().map(|&(n, t)| (n as f64, t)).collect();
        chart
            .draw_series(pts.iter().map(move |&p| Circle::new(p, 5, color.filled())))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| Circle::new((x + 12, y), 5, color.filled()));
        chart
            .draw_series(LineSeries::new(pts, color.mix(0.5).stroke_width(1)))
            .map_err(err)?;
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

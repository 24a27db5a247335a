//! The distribution-time chart, like the textbook figure: minimum
//! distribution time against N, the client-server and P2P bounds as lines
//! and the measured times as points; written as SVG and PNG.
//!
//! Text is laid out with a bundled subset of DejaVu Sans (see
//! `assets/FONT-LICENSE`), so no system font or fontconfig is needed.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::bound::Params;
use crate::nsrun::Mode;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

/// What the time axis shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeAxis {
    /// Seconds.
    #[default]
    Seconds,
    /// Multiples of F/u, the time one peer needs to upload the file: the
    /// textbook's axis, whose F/u is an hour; ours is seconds, so the caption
    /// says the axis is scaled.
    FileTimes,
}

/// One measured point.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// Number of peers.
    pub n: usize,
    /// P2P or client-server.
    pub mode: Mode,
    /// Measured distribution time in seconds.
    pub seconds: f64,
}

/// Draws the chart for bounds `params` (its `n` is ignored) over N = 0..=`max_n`
/// with the measured `points`, to `<base>.svg` and `<base>.png`.
pub fn write(
    base: &Path,
    params: Params,
    max_n: usize,
    points: &[Point],
    axis: TimeAxis,
) -> anyhow::Result<()> {
    register_font()?;
    let svg = base.with_extension("svg");
    let png = base.with_extension("png");
    let size = (1000, 640);
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw(&root, params, max_n, points, axis)
            .with_context(|| format!("cannot draw {}", svg.display()))?;
    }
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw(&root, params, max_n, points, axis)
            .with_context(|| format!("cannot draw {}", png.display()))?;
    }
    Ok(())
}

/// Registers the bundled font as "sans-serif" for every chart (once).
pub fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the bundled chart font is unreadable"))
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    params: Params,
    max_n: usize,
    points: &[Point],
    axis: TimeAxis,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let max_n = max_n.max(1);
    let unit = match axis {
        TimeAxis::Seconds => 1.0,
        TimeAxis::FileTimes => params.file_time(),
    };
    let at = |n: usize| Params { n, ..params };
    let cs: Vec<(f64, f64)> = (0..=max_n)
        .map(|n| (n as f64, at(n).client_server() / unit))
        .collect();
    let p2p: Vec<(f64, f64)> = (0..=max_n)
        .map(|n| (n as f64, at(n).p2p() / unit))
        .collect();
    let points: Vec<Point> = points
        .iter()
        .map(|p| Point {
            seconds: p.seconds / unit,
            ..*p
        })
        .collect();
    let y_max = cs
        .iter()
        .chain(&p2p)
        .map(|p| p.1)
        .chain(points.iter().map(|p| p.seconds))
        .fold(1.0_f64, f64::max)
        * 1.08;

    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut download = String::from("downloads uncapped");
    if let Some(d) = params.download {
        download = format!("d_min = {d}");
    }
    let (caption, y_desc) = match axis {
        TimeAxis::Seconds => (
            format!(
                "Distribution time of F = {} to N peers (u = {}, u_s = {}, {download})",
                params.size, params.upload, params.server_upload
            ),
            "minimum distribution time (s)".to_string(),
        ),
        TimeAxis::FileTimes => (
            format!(
                "Time axis scaled, F/u = {unit:.1} s for the book's 1 hour (F = {}, u = {}, u_s = {}, {download})",
                params.size, params.upload, params.server_upload
            ),
            format!("minimum distribution time (units of F/u = {unit:.1} s)"),
        ),
    };
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..(max_n as f64 + 0.5), 0.0..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("N (peers)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if y_max < 10.0 {
                format!("{y:.1}")
            } else {
                format!("{y:.0}")
            }
        })
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;

    let cs_color = RGBColor(200, 60, 40);
    let p2p_color = RGBColor(30, 90, 200);
    chart
        .draw_series(LineSeries::new(cs, cs_color.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?
        .label("client-server bound")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], cs_color.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(p2p, p2p_color.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?
        .label("P2P bound")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], p2p_color.stroke_width(2)));
    for (mode, color, label) in [
        (Mode::ClientServer, cs_color, "client-server measured"),
        (Mode::P2p, p2p_color, "P2P measured (kadswarm)"),
    ] {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.mode == mode)
            .map(|p| (p.n as f64, p.seconds))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(
                pts.into_iter()
                    .map(move |(x, y)| Circle::new((x, y), 5, color.filled())),
            )
            .map_err(|e| anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 12, y), 5, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{ByteSize, Rate};

    #[test]
    fn writes_svg_and_png_with_text() {
        let dir = std::env::temp_dir().join(format!("testnet-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let params = Params {
            n: 0,
            size: ByteSize(16 << 20),
            server_upload: Rate(32_000_000),
            upload: Rate(8_000_000),
            download: None,
        };
        let points = [
            Point {
                n: 5,
                mode: Mode::P2p,
                seconds: 10.0,
            },
            Point {
                n: 5,
                mode: Mode::ClientServer,
                seconds: 22.0,
            },
        ];
        let base = dir.join("chart");
        write(&base, params, 8, &points, TimeAxis::Seconds).unwrap();
        let svg = std::fs::read_to_string(base.with_extension("svg")).unwrap();
        assert!(
            svg.contains("P2P bound") && svg.contains("N (peers)"),
            "{svg}"
        );
        // The textbook axis: F/u = 16 MiB / 8 Mbit/s = 16.8 s, stated as scaled.
        write(&base, params, 8, &points, TimeAxis::FileTimes).unwrap();
        let svg = std::fs::read_to_string(base.with_extension("svg")).unwrap();
        assert!(
            svg.contains("Time axis scaled") && svg.contains("units of F/u = 16.8 s"),
            "{svg}"
        );
        let png = std::fs::read(base.with_extension("png")).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

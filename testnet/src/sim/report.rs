//! What a run prints and writes: the per-peer CSV and the one-line summary
//! (distribution time, the P2P bound from [`crate::bound`], their ratio).
//! Both are pure functions of the outcome, so the same seed gives the same bytes.

use std::fmt::Write as _;

use crate::bound::Params;
use crate::units::{ByteSize, Rate};

use super::config::{Arrivals, SimConfig};
use super::queue::{Nanos, SECOND};
use super::world::{Outcome, UplinkBin, UPLINK_BIN};

/// Seconds from virtual nanoseconds.
pub fn secs(t: Nanos) -> f64 {
    t as f64 / SECOND as f64
}

/// The CSV: one line per leecher.
pub fn csv(config: &SimConfig, outcome: &Outcome) -> String {
    let mut out = String::from(
        "peer,class,upload_bps,arrival_s,finish_s,download_s,left_s,uploaded_bytes,downloaded_bytes\n",
    );
    let opt = |t: Option<Nanos>| t.map_or(String::new(), |t| format!("{:.6}", secs(t)));
    for p in &outcome.peers {
        let class = &config.classes[p.class];
        let download = p
            .finish
            .map_or(String::new(), |f| format!("{:.6}", secs(f - p.arrival)));
        let _ = writeln!(
            out,
            "{},{},{},{:.6},{},{},{},{},{}",
            p.id,
            class.label(),
            class.upload.map_or(0, |r| r.0),
            secs(p.arrival),
            opt(p.finish),
            download,
            opt(p.left),
            p.uploaded,
            p.downloaded,
        );
    }
    out
}

/// Distribution time: from the first arrival until the last leecher held every chunk.
pub fn distribution_time(outcome: &Outcome) -> Option<f64> {
    let first = outcome.peers.iter().map(|p| p.arrival).min()?;
    let last = outcome
        .peers
        .iter()
        .map(|p| p.finish)
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()?;
    Some(secs(last - first))
}

/// The textbook P2P lower bound for this run (mean leecher upload; free riders count zero).
pub fn bound(config: &SimConfig) -> Params {
    Params {
        n: config.peers,
        size: ByteSize(config.size),
        server_upload: config.server_upload,
        upload: Rate(config.mean_upload().round() as u64),
        download: config.download,
    }
}

/// One line: parameters, distribution time, the bound and the ratio.
pub fn summary(config: &SimConfig, outcome: &Outcome) -> String {
    let params = bound(config);
    let finished = outcome.peers.iter().filter(|p| p.finish.is_some()).count();
    let arrivals = match config.arrivals {
        Arrivals::FlashCrowd => "flash crowd".to_string(),
        Arrivals::Poisson { per_sec } => format!("poisson {per_sec}/s"),
    };
    let classes: Vec<String> = config
        .classes
        .iter()
        .map(|c| {
            let w = format!("{:.3}", c.weight);
            let w = w.trim_end_matches('0').trim_end_matches('.');
            format!("{w}x{}", c.label())
        })
        .collect();
    let mut line = format!(
        "sim N={} F={} chunk={} u={} u_s={} latency={}ms {}{} pick={:?} choke={:?} seed={}: ",
        config.peers,
        ByteSize(config.size),
        ByteSize(u64::from(outcome.chunk_size)),
        classes.join("+"),
        config.server_upload.to_string().replace(' ', ""),
        config.latency.as_millis(),
        if config.wire_overhead > 0.0 {
            format!("wire+{:.1}% ", 100.0 * config.wire_overhead)
        } else {
            String::new()
        },
        arrivals,
        config.pick,
        config.choke,
        config.seed,
    );
    match distribution_time(outcome) {
        Some(d) if config.arrivals == Arrivals::FlashCrowd => {
            let b = params.p2p();
            let _ = write!(
                line,
                "distribution time {d:.3} s, P2P bound {b:.3} s, ratio {:.3} ({finished}/{} finished)",
                d / b,
                config.peers
            );
        }
        Some(d) => {
            let mean = mean_download(outcome).unwrap_or(0.0);
            let _ = write!(
                line,
                "last finish {d:.3} s after the first arrival, mean download time {mean:.3} s ({finished}/{} finished)",
                config.peers
            );
        }
        None => {
            let _ = write!(
                line,
                "NOT FINISHED: {finished}/{} leechers complete at {:.3} s (time limit)",
                config.peers,
                secs(outcome.end)
            );
        }
    }
    line
}

/// Mean time from arrival to finish over the leechers that finished.
pub fn mean_download(outcome: &Outcome) -> Option<f64> {
    let times: Vec<f64> = outcome
        .peers
        .iter()
        .filter_map(|p| p.finish.map(|f| secs(f - p.arrival)))
        .collect();
    (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64)
}

/// Mean download time per class, in class order (`None` where nobody finished).
pub fn mean_by_class(config: &SimConfig, outcome: &Outcome) -> Vec<(String, usize, Option<f64>)> {
    config
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let times: Vec<f64> = outcome
                .peers
                .iter()
                .filter(|p| p.class == i)
                .filter_map(|p| p.finish.map(|f| secs(f - p.arrival)))
                .collect();
            let n = outcome.peers.iter().filter(|p| p.class == i).count();
            let mean = (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64);
            (c.label(), n, mean)
        })
        .collect()
}

/// The last finish (or the run's end if someone never finished).
fn last_finish(outcome: &Outcome) -> Nanos {
    outcome
        .peers
        .iter()
        .map(|p| p.finish.unwrap_or(outcome.end))
        .max()
        .unwrap_or(outcome.end)
}

/// Busy share of the uplink capacity over `bins`.
fn busy_share(bins: &[UplinkBin]) -> f64 {
    let busy: f64 = bins.iter().map(|b| b.busy).sum();
    let capacity: f64 = bins.iter().map(|b| b.capacity).sum();
    if capacity > 0.0 {
        busy / capacity
    } else {
        0.0
    }
}

/// The uplink CSV: per bin until the last finish, the share of the present
/// peers' uplink capacity that had something to send.
pub fn uplinks_csv(outcome: &Outcome) -> String {
    let mut out = String::from("t_s,busy_share\n");
    let bins = bins_to_finish(outcome);
    for (k, b) in bins.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:.1},{:.4}",
            secs(k as Nanos * UPLINK_BIN),
            busy_share(std::slice::from_ref(b))
        );
    }
    out
}

fn bins_to_finish(outcome: &Outcome) -> &[UplinkBin] {
    let n = last_finish(outcome).div_ceil(UPLINK_BIN) as usize;
    &outcome.uplinks[..n.min(outcome.uplinks.len())]
}

/// One line: how busy the uplinks were until the last finish, over the whole
/// run and its first three seconds and last one.
pub fn uplink_summary(outcome: &Outcome) -> String {
    let bins = bins_to_finish(outcome);
    let per_sec = (SECOND / UPLINK_BIN) as usize;
    let pct = |b: &[UplinkBin]| format!("{:.1} %", 100.0 * busy_share(b));
    let window = |from: usize| {
        &bins[(from * per_sec).min(bins.len())..((from + 1) * per_sec).min(bins.len())]
    };
    let last = &bins[bins.len().saturating_sub(per_sec)..];
    format!(
        "uplinks busy {} of their capacity until the last finish (0-1 s {}, 1-2 s {}, 2-3 s {}, last second {})",
        pct(bins),
        pct(window(0)),
        pct(window(1)),
        pct(window(2)),
        pct(last),
    )
}

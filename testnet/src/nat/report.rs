//! `nat.csv` (one line per leecher and trial, appended as trials finish so
//! an interrupted run keeps what it measured) and the per-topology summary.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::trial::Row;

/// The CSV's columns, in order.
pub const HEADER: &str = "topology,trial,leecher,seeder_nat,leecher_nat,reserved,leecher_reserved,\
direct,time_to_direct_ms,transfer_ok,transfer_ms,bytes_relayed,bytes_direct,punches_tried,\
punches_ok,reachability,nat_reported,error";

/// `nat.csv`, open for appending rows.
pub struct Csv {
    file: File,
    path: std::path::PathBuf,
}

impl Csv {
    /// Creates `path` with the header line.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let mut file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        writeln!(file, "{HEADER}").with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends rows and flushes them to disk.
    pub fn append(&mut self, rows: &[Row]) -> anyhow::Result<()> {
        for r in rows {
            writeln!(self.file, "{}", line(r))
                .with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        self.file
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// One row as a CSV line.
pub fn line(r: &Row) -> String {
    let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    [
        r.topology.clone(),
        r.trial.to_string(),
        r.leecher.clone(),
        r.seeder_nat.clone(),
        r.leecher_nat.clone(),
        r.reserved.to_string(),
        r.leecher_reserved.to_string(),
        r.direct.to_string(),
        opt(r.time_to_direct_ms),
        r.transfer_ok.to_string(),
        opt(r.transfer_ms),
        r.bytes_relayed.to_string(),
        r.bytes_direct.to_string(),
        r.punches_tried.to_string(),
        r.punches_ok.to_string(),
        field(&r.reachability),
        r.nat_reported.to_string(),
        field(&r.error),
    ]
    .join(",")
}

/// A free-text field on one line: its first line only, quoted when it
/// holds a comma or quote.
fn field(s: &str) -> String {
    let first = s.lines().next().unwrap_or("").trim();
    if first.contains([',', '"']) {
        format!("\"{}\"", first.replace('"', "\"\""))
    } else {
        first.to_string()
    }
}

/// The figures of one topology over its trials.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The topology's name.
    pub topology: String,
    /// Trials run.
    pub trials: usize,
    /// Rows (leechers × trials).
    pub leechers: usize,
    /// Rows with a direct connection.
    pub direct: usize,
    /// Rows whose copy verified.
    pub transfers_ok: usize,
    /// Trials in which every copy verified.
    pub trials_all_ok: usize,
    /// Trials in which the seeder held a reservation.
    pub reserved: usize,
    /// Median ms from relayed to direct, over rows that went direct.
    pub median_to_direct_ms: Option<u64>,
    /// Median ms from starting the leechers to a verified copy.
    pub median_transfer_ms: Option<u64>,
    /// Share of session bytes that went direct, over rows that went direct.
    pub direct_share_punched: Option<f64>,
    /// Share of session bytes that went direct, over all rows.
    pub direct_share_all: Option<f64>,
}

/// Summaries per topology, in the order topologies first appear in `rows`;
/// a topology with leechers of several NAT kinds (the swarm) is followed by
/// one summary per kind (`swarm/cone`, …).
pub fn summarize(rows: &[Row]) -> Vec<Summary> {
    let mut order: Vec<&str> = Vec::new();
    for r in rows {
        if !order.contains(&r.topology.as_str()) {
            order.push(&r.topology);
        }
    }
    let mut out = Vec::new();
    for t in order {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.topology == t).collect();
        out.push(summarize_group(t, &rs));
        let mut kinds: Vec<&str> = rs.iter().map(|r| r.leecher_nat.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        if kinds.len() > 1 {
            for kind in kinds {
                let of_kind: Vec<&Row> = rs
                    .iter()
                    .copied()
                    .filter(|r| r.leecher_nat == kind)
                    .collect();
                out.push(summarize_group(&format!("{t}/{kind}"), &of_kind));
            }
        }
    }
    out
}

/// The figures of one group of rows, labelled `label`.
fn summarize_group(label: &str, rs: &[&Row]) -> Summary {
    let mut trials: Vec<u32> = rs.iter().map(|r| r.trial).collect();
    trials.dedup();
    let trials_all_ok = trials
        .iter()
        .filter(|&&k| rs.iter().filter(|r| r.trial == k).all(|r| r.transfer_ok))
        .count();
    let reserved = trials
        .iter()
        .filter(|&&k| rs.iter().any(|r| r.trial == k && r.reserved))
        .count();
    let mut times: Vec<u64> = rs
        .iter()
        .filter(|r| r.direct)
        .filter_map(|r| r.time_to_direct_ms)
        .collect();
    times.sort_unstable();
    let mut transfers: Vec<u64> = rs
        .iter()
        .filter(|r| r.transfer_ok)
        .filter_map(|r| r.transfer_ms)
        .collect();
    transfers.sort_unstable();
    let share = |rows: &mut dyn Iterator<Item = &&Row>| {
        let (d, all) = rows.fold((0u64, 0u64), |(d, all), r| {
            (d + r.bytes_direct, all + r.bytes_direct + r.bytes_relayed)
        });
        (all > 0).then(|| d as f64 / all as f64)
    };
    Summary {
        topology: label.to_string(),
        trials: trials.len(),
        leechers: rs.len(),
        direct: rs.iter().filter(|r| r.direct).count(),
        transfers_ok: rs.iter().filter(|r| r.transfer_ok).count(),
        trials_all_ok,
        reserved,
        median_to_direct_ms: median(&times),
        median_transfer_ms: median(&transfers),
        direct_share_punched: share(&mut rs.iter().filter(|r| r.direct)),
        direct_share_all: share(&mut rs.iter()),
    }
}

/// The median of sorted values (the lower middle one for an even count).
fn median(sorted: &[u64]) -> Option<u64> {
    (!sorted.is_empty()).then(|| sorted[(sorted.len() - 1) / 2])
}

/// The summary as a table for the terminal and `summary.txt`.
pub fn render(summaries: &[Summary]) -> String {
    let mut out = format!(
        "{:<20} {:>7} {:>9} {:>10} {:>9} {:>14} {:>15} {:>12} {:>13}\n",
        "topology",
        "trials",
        "reserved",
        "direct",
        "copies ok",
        "all ok/trials",
        "median->direct",
        "direct bytes",
        "median copy"
    );
    for s in summaries {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", v * 100.0));
        out.push_str(&format!(
            "{:<20} {:>7} {:>9} {:>10} {:>9} {:>14} {:>15} {:>12} {:>13}\n",
            s.topology,
            s.trials,
            format!("{}/{}", s.reserved, s.trials),
            format!("{}/{}", s.direct, s.leechers),
            format!("{}/{}", s.transfers_ok, s.leechers),
            format!("{}/{}", s.trials_all_ok, s.trials),
            s.median_to_direct_ms
                .map_or("-".to_string(), |ms| format!("{ms} ms")),
            pct(s.direct_share_punched),
            s.median_transfer_ms
                .map_or("-".to_string(), |ms| format!("{:.2} s", ms as f64 / 1000.0)),
        ));
    }
    out.push_str(
        "reserved: trials whose seeder held a relay slot; direct: leechers that got a direct \
         connection; copies ok: verified copies; direct bytes: share of the session bytes of \
         leechers that went direct that used the direct connection; median copy: from starting \
         the leechers to a verified copy (LAN speed: no latency or loss emulated).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, trial: u32, direct: bool, ok: bool, relayed: u64, direct_b: u64) -> Row {
        Row {
            topology: t.into(),
            trial,
            direct,
            transfer_ok: ok,
            reserved: true,
            time_to_direct_ms: direct.then_some(u64::from(trial)),
            bytes_relayed: relayed,
            bytes_direct: direct_b,
            ..Row::default()
        }
    }

    #[test]
    fn counts_direct_transfers_and_direct_bytes_per_topology() {
        let rows = vec![
            row("cone-cone", 1, true, true, 10, 990),
            row("cone-cone", 2, false, true, 1000, 0),
            row("cone-cone", 3, true, false, 0, 500),
            row("swarm", 1, true, true, 0, 100),
            row("swarm", 1, false, false, 100, 0),
        ];
        let mut rows = rows;
        rows[3].leecher_nat = "cone".into();
        rows[4].leecher_nat = "symmetric".into();
        let s = summarize(&rows);
        assert_eq!(s.len(), 4, "{s:#?}");
        assert_eq!(s[2].topology, "swarm/cone");
        assert_eq!((s[3].leechers, s[3].direct, s[3].transfers_ok), (1, 0, 0));
        let cc = &s[0];
        assert_eq!(
            (cc.trials, cc.direct, cc.transfers_ok, cc.trials_all_ok),
            (3, 2, 2, 2)
        );
        assert_eq!(cc.median_to_direct_ms, Some(1));
        assert_eq!(cc.direct_share_punched, Some(1490.0 / 1500.0));
        let sw = &s[1];
        assert_eq!((sw.trials, sw.leechers, sw.trials_all_ok), (1, 2, 0));
        assert!(render(&s).contains("2/3"));
    }

    #[test]
    fn free_text_stays_on_one_csv_line() {
        let mut r = row("cone-cone", 1, false, false, 0, 0);
        r.error = "leecher exited, badly \"x\"\n  last lines of log".into();
        let l = line(&r);
        assert!(!l.contains('\n'));
        assert!(l.ends_with("\"leecher exited, badly \"\"x\"\"\""), "{l}");
        let clean = line(&row("cone-cone", 1, true, true, 1, 2));
        assert_eq!(clean.split(',').count(), HEADER.split(',').count());
    }
}

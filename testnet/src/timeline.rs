//! A CSV of every stats snapshot the nodes wrote during a distribution
//! (`timeline.csv` in the run folder): who had how much, sent and received
//! how much, and saw how many peers, when. The raw material for finding out
//! why a run fell short of its bound (idle uplinks, late peer discovery).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::stats::NodeStats;

/// Appends snapshots to a CSV file; write errors disable it with one warning.
#[derive(Debug)]
pub struct Timeline {
    out: Option<BufWriter<File>>,
    started: Instant,
}

impl Timeline {
    /// Creates `path` with its header; times are measured from `started`.
    pub fn create(path: &Path, started: Instant) -> anyhow::Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "t_s,node,have,total,uploaded,downloaded,peers")
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            out: Some(out),
            started,
        })
    }

    /// Records `node`'s snapshot as seen now.
    pub fn record(&mut self, node: &str, s: &NodeStats) {
        let Some(out) = &mut self.out else {
            return;
        };
        let t = self.started.elapsed().as_secs_f64();
        let line = writeln!(
            out,
            "{t:.2},{node},{},{},{},{},{}",
            s.have, s.total, s.uploaded, s.downloaded, s.peers
        );
        if let Err(e) = line {
            eprintln!("testnet: warning: timeline disabled: {e}");
            self.out = None;
        }
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        if let Some(out) = &mut self.out {
            let _ = out.flush();
        }
    }
}

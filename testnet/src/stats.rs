//! Reading the JSON stats file that a node rewrites about every 500 ms
//! (`--stats-file`), and the transfer rate between two of its snapshots.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use serde::Deserialize;

/// One snapshot of a node's counters, as written by `node --stats-file`.
///
/// Unknown fields are ignored so the node can add more without breaking us.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct NodeStats {
    /// The node's libp2p peer ID (`12D3…`).
    pub peer_id: String,
    /// Chunk bytes this node sent to other peers.
    pub uploaded: u64,
    /// Chunk bytes this node received from other peers.
    pub downloaded: u64,
    /// Chunks held and verified.
    pub have: u64,
    /// Chunks in the content (0 when the manifest is not known yet, or for `join`).
    pub total: u64,
    /// Connected peers.
    pub peers: u64,
}

impl NodeStats {
    /// Parses one stats file's contents.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    /// Fraction of chunks held, 0.0 to 1.0 (0.0 while the total is unknown).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            (self.have as f64 / self.total as f64).min(1.0)
        }
    }
}

/// A node's stats file, keeping the newest snapshot and the one before it.
#[derive(Debug)]
pub struct StatsFile {
    path: PathBuf,
    current: Option<Snapshot>,
    previous: Option<Snapshot>,
}

/// Stats with the time the node wrote them (the file's modification time).
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When the node wrote the file.
    pub written: SystemTime,
    /// What it wrote.
    pub stats: NodeStats,
}

impl StatsFile {
    /// Watches `path`; nothing is read until [`StatsFile::refresh`].
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            current: None,
            previous: None,
        }
    }

    /// Where the node writes its stats.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file if the node rewrote it; true when there was a new
    /// snapshot. A missing file (node not up yet) is not an error; an
    /// unreadable or garbled one is.
    pub fn refresh(&mut self) -> anyhow::Result<bool> {
        let written = match std::fs::metadata(&self.path) {
            Ok(m) => m.modified()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot stat {}", self.path.display()))
            }
        };
        if self.current.as_ref().is_some_and(|c| c.written == written) {
            return Ok(false);
        }
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            // Replaced between stat and read: the next refresh picks it up.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()))
            }
        };
        let stats = NodeStats::parse(&text)
            .with_context(|| format!("bad stats JSON in {}", self.path.display()))?;
        self.previous = self.current.replace(Snapshot { written, stats });
        Ok(true)
    }

    /// The newest snapshot, if the node has written one.
    pub fn current(&self) -> Option<&Snapshot> {
        self.current.as_ref()
    }

    /// The newest stats, if any.
    pub fn stats(&self) -> Option<&NodeStats> {
        self.current.as_ref().map(|s| &s.stats)
    }

    /// Download and upload rates in bytes per second between the last two snapshots.
    pub fn rates(&self) -> Option<(f64, f64)> {
        let (cur, prev) = (self.current.as_ref()?, self.previous.as_ref()?);
        let dt = cur.written.duration_since(prev.written).ok()?.as_secs_f64();
        if dt <= 0.0 {
            return None;
        }
        let down = cur.stats.downloaded.saturating_sub(prev.stats.downloaded) as f64 / dt;
        let up = cur.stats.uploaded.saturating_sub(prev.stats.uploaded) as f64 / dt;
        Some((down, up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_format() {
        let text = r#"{"peer_id":"12D3KooWabc","uploaded":1048576,"downloaded":262144,
                       "have":5,"total":256,"peers":3}"#;
        let s = NodeStats::parse(text).unwrap();
        assert_eq!(
            s,
            NodeStats {
                peer_id: "12D3KooWabc".into(),
                uploaded: 1 << 20,
                downloaded: 1 << 18,
                have: 5,
                total: 256,
                peers: 3,
            }
        );
        assert!((s.fraction() - 5.0 / 256.0).abs() < 1e-9);
    }

    #[test]
    fn ignores_unknown_fields_and_rejects_missing_ones() {
        let extra = r#"{"peer_id":"p","uploaded":0,"downloaded":0,"have":0,"total":0,
                        "peers":0,"choked":2}"#;
        let s = NodeStats::parse(extra).unwrap();
        assert_eq!(s.fraction(), 0.0);
        assert!(NodeStats::parse(r#"{"peer_id":"p","uploaded":0}"#).is_err());
        assert!(NodeStats::parse(
            r#"{"peer_id":"p","uploaded":-1,"downloaded":0,"have":0,"total":0,"peers":0}"#
        )
        .is_err());
    }

    #[test]
    fn reads_files_and_computes_rates() {
        let dir = std::env::temp_dir().join(format!("testnet-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stats.json");
        let mut file = StatsFile::new(path.clone());
        file.refresh().unwrap();
        assert!(file.stats().is_none(), "missing file is not an error");

        let write = |downloaded: u64, mtime_secs: u64| {
            let json = format!(
                r#"{{"peer_id":"p","uploaded":0,"downloaded":{downloaded},"have":1,"total":4,"peers":1}}"#
            );
            std::fs::write(&path, json).unwrap();
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(mtime_secs);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        write(1000, 100);
        file.refresh().unwrap();
        assert_eq!(file.stats().unwrap().downloaded, 1000);
        assert_eq!(file.rates(), None);
        write(5000, 102);
        file.refresh().unwrap();
        assert_eq!(file.rates(), Some((2000.0, 0.0)));

        std::fs::write(&path, "{garbled").unwrap();
        assert!(file.refresh().is_err());
        assert_eq!(
            file.stats().unwrap().downloaded,
            5000,
            "last good snapshot kept"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

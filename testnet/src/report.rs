//! What one distribution measured: time, per-node byte counts, SHA-256 of
//! every copy; and the summary table printed after a run.

use std::time::Duration;

use crate::stats::NodeStats;
use crate::units::{self, ByteSize};

/// What a successful distribution measured.
#[derive(Debug)]
pub struct Report {
    /// File size.
    pub size: ByteSize,
    /// From starting the leechers until the last one printed its path.
    pub distribution: Duration,
    /// Final stats of the seeder and each leecher (in that order).
    pub nodes: Vec<NodeReport>,
    /// SHA-256 of the generated file.
    pub source_sha256: String,
}

/// One node's share of the work.
#[derive(Debug)]
pub struct NodeReport {
    /// `seeder` or `leecher-<k>`.
    pub name: String,
    /// Last stats it wrote (`None` if it never wrote any).
    pub stats: Option<NodeStats>,
    /// Leechers: when it finished, from the start of the distribution.
    pub done: Option<Duration>,
    /// Leechers: SHA-256 of its copy.
    pub sha256: Option<String>,
}

impl Report {
    /// Leecher copies whose SHA-256 differs from the source.
    pub fn mismatches(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.sha256.as_ref().is_some_and(|h| *h != self.source_sha256))
            .count()
    }

    /// Renders the summary printed at the end.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let leechers = self.nodes.len().saturating_sub(1);
        let secs = self.distribution.as_secs_f64();
        let aggregate = if secs > 0.0 {
            leechers as f64 * self.size.0 as f64 / secs
        } else {
            0.0
        };
        out.push_str(&format!(
            "Distributed {} to {leechers} leechers in {} (aggregate {} into the swarm).\n\n",
            self.size,
            units::secs(self.distribution),
            units::rate(aggregate),
        ));

        out.push_str(&format!(
            "{:<10}  {:<12}  {:>10}  {:>10}  {:>10}\n",
            "node", "peer", "uploaded", "downloaded", "done after"
        ));
        let (mut up_total, mut down_total, mut seeder_up) = (0u64, 0u64, 0u64);
        for n in &self.nodes {
            let (peer, up, down) = match &n.stats {
                Some(s) => {
                    up_total += s.uploaded;
                    down_total += s.downloaded;
                    if n.done.is_none() {
                        seeder_up += s.uploaded;
                    }
                    (
                        short_peer(&s.peer_id),
                        units::bytes(s.uploaded),
                        units::bytes(s.downloaded),
                    )
                }
                None => ("(no stats)".into(), "-".into(), "-".into()),
            };
            let done = n.done.map(units::secs).unwrap_or_default();
            out.push_str(&format!(
                "{:<10}  {peer:<12}  {up:>10}  {down:>10}  {done:>10}\n",
                n.name
            ));
        }
        out.push_str(&format!(
            "{:<10}  {:<12}  {:>10}  {:>10}\n\n",
            "total",
            "",
            units::bytes(up_total),
            units::bytes(down_total)
        ));
        let p2p = up_total.saturating_sub(seeder_up);
        if up_total > 0 {
            let pct = |n: u64| 100.0 * n as f64 / up_total as f64;
            out.push_str(&format!(
                "The seeder uploaded {} ({:.0}%); the leechers uploaded {} to each other \
                 (P2P share {:.0}%).\n\n",
                units::bytes(seeder_up),
                pct(seeder_up),
                units::bytes(p2p),
                pct(p2p)
            ));
        }

        out.push_str(&format!("{:<10}  {}\n", "source", self.source_sha256));
        for n in &self.nodes {
            if let Some(h) = &n.sha256 {
                let verdict = if *h == self.source_sha256 {
                    "ok"
                } else {
                    "DIFFERS"
                };
                out.push_str(&format!("{:<10}  {h}  {verdict}\n", n.name));
            }
        }
        match self.mismatches() {
            0 => out.push_str(&format!(
                "All {leechers} copies match the source (SHA-256).\n"
            )),
            k => out.push_str(&format!(
                "{k} of {leechers} copies DIFFER from the source.\n"
            )),
        }
        out
    }
}

/// A peer ID's last 8 characters (`..4kx6nXTN`): enough to find it in the logs.
fn short_peer(id: &str) -> String {
    let n = id.chars().count();
    if n <= 12 {
        return id.to_string();
    }
    let tail: String = id.chars().skip(n - 8).collect();
    format!("..{tail}")
}

impl NodeReport {
    /// Whether this is a leecher (it has a finish time).
    pub fn is_leecher(&self) -> bool {
        self.done.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, up: u64, down: u64, sha: Option<&str>) -> NodeReport {
        NodeReport {
            name: name.into(),
            stats: Some(NodeStats {
                peer_id: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into(),
                uploaded: up,
                downloaded: down,
                have: 4,
                total: 4,
                peers: 2,
            }),
            done: sha.map(|_| Duration::from_secs(2)),
            sha256: sha.map(String::from),
        }
    }

    #[test]
    fn report_counts_p2p_share_and_mismatches() {
        let mib = 1 << 20;
        let report = Report {
            size: ByteSize(4 * mib),
            distribution: Duration::from_secs(2),
            nodes: vec![
                node("seeder", 5 * mib, 0, None),
                node("leecher-1", mib, 4 * mib, Some("aa")),
                node("leecher-2", 2 * mib, 4 * mib, Some("bb")),
            ],
            source_sha256: "aa".into(),
        };
        assert_eq!(report.mismatches(), 1);
        let text = report.render();
        assert!(
            text.contains("Distributed 4MiB to 2 leechers in 2.0 s"),
            "{text}"
        );
        assert!(text.contains("The seeder uploaded 5.0 MiB (62%)"), "{text}");
        assert!(
            text.contains("uploaded 3.0 MiB to each other (P2P share 38%)"),
            "{text}"
        );
        assert!(text.contains("leecher-2   bb  DIFFERS"), "{text}");
        assert!(text.contains("1 of 2 copies DIFFER"), "{text}");
    }

    #[test]
    fn short_peer_keeps_the_tail() {
        assert_eq!(
            short_peer("12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"),
            "..4kx6nXTN"
        );
        assert_eq!(short_peer("short"), "short");
    }
}

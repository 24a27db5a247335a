//! What a churn run measured: one row per leecher (arrival, download time,
//! quits, departure, verified copy), the seeder's departure and what the
//! swarm held then and after; as a CSV and as text.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::schedule::Arrival;
use super::ChurnConfig;

/// One leecher's life; times from the start of the arrivals.
#[derive(Clone, Debug, Default)]
pub struct PeerRow {
    /// `leecher-<k>`.
    pub name: String,
    /// Planned arrival.
    pub arrive: Duration,
    /// Leaves at once on finishing.
    pub selfish: bool,
    /// Planned to quit mid-download once.
    pub quits: bool,
    /// When its `get` started.
    pub started: Option<Duration>,
    /// When it quit mid-download.
    pub quit: Option<Duration>,
    /// When it came back.
    pub returned: Option<Duration>,
    /// When it printed its verified copy's path.
    pub done: Option<Duration>,
    /// Where that copy is.
    pub path: Option<PathBuf>,
    /// When it left for good (on finishing, after its stay, or on giving up).
    pub left: Option<Duration>,
    /// Still online when the run ended.
    pub online_at_end: bool,
    /// Why its node exited by itself, if it did (e.g. no provider found).
    pub exited: Option<String>,
    /// Whether the copy's SHA-256 matches the source's (`None`: no copy).
    pub verified: Option<bool>,
    /// Chunk bytes it uploaded.
    pub uploaded: u64,
    /// Chunk bytes it downloaded.
    pub downloaded: u64,
}

impl PeerRow {
    /// A row for a planned arrival, nothing happened yet.
    pub fn new(a: &Arrival) -> Self {
        Self {
            name: a.name.clone(),
            arrive: a.at,
            selfish: a.selfish,
            quits: a.quits,
            ..Self::default()
        }
    }

    /// From arrival to verified copy (time away included).
    pub fn download_time(&self) -> Option<Duration> {
        Some(self.done?.saturating_sub(self.started?))
    }

    /// `selfish` or `altruistic`, plus `+quit` for quitters.
    pub fn behaviour(&self) -> String {
        let b = if self.selfish {
            "selfish"
        } else {
            "altruistic"
        };
        if self.quits {
            format!("{b}+quit")
        } else {
            b.to_string()
        }
    }
}

/// When the seeder left and what the swarm held.
#[derive(Clone, Debug, Default)]
pub struct SeederExit {
    /// When it left (`None`: it never uploaded enough and stayed).
    pub at: Option<Duration>,
    /// Chunk bytes it had uploaded when it was told to leave.
    pub uploaded: u64,
    /// Chunks in the content.
    pub total: u32,
    /// Chunks held by leechers online then (read over the 2 s after it
    /// left: resume states lag by up to a second).
    pub held_present: u32,
    /// Chunks held counting the saved data of quitters away (they come back).
    pub held_with_away: u32,
    /// The fewest chunks held (with those away) at any check after it left.
    pub min_held_after: u32,
    /// The first check after it left at which some chunk was held by no one.
    pub first_gap: Option<Duration>,
    /// The run ended early: chunks were held by no one online or away.
    pub lost_for_good: bool,
}

impl SeederExit {
    /// The swarm held every chunk when the seeder left and at every check after.
    pub fn swarm_held_everything(&self) -> bool {
        self.at.is_some()
            && self.held_with_away == self.total
            && self.min_held_after == self.total
            && self.first_gap.is_none()
    }
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct ChurnReport {
    /// Its parameters.
    pub config: ChurnConfig,
    /// Every leecher, in order of arrival.
    pub peers: Vec<PeerRow>,
    /// The seeder's departure.
    pub seeder: SeederExit,
    /// Chunk bytes the seeder uploaded in all.
    pub seeder_uploaded: u64,
    /// When the run ended (all done, or the timeout).
    pub ended: Duration,
}

impl ChurnReport {
    /// Leechers that got a verified copy.
    pub fn verified(&self) -> usize {
        self.peers
            .iter()
            .filter(|p| p.verified == Some(true))
            .count()
    }

    /// Leechers that got a copy (verified or not).
    pub fn finished(&self) -> usize {
        self.peers.iter().filter(|p| p.done.is_some()).count()
    }

    /// Copies whose hash differs from the source's.
    pub fn mismatches(&self) -> usize {
        self.peers
            .iter()
            .filter(|p| p.verified == Some(false))
            .count()
    }

    /// The swarm outlived the seeder: it left, and every leecher finished with a verified copy.
    pub fn survived(&self) -> bool {
        self.seeder.at.is_some() && self.verified() == self.peers.len()
    }

    /// The run as text: a table of leechers, then the verdicts.
    pub fn render(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>9}  {:<11} {:<16} {:>10}  {:>8}  {:>8}  copy",
            "arrival", "leecher", "behaviour", "download", "quit", "left"
        );
        let opt =
            |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64()));
        for p in &self.peers {
            let copy = match (p.verified, &p.exited) {
                (Some(true), _) => "verified".to_string(),
                (Some(false), _) => "DIFFERS".to_string(),
                (None, Some(why)) => format!("none (exited: {why})"),
                (None, None) => "none (not finished)".to_string(),
            };
            let _ = writeln!(
                out,
                "{:>7.1} s  {:<11} {:<16} {:>8} s  {:>8}  {:>8}  {copy}",
                p.arrive.as_secs_f64(),
                p.name,
                p.behaviour(),
                opt(p.download_time()),
                opt(p.quit),
                opt(p.left),
            );
        }
        let n = self.peers.len();
        let _ = writeln!(
            out,
            "\nfinished {}/{n}, verified {}/{n}{}",
            self.finished(),
            self.verified(),
            if self.mismatches() > 0 {
                format!(", {} copies DIFFER from the source", self.mismatches())
            } else {
                String::new()
            }
        );
        let f = c.size.0 as f64;
        let s = &self.seeder;
        match s.at {
            Some(at) => {
                let _ = writeln!(
                    out,
                    "seeder left at {:.1} s after uploading {:.2} copies (told to leave at {:.2}); the swarm then held {}/{} chunks ({} on leechers online, the rest saved by quitters away)",
                    at.as_secs_f64(),
                    s.uploaded as f64 / f,
                    c.seeder_copies,
                    s.held_with_away,
                    s.total,
                    s.held_present
                );
                let _ = writeln!(
                    out,
                    "after it left the swarm held at least {}/{} chunks at every check (each second){}",
                    s.min_held_after,
                    s.total,
                    s.first_gap.map_or(String::new(), |g| format!(
                        "; first short at {:.1} s",
                        g.as_secs_f64()
                    ))
                );
                if s.lost_for_good {
                    let _ = writeln!(
                        out,
                        "the run ended early: {} chunks were held by no leecher online or away, so nobody still downloading could finish",
                        s.total - s.min_held_after
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "seeder never left: it uploaded {:.2} copies, short of {:.2}",
                    self.seeder_uploaded as f64 / f,
                    c.seeder_copies
                );
            }
        }
        let _ = writeln!(
            out,
            "swarm held every chunk after the seeder left: {}; survived the seeder's departure (every leecher verified): {}",
            yes(s.swarm_held_everything()),
            yes(self.survived())
        );
        out
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The per-leecher CSV, then the run's summary as `#` comment lines.
pub fn csv_text(r: &ChurnReport) -> String {
    let mut out = String::from(
        "leecher,arrival_s,selfish,quits,download_s,done_s,quit_s,returned_s,left_s,online_at_end,verified,uploaded_bytes,downloaded_bytes,exited\n",
    );
    let opt = |d: Option<Duration>| d.map_or(String::new(), |d| format!("{:.3}", d.as_secs_f64()));
    for p in &r.peers {
        let _ = writeln!(
            out,
            "{},{:.3},{},{},{},{},{},{},{},{},{},{},{},{}",
            p.name,
            p.arrive.as_secs_f64(),
            p.selfish,
            p.quits,
            opt(p.download_time()),
            opt(p.done),
            opt(p.quit),
            opt(p.returned),
            opt(p.left),
            p.online_at_end,
            p.verified.map_or(String::new(), |v| v.to_string()),
            p.uploaded,
            p.downloaded,
            p.exited.as_deref().unwrap_or("").replace([',', '\n'], ";"),
        );
    }
    let s = &r.seeder;
    let _ = writeln!(
        out,
        "# seeder_left_s={} seeder_uploaded_at_leave_bytes={} seeder_copies_target={} chunks={} held_at_leave={} held_online_at_leave={} min_held_after={} lost_for_good={} swarm_held_everything={} survived={} finished={} verified={} of={}",
        opt(s.at),
        s.uploaded,
        r.config.seeder_copies,
        s.total,
        s.held_with_away,
        s.held_present,
        s.min_held_after,
        s.lost_for_good,
        s.swarm_held_everything(),
        r.survived(),
        r.finished(),
        r.verified(),
        r.peers.len()
    );
    out
}

/// Writes [`csv_text`] to `path`.
pub fn write_csv(path: &Path, r: &ChurnReport) -> anyhow::Result<()> {
    std::fs::write(path, csv_text(r)).with_context(|| format!("cannot write {}", path.display()))
}

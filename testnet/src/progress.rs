//! Live progress on stderr while a swarm runs: a table redrawn in place on a
//! terminal, one compact line per second when stderr is a log or a pipe.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::stats::NodeStats;
use crate::units;

const BAR: usize = 10;

/// One node's row.
#[derive(Debug)]
pub struct Row<'a> {
    /// `seeder`, `leecher-3`, …
    pub name: &'a str,
    /// Newest stats, if the node has written any.
    pub stats: Option<&'a NodeStats>,
    /// Download and upload rates (bytes per second) from the last two stats files.
    pub rates: Option<(f64, f64)>,
    /// When it finished, measured from the start of the distribution.
    pub done: Option<Duration>,
}

/// Draws rows to stderr.
#[derive(Debug)]
pub struct Progress {
    tty: bool,
    drawn: usize,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Redraws in place when stderr is a terminal.
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            drawn: 0,
        }
    }

    /// Whether the table is redrawn in place (else compact lines are appended).
    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Shows the state at `elapsed` since the distribution started.
    pub fn draw(&mut self, elapsed: Duration, rows: &[Row<'_>]) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let mut out = String::new();
            if self.drawn > 0 {
                out.push_str(&format!("\x1b[{}A", self.drawn));
            }
            let mut lines = vec![format!(
                "{:<10}  {:<15}  {:>9}  {:>9}  {:>11}  {:>5} {}",
                "node",
                "progress",
                "down",
                "up",
                "down/s",
                "peers",
                units::secs(elapsed)
            )];
            lines.extend(rows.iter().map(table_line));
            for l in &lines {
                out.push_str("\x1b[2K");
                out.push_str(l);
                out.push('\n');
            }
            self.drawn = lines.len();
            let _ = err.write_all(out.as_bytes());
        } else {
            let _ = writeln!(err, "{}", compact_line(elapsed, rows));
        }
        let _ = err.flush();
    }

    /// Prints an event (e.g. a node finished) without tearing the table.
    pub fn note(&mut self, msg: &str) {
        if !self.tty {
            eprintln!("{msg}");
        }
    }
}

fn table_line(row: &Row<'_>) -> String {
    let (bar, pct, down, up, peers) = match row.stats {
        Some(s) => {
            let f = s.fraction();
            let filled = ((f * BAR as f64).round() as usize).min(BAR);
            let pct = if s.total == 0 {
                "  ?%".to_string()
            } else {
                format!("{:>3}%", (f * 100.0).floor() as u32)
            };
            (
                format!("{}{}", "#".repeat(filled), ".".repeat(BAR - filled)),
                pct,
                units::bytes(s.downloaded),
                units::bytes(s.uploaded),
                s.peers.to_string(),
            )
        }
        None => (
            "-".repeat(BAR),
            "    ".to_string(),
            "-".into(),
            "-".into(),
            "-".into(),
        ),
    };
    let rate = row
        .rates
        .map(|(d, _)| units::rate(d))
        .unwrap_or_else(|| "-".into());
    let status = row
        .done
        .map(|d| format!("done {:.1}s", d.as_secs_f64()))
        .unwrap_or_default();
    format!(
        "{:<10}  {bar} {pct}  {down:>9}  {up:>9}  {rate:>11}  {peers:>5} {status}",
        row.name
    )
}

fn compact_line(elapsed: Duration, rows: &[Row<'_>]) -> String {
    let mut line = format!("[{:>5.1}s]", elapsed.as_secs_f64());
    let mut p2p_up = 0;
    let mut leechers = String::new();
    for row in rows {
        let up = row.stats.map_or(0, |s| s.uploaded);
        match row.name.strip_prefix("leecher-") {
            Some(n) => {
                p2p_up += up;
                let cell = match (row.done, row.stats) {
                    (Some(_), _) => "done".to_string(),
                    (None, Some(s)) if s.total > 0 => {
                        format!("{}%", (s.fraction() * 100.0).floor() as u32)
                    }
                    _ => "-".to_string(),
                };
                leechers.push_str(&format!(" L{n} {cell}"));
            }
            None => line.push_str(&format!(" {} up {} |", row.name, units::bytes(up))),
        }
    }
    line.push_str(&leechers);
    line.push_str(&format!(" | leechers up {}", units::bytes(p2p_up)));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(have: u64, total: u64) -> NodeStats {
        NodeStats {
            peer_id: "p".into(),
            uploaded: 3 << 20,
            downloaded: 1 << 20,
            have,
            total,
            peers: 4,
        }
    }

    #[test]
    fn table_lines_fit_a_terminal() {
        let s = stats(128, 256);
        let row = Row {
            name: "leecher-12",
            stats: Some(&s),
            rates: Some((999.9 * 1024.0 * 1024.0, 0.0)),
            done: Some(Duration::from_secs_f64(99.94)),
        };
        let line = table_line(&row);
        assert!(line.contains("#####.....  50%"), "{line}");
        assert!(line.len() <= 80, "{} chars: {line}", line.len());
    }

    #[test]
    fn compact_line_names_each_node() {
        let (a, b) = (stats(256, 256), stats(64, 256));
        let rows = [
            Row {
                name: "seeder",
                stats: Some(&a),
                rates: None,
                done: None,
            },
            Row {
                name: "leecher-1",
                stats: Some(&b),
                rates: None,
                done: None,
            },
            Row {
                name: "leecher-2",
                stats: None,
                rates: None,
                done: None,
            },
        ];
        let line = compact_line(Duration::from_secs(3), &rows);
        assert_eq!(
            line,
            "[  3.0s] seeder up 3.0 MiB | L1 25% L2 - | leechers up 3.0 MiB"
        );
    }
}

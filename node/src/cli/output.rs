//! What `share` and `get` tell the user: indicatif bars when stderr is a
//! terminal, plain lines on stderr otherwise (the wording scripts and the
//! testnet know), or with `--json` one JSON object per event on stdout.
//!
//! Outside JSON mode stdout carries only what scripts read today: the
//! content ID (share) and the path of the verified copy (get). In JSON mode
//! stdout carries only JSON lines and those two are fields of the `hashed`
//! and `complete` events. The methods take plain values so that the embedded
//! flows and the daemon client (which polls) can both drive one `Output`.

mod bar;
mod coverage;
mod event;
mod fetching;
mod hashing;
mod meter;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use bar::Bar;
use coverage::Coverage;
pub use event::Event;
use meter::Meter;

use super::human::human;

/// Plain progress lines at most this often (as before bars existed).
const PLAIN_EVERY: Duration = Duration::from_secs(1);
/// Plain hashing lines at most this often.
const PLAIN_HASH_EVERY: Duration = Duration::from_millis(500);
/// JSON progress and hashing events at most this often.
const JSON_EVERY: Duration = Duration::from_millis(500);

/// Where and how events are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One JSON object per event on stdout.
    Json,
    /// indicatif bars on stderr (a terminal).
    Bar,
    /// Plain lines on stderr.
    Plain,
}

/// The events of one `share` or `get`, shown in one [`Mode`].
pub struct Output {
    mode: Mode,
    started: Instant,
    /// Bytes hashed or received, for the rate.
    bytes: Meter,
    /// Chunks held, for the time left.
    chunks: Meter,
    /// When the last throttled line or event went out.
    last: Instant,
    /// The content's size once known (estimates the rate when bytes received are not).
    content_bytes: Option<u64>,
    bar: Option<Bar>,
    /// What the user was told about chunks no connected peer holds.
    coverage: Coverage,
}

impl Output {
    /// `--json` → JSON; else bars if stderr is a terminal; else plain lines.
    pub fn new(json: bool) -> Output {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Plain
        };
        Output::with_mode(mode)
    }

    /// An output in `mode` regardless of the terminal.
    pub fn with_mode(mode: Mode) -> Output {
        let now = Instant::now();
        Output {
            mode,
            started: now,
            bytes: Meter::default(),
            chunks: Meter::default(),
            last: now,
            content_bytes: None,
            bar: None,
            coverage: Coverage::default(),
        }
    }

    /// The mode chosen.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// This process now seeds until interrupted.
    pub fn seeding(&mut self) {
        match self.mode {
            Mode::Json => Event::Seeding.emit(),
            _ => self.line("seeding; press Ctrl-C to stop"),
        }
    }

    /// A signal stopped the get before the end; its progress is kept.
    pub fn interrupted(&mut self) {
        self.finish();
        match self.mode {
            Mode::Json => Event::Interrupted.emit(),
            _ => eprintln!("interrupted: saving progress"),
        }
    }

    /// Anything else worth a line (a JSON `note` event in JSON mode).
    pub fn note(&mut self, message: &str) {
        match self.mode {
            Mode::Json => Event::Note { message }.emit(),
            _ => self.line(message),
        }
    }

    /// The command failed with `error`: a JSON `failed` event, or the bar
    /// stops where it was. Plain mode prints nothing; the caller returns the error.
    pub fn failed(&mut self, error: &str) {
        if let Some(bar) = self.bar.take() {
            bar.keep();
        }
        if self.mode == Mode::Json {
            Event::Failed { error }.emit();
        }
    }

    /// Removes a bar still drawing (call before printing anything else on stderr).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.clear();
        }
    }

    /// A line on stderr, above the bar if one is drawn.
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.line(text),
            None => eprintln!("{text}"),
        }
    }

    /// True, and restarts the clock, if `every` passed since the last throttled output.
    fn due(&mut self, now: Instant, every: Duration) -> bool {
        if now.saturating_duration_since(self.last) < every {
            return false;
        }
        self.last = now;
        true
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.finish();
    }
}

/// "12.0 MiB/s, ETA 5s" with dashes for what is not known yet.
fn rate_eta(rate: Option<f64>, eta: Option<u64>) -> String {
    let rate = rate.map_or("-".into(), |r| format!("{}/s", human(r as u64)));
    let eta = eta.map_or("-".into(), |s| {
        if s >= 3600 {
            format!("{}h{:02}m", s / 3600, s / 60 % 60)
        } else if s >= 60 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{s}s")
        }
    });
    format!("{rate}, ETA {eta}")
}

/// One line on stdout, flushed at once: a script may be waiting for it.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_time_left_read_well() {
        assert_eq!(rate_eta(None, None), "-, ETA -");
        assert_eq!(
            rate_eta(Some(2.0 * 1048576.0), Some(5)),
            "2.0 MiB/s, ETA 5s"
        );
        assert_eq!(rate_eta(Some(10.0), Some(125)), "10 B/s, ETA 2m05s");
        assert_eq!(
            rate_eta(Some(10.0), Some(3 * 3600 + 60)),
            "10 B/s, ETA 3h01m"
        );
    }
}

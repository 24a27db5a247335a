//! Get's events on an [`Output`]: the search, the manifest, progress, the copy.

use std::path::Path;
use std::time::Instant;

use protocol::transfer::Availability;

use super::super::human::human;
use super::bar::{Bar, Unit};
use super::coverage::{copies_text, Notice};
use super::event::Event;
use super::{print_stdout, rate_eta, round_ms, Mode, Output, JSON_EVERY, PLAIN_EVERY};

impl Output {
    /// Get: the DHT search for `id` begins; gives up after `timeout_secs` if known.
    pub fn searching(&mut self, id: &str, timeout_secs: Option<u64>) {
        let mut text = format!("searching the DHT for providers of {id}");
        if let Some(t) = timeout_secs {
            text.push_str(&format!(" (giving up after {t} s)"));
        }
        match self.mode {
            Mode::Json => Event::Searching { id, timeout_secs }.emit(),
            Mode::Bar => {
                self.line(&text);
                self.bar = Some(Bar::spinner("searching for providers".into()));
            }
            Mode::Plain => eprintln!("{text}"),
        }
    }

    /// Get: `count` providers found `ms` after the command started.
    pub fn providers(&mut self, count: usize, ms: u64) {
        if self.mode == Mode::Json {
            return Event::Providers { count, ms }.emit();
        }
        self.line(&format!("found {count} provider(s) {ms} ms after start"));
        if let Some(bar) = &self.bar {
            bar.message(format!("{count} provider(s); fetching the manifest"));
        }
    }

    /// Get: the manifest is here: `chunks` chunks, `bytes` in all, named `name`.
    pub fn manifest(&mut self, name: &str, bytes: u64, chunks: u32) {
        self.content_bytes = Some(bytes);
        if self.mode == Mode::Json {
            return Event::Manifest {
                name,
                bytes,
                chunks,
            }
            .emit();
        }
        self.line(&format!(
            "fetching {name} ({} in {chunks} chunks)",
            human(bytes)
        ));
        if let Some(bar) = &mut self.bar {
            bar.count(Unit::Chunks, name, u64::from(chunks));
        }
    }

    /// Get: `have` of `total` chunks verified, `peers` in the swarm,
    /// `received` payload bytes if known (the rate is estimated from chunks
    /// otherwise), and the swarm's coverage if known.
    pub fn progress(
        &mut self,
        have: u32,
        total: u32,
        peers: usize,
        received: Option<u64>,
        availability: Option<&Availability>,
    ) {
        let now = Instant::now();
        if let Some(notice) = availability.and_then(|a| self.coverage.update(now, a)) {
            self.coverage_notice(&notice);
        }
        let copies = availability.map(copies_text);
        let estimate = || {
            let b = self.content_bytes?;
            Some(b.checked_mul(u64::from(have))? / u64::from(total.max(1)))
        };
        if let Some(b) = received.or_else(estimate) {
            self.bytes.record(now, b);
        }
        self.chunks.record(now, u64::from(have));
        let rate = self.bytes.per_sec();
        let eta = self.chunks.eta_secs(u64::from(total));
        let percent = if total == 0 {
            0
        } else {
            (u64::from(have.min(total)) * 100 / u64::from(total)) as u8
        };
        match self.mode {
            Mode::Json => {
                if self.due(now, JSON_EVERY) {
                    Event::Progress {
                        have,
                        total,
                        percent,
                        peers,
                        received_bytes: received,
                        bytes_per_sec: rate.map(|r| r as u64),
                        eta_secs: eta,
                        distributed_copies: availability
                            .map(|a| (a.distributed_copies * 1000.0).round() / 1000.0),
                        unavailable_chunks: availability.map(|a| a.unavailable),
                    }
                    .emit();
                }
            }
            Mode::Bar => {
                let bar = self.bar.get_or_insert_with(|| Bar::spinner(String::new()));
                // Labelled by manifest() when it came first (the embedded get).
                bar.count(Unit::Chunks, "fetching", u64::from(total));
                let copies = copies.map_or(String::new(), |c| format!(", {c}"));
                bar.set(
                    u64::from(have),
                    format!("{}, {peers} peers{copies}", rate_eta(rate, eta)),
                );
            }
            Mode::Plain => {
                if total == 0 || !self.due(now, PLAIN_EVERY) {
                    return;
                }
                let mut text = format!("[{percent:3}%] {have}/{total} chunks, {peers} peers");
                if let Some(r) = received {
                    let secs = self.started.elapsed().as_secs_f64().max(0.001);
                    let per_sec = rate.unwrap_or(r as f64 / secs);
                    text.push_str(&format!(
                        ", {} received ({}/s)",
                        human(r),
                        human(per_sec as u64)
                    ));
                }
                if let Some(c) = copies {
                    text.push_str(&format!(", {c}"));
                }
                eprintln!("{text}");
            }
        }
    }

    /// Get: chunks went without (or regained) a connected holder.
    fn coverage_notice(&mut self, notice: &Notice) {
        let message = notice.text();
        match (self.mode, notice) {
            (Mode::Json, Notice::Unavailable { count, examples }) => Event::Unavailable {
                chunks: *count,
                examples: examples.clone(),
                message: &message,
            }
            .emit(),
            (Mode::Json, Notice::Available) => Event::Unavailable {
                chunks: 0,
                examples: Vec::new(),
                message: &message,
            }
            .emit(),
            _ => self.line(&message),
        }
    }

    /// Get: the copy at `path` is verified, `secs` after the start; prints the path (stdout).
    pub fn complete(&mut self, path: &Path, secs: f64, received: Option<u64>) {
        let shown = path.to_string_lossy();
        if self.mode == Mode::Json {
            let secs = round_ms(secs);
            return Event::Complete {
                path: &shown,
                secs,
                received_bytes: received,
            }
            .emit();
        }
        if let Some(bar) = self.bar.take() {
            let average = received.map_or(String::new(), |r| {
                format!(
                    ", {}/s on average",
                    human((r as f64 / secs.max(0.001)) as u64)
                )
            });
            bar.keep_full(format!("done{average}"));
        }
        print_stdout(&shown);
        let mut text = format!("complete: {shown} in {secs:.1}s");
        if let Some(r) = received {
            text.push_str(&format!(" ({} received)", human(r)));
        }
        eprintln!("{text}");
    }
}

//! Share's events on an [`Output`]: hashing progress, then the content ID.

use std::time::Instant;

use super::super::human::human;
use super::bar::{Bar, Unit};
use super::event::Event;
use super::{print_stdout, rate_eta, round_ms, Mode, Output, JSON_EVERY, PLAIN_HASH_EVERY};

impl Output {
    /// Share: `done` of `total` bytes hashed so far.
    pub fn hashing(&mut self, done: u64, total: u64) {
        let now = Instant::now();
        self.bytes.record(now, done);
        let rate = self.bytes.per_sec();
        let eta = self.bytes.eta_secs(total);
        match self.mode {
            Mode::Json => {
                if self.due(now, JSON_EVERY) {
                    Event::Hashing {
                        done,
                        total,
                        bytes_per_sec: rate.map(|r| r as u64),
                        eta_secs: eta,
                    }
                    .emit();
                }
            }
            Mode::Bar => {
                let bar = self.bar.get_or_insert_with(|| Bar::spinner(String::new()));
                bar.count(Unit::Bytes, "hashing", total);
                bar.set(done, rate_eta(rate, eta));
            }
            Mode::Plain => {
                if self.due(now, PLAIN_HASH_EVERY) {
                    eprintln!("hashing: {} / {}", human(done), human(total));
                }
            }
        }
    }

    /// Share: hashed and ready; prints the content ID (stdout) and a summary.
    pub fn hashed(&mut self, id: &str, name: &str, bytes: u64, chunks: u32, secs: f64) {
        let link = format!("{}{id}", protocol::id::LINK_PREFIX);
        if self.mode == Mode::Json {
            let secs = round_ms(secs);
            Event::Hashed {
                id,
                link,
                name,
                bytes,
                chunks,
                secs,
            }
            .emit();
            return;
        }
        if let Some(bar) = self.bar.take() {
            bar.clear();
        }
        print_stdout(id);
        eprintln!(
            "hashed {name} ({} in {chunks} chunks) in {secs:.1}s; link: {link}",
            human(bytes)
        );
    }
}

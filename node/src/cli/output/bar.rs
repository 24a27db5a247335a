//! indicatif bars on stderr, for when stderr is a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often the spinner moves, so a stalled transfer still looks alive.
const TICK: Duration = Duration::from_millis(120);
/// Spinner only: searching, before there is anything to count.
const SPINNER: &str = "{spinner:.cyan} {msg}";
/// Hashing: bytes.
const BYTES: &str =
    "{spinner:.cyan} {prefix:.bold} [{wide_bar:.cyan/blue}] {percent:>3}%  {done_bytes}/{total_bytes}  {msg}";
/// Fetching: chunks.
const CHUNKS: &str =
    "{spinner:.cyan} {prefix:.bold} [{wide_bar:.cyan/blue}] {percent:>3}%  {pos}/{len} chunks  {msg}";
/// Longest content name shown as the bar's label.
const PREFIX_CHARS: usize = 24;

/// What a bar counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes, shown in binary units.
    Bytes,
    /// Chunks.
    Chunks,
}

/// One line on stderr that redraws itself; text lines go above it.
pub struct Bar {
    pb: ProgressBar,
    unit: Option<Unit>,
}

impl Bar {
    /// A spinner saying `msg`.
    pub fn spinner(msg: String) -> Bar {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_style(style(SPINNER));
        pb.set_message(msg);
        pb.enable_steady_tick(TICK);
        Bar { pb, unit: None }
    }

    /// Turns the line into a bar of `len` `unit`s labelled `label` (kept if already so).
    pub fn count(&mut self, unit: Unit, label: &str, len: u64) {
        if self.unit != Some(unit) {
            self.unit = Some(unit);
            self.pb.set_style(style(match unit {
                Unit::Bytes => BYTES,
                Unit::Chunks => CHUNKS,
            }));
            self.pb.set_prefix(short(label));
        }
        self.pb.set_length(len);
    }

    /// Moves the bar to `pos` with `msg` after it (rate, time left, peers).
    pub fn set(&self, pos: u64, msg: String) {
        self.pb.set_position(pos);
        self.pb.set_message(msg);
    }

    /// Replaces the text after the bar.
    pub fn message(&self, msg: String) {
        self.pb.set_message(msg);
    }

    /// Prints `text` above the bar.
    pub fn line(&self, text: &str) {
        self.pb.println(text);
    }

    /// Stops redrawing and leaves the final state on screen.
    pub fn keep(self) {
        self.pb.disable_steady_tick();
        self.pb.abandon();
    }

    /// Fills the bar (the last chunks come with the outcome, not as
    /// progress), says `msg` after it and leaves it on screen.
    pub fn keep_full(self, msg: String) {
        if let Some(len) = self.pb.length() {
            self.pb.set_position(len);
        }
        self.pb.set_message(msg);
        self.keep();
    }

    /// Stops redrawing and removes the line.
    pub fn clear(self) {
        self.pb.finish_and_clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants, checked by a test; fall back rather than panic.
    // Sizes print through the workspace's one formatter (node::units).
    ProgressStyle::with_template(template)
        .map(|s| {
            s.progress_chars("=> ")
                .with_key(
                    "done_bytes",
                    |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&node::units::bytes(st.pos()));
                    },
                )
                .with_key(
                    "total_bytes",
                    |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&node::units::bytes(st.len().unwrap_or(0)));
                    },
                )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// `name` cut to PREFIX_CHARS characters, with an ellipsis when cut.
fn short(name: &str) -> String {
    if name.chars().count() <= PREFIX_CHARS {
        return name.to_string();
    }
    let mut s: String = name.chars().take(PREFIX_CHARS - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_long_names_are_cut() {
        for t in [SPINNER, BYTES, CHUNKS] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
        assert_eq!(short("video.bin"), "video.bin");
        let cut = short(&"é".repeat(40));
        assert_eq!(cut.chars().count(), PREFIX_CHARS);
        assert!(cut.ends_with('…'));
    }
}

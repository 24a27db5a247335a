//! What `get` says about the swarm's coverage: distributed copies next to the
//! progress, and a warning when chunks we lack are held by no connected peer.
//!
//! Right after the swarm is joined nobody's holdings are known yet, so the
//! warning waits until the shortage has lasted a few seconds; it repeats while
//! the shortage lasts (less often when nothing changed) and says so when it ends.

use std::time::{Duration, Instant};

use protocol::transfer::Availability;

/// Chunks without a holder for this long are worth a warning: longer than
/// the periodic have exchange (5 s), through which a choked peer hears of a
/// chunk another leecher just got.
const GRACE: Duration = Duration::from_secs(8);
/// While the count is unchanged, repeat the warning this often.
const REPEAT: Duration = Duration::from_secs(30);

/// What the user was last told about chunks nobody holds.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Since when some chunk has had no holder.
    short_since: Option<Instant>,
    /// The count last warned about and when.
    warned: Option<(u32, Instant)>,
}

/// A change worth telling the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `count` chunks we lack have no connected holder; `examples` are some of them.
    Unavailable { count: u32, examples: Vec<u32> },
    /// Every chunk we lack has a connected holder again.
    Available,
}

impl Coverage {
    /// Feeds the latest availability; returns what to tell the user, if anything.
    pub fn update(&mut self, now: Instant, a: &Availability) -> Option<Notice> {
        if a.unavailable == 0 {
            self.short_since = None;
            return self.warned.take().map(|_| Notice::Available);
        }
        let since = *self.short_since.get_or_insert(now);
        if now.saturating_duration_since(since) < GRACE {
            return None;
        }
        let due = match self.warned {
            None => true,
            Some((count, at)) => {
                count != a.unavailable && now.saturating_duration_since(at) >= GRACE
                    || now.saturating_duration_since(at) >= REPEAT
            }
        };
        if !due {
            return None;
        }
        self.warned = Some((a.unavailable, now));
        Some(Notice::Unavailable {
            count: a.unavailable,
            examples: a.unavailable_examples.clone(),
        })
    }
}

impl Notice {
    /// The sentence shown to people.
    pub fn text(&self) -> String {
        match self {
            Notice::Unavailable { count, examples } => {
                let list: Vec<String> = examples.iter().map(u32::to_string).collect();
                let more = if (*count as usize) > examples.len() {
                    "..."
                } else {
                    ""
                };
                let noun = if *count == 1 { "chunk" } else { "chunks" };
                format!(
                    "{count} {noun} (e.g. {}{more}) held by no connected peer; still looking for providers",
                    list.join(", ")
                )
            }
            Notice::Available => "every missing chunk has a connected holder again".into(),
        }
    }
}

/// "1.92 copies" as the progress line shows distributed copies.
pub fn copies_text(a: &Availability) -> String {
    format!("{:.2} copies", a.distributed_copies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(count: u32) -> Availability {
        Availability {
            distributed_copies: 0.9,
            unavailable: count,
            unavailable_examples: vec![12, 40, 311],
        }
    }

    #[test]
    fn warns_after_the_grace_period_repeats_on_change_and_clears() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = Coverage::default();
        assert_eq!(
            c.update(t0, &short(43)),
            None,
            "haves may still be arriving"
        );
        assert_eq!(
            c.update(t0 + 5 * s, &short(43)),
            None,
            "a have may be on its way"
        );
        let first = c.update(t0 + 8 * s, &short(43)).expect("warned");
        assert_eq!(
            first.text(),
            "43 chunks (e.g. 12, 40, 311...) held by no connected peer; still looking for providers"
        );
        assert_eq!(c.update(t0 + 10 * s, &short(43)), None, "unchanged");
        assert_eq!(
            c.update(t0 + 10 * s, &short(40)),
            None,
            "changed, but just warned"
        );
        assert!(c.update(t0 + 16 * s, &short(40)).is_some(), "changed");
        assert!(
            c.update(t0 + 41 * s, &short(40)).is_none(),
            "unchanged since 16 s"
        );
        assert!(c.update(t0 + 46 * s, &short(40)).is_some(), "repeated");
        let ok = Availability {
            distributed_copies: 1.5,
            unavailable: 0,
            unavailable_examples: vec![],
        };
        assert_eq!(c.update(t0 + 47 * s, &ok), Some(Notice::Available));
        assert_eq!(c.update(t0 + 48 * s, &ok), None);
    }

    #[test]
    fn a_short_gap_in_coverage_says_nothing() {
        let t0 = Instant::now();
        let mut c = Coverage::default();
        let ok = Availability {
            distributed_copies: 1.0,
            unavailable: 0,
            unavailable_examples: vec![],
        };
        assert_eq!(c.update(t0, &short(3)), None);
        assert_eq!(c.update(t0 + Duration::from_secs(1), &ok), None);
        assert_eq!(c.update(t0 + Duration::from_secs(9), &short(3)), None);
    }

    #[test]
    fn exact_lists_have_no_ellipsis_and_one_chunk_is_singular() {
        let n = Notice::Unavailable {
            count: 1,
            examples: vec![7],
        };
        assert_eq!(
            n.text(),
            "1 chunk (e.g. 7) held by no connected peer; still looking for providers"
        );
    }
}

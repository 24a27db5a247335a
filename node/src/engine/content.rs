//! One content's life in the loop, searching → opening → active (seeding
//! once whole), and its timers as a sans-IO schedule: the loop passes `now`
//! and the facts, the schedule says what is due.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::transfer::Transfer;
use protocol::Manifest;
use tokio::sync::{mpsc, oneshot};

use crate::client::{GetEvent, Outcome};
use crate::storage::Storage;

/// First wait between peer searches (DHT lookup plus peer exchange) of an active swarm.
pub const MIN_SEARCH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait between peer searches while we still want more peers.
pub const MAX_SEARCH_INTERVAL: Duration = Duration::from_secs(30);
/// First wait between peer exchanges of a new download (after the one at
/// once): a flash crowd reaches the provider within a fraction of a second,
/// and one small ask to one neighbour costs little.
pub const MIN_EXCHANGE_INTERVAL: Duration = Duration::from_millis(250);
/// Longest wait between peer searches while some chunk we lack has no connected holder.
pub const STARVED_SEARCH_INTERVAL: Duration = Duration::from_secs(10);
/// Chunks without a holder for this long count as starved (haves take a moment at the start).
const STARVED_GRACE: Duration = Duration::from_secs(3);
/// A DHT lookup is started at most this often while one may still run.
const SEARCH_SPACING: Duration = Duration::from_secs(2);
/// Re-announce this soon if no peer confirmed storing our provider record.
const ANNOUNCE_CHECK: Duration = Duration::from_secs(5);
/// Retry this soon after an announce that no peer stored.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(2);
/// Most download waiters per content (one per `get` of the same ID).
pub const MAX_WAITERS: usize = 64;

/// Where a content is in its life.
pub enum Phase {
    /// Looking for providers and a manifest.
    Searching {
        out_dir: PathBuf,
        asked: HashSet<PeerId>,
        /// A received manifest is being checked; others wait (their askers are asked again).
        checking: bool,
    },
    /// The manifest arrived; storage is being opened (and re-checked).
    Opening { manifest: Manifest },
    /// Exchanging chunks.
    Active(Box<Active>),
}

/// A content whose chunks we exchange.
pub struct Active {
    /// The swarm's state machine.
    pub transfer: Transfer<PeerId>,
    /// Its files.
    pub storage: Arc<RwLock<Storage>>,
    /// `Answer::Manifest` with the exact bytes behind the ID, encoded once.
    pub manifest_answer: Arc<[u8]>,
    /// Chunks were stored since the last resume save.
    pub dirty: bool,
    /// A resume save is running.
    pub saving: bool,
    /// Every chunk is stored and finishing has started.
    pub finished: bool,
}

/// Everything the loop keeps for one content ID.
pub struct Content {
    /// Where it is in its life.
    pub phase: Phase,
    /// Progress for whoever started the download.
    pub events: Option<mpsc::Sender<GetEvent>>,
    /// Whoever waits for this download's end; told exactly once.
    pub waiters: Vec<oneshot::Sender<Outcome>>,
    /// Peers known to provide it.
    pub providers: HashSet<PeerId>,
    /// Its timers.
    pub schedule: Schedule,
}

impl Content {
    /// Tells every waiter how the download ended (exactly once each).
    pub fn end(&mut self, outcome: Outcome) {
        for w in self.waiters.drain(..) {
            let _ = w.send(outcome.clone());
        }
    }

    /// The active state, if any.
    pub fn active_mut(&mut self) -> Option<&mut Active> {
        match &mut self.phase {
            Phase::Active(a) => Some(a),
            _ => None,
        }
    }
}

/// Settings the schedule needs.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Give up a search after this long.
    pub find_timeout: Duration,
    /// Save resume state at most this often.
    pub save_interval: Duration,
    /// Stop looking for peers at this many.
    pub wanted_peers: usize,
}

/// What an active content looks like this tick.
#[derive(Clone, Copy, Debug)]
pub struct ActiveFacts {
    /// Peers in its swarm.
    pub peers: usize,
    /// Unsaved progress.
    pub dirty: bool,
    /// A save is running.
    pub saving: bool,
    /// Complete and finishing.
    pub finished: bool,
    /// Some chunk we lack is held by no connected peer.
    pub starved: bool,
}

/// What a content's timers ask of the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Announce ourselves as a provider (again).
    Announce,
    /// The search failed; end the download with this reason.
    GiveUp(String),
    /// Ask the known providers for the manifest.
    AskProviders,
    /// Start a DHT provider lookup.
    Search,
    /// Ask one neighbour for more swarm members.
    PeerExchange,
    /// Save resume state.
    Save,
}

/// A timer whose wait doubles each time it fires, up to a cap.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    next: Instant,
    interval: Duration,
    min: Duration,
}

impl Backoff {
    /// First due at `next`, then `min` later, doubling.
    fn new(next: Instant, min: Duration) -> Self {
        Self {
            next,
            interval: min,
            min,
        }
    }

    fn is_due(&self, now: Instant) -> bool {
        self.next <= now
    }

    /// True if due: the next firing is then one interval (at most `cap`) away,
    /// and the interval doubles.
    fn fire(&mut self, now: Instant, cap: Duration) -> bool {
        if !self.is_due(now) {
            return false;
        }
        self.next = now + self.interval.min(cap);
        self.interval = (self.interval * 2).min(cap);
        true
    }

    /// Due now, and from the shortest interval again.
    fn restart(&mut self, now: Instant) {
        self.interval = self.min;
        self.next = self.next.min(now);
    }

    /// Not due before `at`.
    fn hold_until(&mut self, at: Instant) {
        self.next = self.next.max(at);
    }
}

/// A content's timers.
#[derive(Clone, Debug)]
pub struct Schedule {
    search_deadline: Option<Instant>,
    search: Backoff,
    /// Peer exchange runs on its own clock, from a quicker start.
    exchange: Backoff,
    query_running: bool,
    announced: bool,
    next_announce: Option<Instant>,
    last_save: Instant,
    /// Since when some chunk we lack has had no connected holder.
    starved_since: Option<Instant>,
}

impl Schedule {
    /// A download that starts searching now.
    pub fn searching(now: Instant, find_timeout: Duration) -> Self {
        Self {
            search_deadline: Some(now + find_timeout),
            search: Backoff::new(now, MIN_SEARCH_INTERVAL),
            exchange: Backoff::new(now + MIN_EXCHANGE_INTERVAL, MIN_EXCHANGE_INTERVAL),
            query_running: false,
            announced: false,
            next_announce: None,
            last_save: now,
            starved_since: None,
        }
    }

    /// A content that becomes active now (the loop asks one neighbour for
    /// peers at once; the schedule's exchanges follow).
    pub fn active(now: Instant) -> Self {
        Self {
            search_deadline: None,
            search: Backoff::new(now + MIN_SEARCH_INTERVAL, MIN_SEARCH_INTERVAL),
            ..Self::searching(now, Duration::ZERO)
        }
    }

    /// Whether we announced (or are announcing) ourselves as a provider.
    pub fn announced(&self) -> bool {
        self.announced
    }

    /// An announce started now.
    pub fn on_announce(&mut self, now: Instant) {
        self.announced = true;
        self.next_announce = Some(now + ANNOUNCE_CHECK);
    }

    /// The announce ended: stored by `stored` peers.
    pub fn on_announced(&mut self, now: Instant, stored: u32) {
        self.next_announce = (stored == 0).then_some(now + ANNOUNCE_RETRY);
    }

    /// Starts a DHT lookup now unless one runs; false if one runs.
    pub fn on_search(&mut self, now: Instant) -> bool {
        if self.query_running {
            return false;
        }
        self.query_running = true;
        // Only ever later: an active swarm's doubling interval must survive the lookup it asks for.
        self.search.hold_until(now + SEARCH_SPACING);
        true
    }

    /// The DHT lookup ended.
    pub fn on_search_done(&mut self) {
        self.query_running = false;
    }

    /// A resume save started now.
    pub fn on_save(&mut self, now: Instant) {
        self.last_save = now;
    }

    /// What is due for a searching content that knows `providers` providers
    /// and has asked nobody for the manifest if `none_asked`.
    pub fn searching_due(
        &mut self,
        now: Instant,
        t: &Timing,
        providers: usize,
        none_asked: bool,
    ) -> Vec<Due> {
        if self.search_deadline.is_some_and(|d| d <= now) {
            let why = if providers == 0 {
                format!(
                    "no providers found within {:?}; check the ID and that a seeder is running and bootstrapped",
                    t.find_timeout
                )
            } else {
                format!(
                    "found {providers} provider(s) but none sent its manifest within {:?}",
                    t.find_timeout
                )
            };
            return vec![Due::GiveUp(why)];
        }
        let mut due = Vec::new();
        // Asks that failed are retried from the providers we know, without
        // waiting for the DHT query (which may run on for its full timeout).
        if none_asked && providers > 0 {
            due.push(Due::AskProviders);
        }
        if self.search.is_due(now) && !self.query_running {
            due.push(Due::Search);
        }
        due
    }

    /// Whether chunks have lacked a connected holder for longer than the grace period.
    fn is_starved(&self, now: Instant) -> bool {
        self.starved_since
            .is_some_and(|t| now.saturating_duration_since(t) >= STARVED_GRACE)
    }

    /// What is due for an active content.
    pub fn active_due(&mut self, now: Instant, t: &Timing, f: ActiveFacts) -> Vec<Due> {
        // Retry announcing until some peer stores our record.
        if self.next_announce.is_some_and(|at| at <= now) {
            return vec![Due::Announce];
        }
        let mut due = Vec::new();
        let save_due = now.saturating_duration_since(self.last_save) >= t.save_interval;
        if f.dirty && !f.saving && !f.finished && save_due {
            due.push(Due::Save);
        }
        // Chunks nobody connected holds: look for providers often, however many peers we have.
        let was_starved = self.is_starved(now);
        self.starved_since = match (f.starved, self.starved_since) {
            (true, since) => since.or(Some(now)),
            (false, _) => None,
        };
        let starved = self.is_starved(now);
        if starved && !was_starved {
            self.search.restart(now);
            self.exchange.restart(now);
        }
        let cap = if starved {
            STARVED_SEARCH_INTERVAL
        } else {
            MAX_SEARCH_INTERVAL
        };
        // A seed needs no more peers: leechers find it through its provider record.
        let looking = (f.peers < t.wanted_peers && !f.finished) || starved;
        if looking && f.peers > 0 && self.exchange.fire(now, cap) {
            due.push(Due::PeerExchange);
        }
        if looking && self.search.fire(now, cap) && !self.query_running {
            due.push(Due::Search);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn timing() -> Timing {
        Timing {
            find_timeout: 60 * SEC,
            save_interval: SEC,
            wanted_peers: 40,
        }
    }

    fn facts(peers: usize) -> ActiveFacts {
        ActiveFacts {
            peers,
            dirty: false,
            saving: false,
            finished: false,
            starved: false,
        }
    }

    #[test]
    fn a_starved_swarm_keeps_searching_however_many_peers_it_has() {
        let t0 = Instant::now();
        let t = timing();
        let mut s = Schedule::active(t0);
        let starved = ActiveFacts {
            starved: true,
            ..facts(40)
        };
        // Enough peers: no search, and none in the grace period after chunks go missing.
        assert_eq!(s.active_due(t0 + 5 * SEC, &t, facts(40)), vec![]);
        assert_eq!(s.active_due(t0 + 6 * SEC, &t, starved), vec![]);
        let mut searches = Vec::new();
        let mut at = t0 + 7 * SEC;
        while at < t0 + 120 * SEC {
            if s.active_due(at, &t, starved).contains(&Due::Search) {
                searches.push((at - t0).as_secs());
                s.on_search(at);
                s.on_search_done();
            }
            at += SEC;
        }
        assert_eq!(searches.first(), Some(&9), "{searches:?}");
        let gaps: Vec<u64> = searches.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g <= 10), "{gaps:?}");
        assert!(searches.len() >= 12, "{searches:?}");
        // Once every chunk has a holder again, a full swarm stops searching.
        let after: Vec<_> = (121..200)
            .filter(|&k| !s.active_due(t0 + k * SEC, &t, facts(40)).is_empty())
            .collect();
        assert!(after.is_empty(), "{after:?}");
    }

    #[test]
    fn a_search_looks_up_asks_providers_and_gives_up_at_its_deadline() {
        let t0 = Instant::now();
        let t = timing();
        let mut s = Schedule::searching(t0, t.find_timeout);
        assert_eq!(s.searching_due(t0, &t, 0, true), vec![Due::Search]);
        assert!(s.on_search(t0));
        assert!(!s.on_search(t0), "one lookup at a time");
        assert_eq!(s.searching_due(t0 + SEC, &t, 0, true), vec![]);
        assert_eq!(
            s.searching_due(t0 + SEC, &t, 3, true),
            vec![Due::AskProviders],
            "known providers are asked without waiting for the lookup"
        );
        assert_eq!(s.searching_due(t0 + SEC, &t, 3, false), vec![]);
        s.on_search_done();
        assert_eq!(
            s.searching_due(t0 + 3 * SEC, &t, 3, false),
            vec![Due::Search]
        );
        match s
            .searching_due(t0 + t.find_timeout, &t, 3, false)
            .as_slice()
        {
            [Due::GiveUp(why)] => assert!(why.contains("3 provider(s)"), "{why}"),
            other => panic!("expected give-up, got {other:?}"),
        }
        let mut lonely = Schedule::searching(t0, t.find_timeout);
        match lonely
            .searching_due(t0 + t.find_timeout, &t, 0, true)
            .as_slice()
        {
            [Due::GiveUp(why)] => assert!(why.contains("no providers"), "{why}"),
            other => panic!("expected give-up, got {other:?}"),
        }
    }

    #[test]
    fn an_active_swarm_searches_for_peers_with_a_doubling_interval() {
        let t0 = Instant::now();
        let t = timing();
        let mut s = Schedule::active(t0);
        assert_eq!(
            s.active_due(t0, &t, facts(0)),
            vec![],
            "not before the first interval"
        );
        // The loop's tick.
        let tick = Duration::from_millis(250);
        let mut at = t0 + tick;
        let mut searches = Vec::new();
        let mut exchanges = Vec::new();
        while at < t0 + 200 * SEC {
            let ms = (at - t0).as_millis();
            for d in s.active_due(at, &t, facts(2)) {
                match d {
                    Due::Search => {
                        // As the loop does: the lookup starts, and ends before the next tick.
                        assert!(s.on_search(at));
                        s.on_search_done();
                        searches.push(ms);
                    }
                    Due::PeerExchange => exchanges.push(ms),
                    other => panic!("unexpected {other:?}"),
                }
            }
            at += tick;
        }
        let gaps = |v: &[u128]| -> Vec<u128> { v.windows(2).map(|w| w[1] - w[0]).collect() };
        assert_eq!(searches[0], 1000, "{searches:?}");
        let g = gaps(&searches);
        assert_eq!(&g[..6], &[2000, 2000, 4000, 8000, 16000, 30000]);
        assert!(g[6..].iter().all(|&g| g == 30000), "{g:?}");
        // Peer exchange starts sooner (the loop asks once at activation) and doubles too.
        assert_eq!(exchanges[0], 250, "{exchanges:?}");
        let g = gaps(&exchanges);
        assert_eq!(&g[..4], &[250, 500, 1000, 2000], "{exchanges:?}");
        assert!(g.iter().all(|&g| g <= 30000), "{g:?}");
        let mut full = Schedule::active(t0);
        assert_eq!(
            full.active_due(t0 + 5 * SEC, &t, facts(40)),
            vec![],
            "enough peers"
        );
        let mut seed = Schedule::active(t0);
        let seeding = ActiveFacts {
            finished: true,
            ..facts(2)
        };
        let asks: Vec<_> = (1..100)
            .filter(|&k| !seed.active_due(t0 + k * SEC, &t, seeding).is_empty())
            .collect();
        assert!(asks.is_empty(), "a seed looked for peers at {asks:?} s");
    }

    #[test]
    fn an_unstored_announce_is_retried_and_a_stored_one_is_not() {
        let t0 = Instant::now();
        let t = timing();
        let mut s = Schedule::active(t0);
        s.on_announce(t0);
        assert!(s.announced());
        assert_eq!(
            s.active_due(t0 + 5 * SEC, &t, facts(40)),
            vec![Due::Announce],
            "no answer yet"
        );
        s.on_announce(t0 + 5 * SEC);
        s.on_announced(t0 + 6 * SEC, 0);
        assert_eq!(
            s.active_due(t0 + 8 * SEC, &t, facts(40)),
            vec![Due::Announce]
        );
        s.on_announce(t0 + 8 * SEC);
        s.on_announced(t0 + 9 * SEC, 3);
        assert_eq!(s.active_due(t0 + 100 * SEC, &t, facts(40)), vec![]);
    }

    #[test]
    fn progress_is_saved_when_dirty_at_most_once_per_interval() {
        let t0 = Instant::now();
        let t = timing();
        let mut s = Schedule::active(t0);
        let dirty = ActiveFacts {
            dirty: true,
            ..facts(40)
        };
        assert_eq!(s.active_due(t0 + SEC / 2, &t, dirty), vec![]);
        assert_eq!(s.active_due(t0 + SEC, &t, dirty), vec![Due::Save]);
        s.on_save(t0 + SEC);
        assert_eq!(s.active_due(t0 + SEC + SEC / 2, &t, dirty), vec![]);
        let saving = ActiveFacts {
            saving: true,
            ..dirty
        };
        assert_eq!(
            s.active_due(t0 + 3 * SEC, &t, saving),
            vec![],
            "one save at a time"
        );
        let finished = ActiveFacts {
            finished: true,
            ..dirty
        };
        assert_eq!(
            s.active_due(t0 + 3 * SEC, &t, finished),
            vec![],
            "nothing to resume"
        );
        assert_eq!(s.active_due(t0 + 3 * SEC, &t, facts(40)), vec![], "clean");
    }
}

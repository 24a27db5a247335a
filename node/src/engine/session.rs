//! Per-peer session state, sans-IO: the IDs of our outstanding asks and
//! their deadlines, and what each side last told the other it holds, so
//! holdings travel as small diffs. Time is passed in; nothing here does IO.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use protocol::wire::{HaveInfo, HaveSet, Message, MAX_GAINED_PER_MESSAGE};
use protocol::{Bitfield, ChunkIndex, ContentId};

/// What one of our asks was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The manifest of a content we search.
    Manifest(ContentId),
    /// One chunk.
    Chunk(ContentId, ChunkIndex),
    /// Peer exchange.
    Peers(ContentId),
}

/// Session tunables.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// An ask unanswered this long is given up.
    pub ask_timeout: Duration,
    /// A session with nothing pending and no message either way for this long is closed.
    pub idle_after: Duration,
    /// Most asks outstanding to one peer.
    pub max_pending_per_peer: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ask_timeout: Duration::from_secs(60),
            idle_after: Duration::from_secs(30),
            max_pending_per_peer: 1024,
        }
    }
}

/// Why a peer's have message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaveError {
    /// Wrong size, or an index past the end: malformed.
    Malformed,
    /// A diff with no full have before it.
    NoBase,
}

#[derive(Debug)]
struct Session {
    next_rid: u32,
    pending: HashMap<u32, Pending>,
    /// What we last told the peer we hold, per content.
    told: HashMap<ContentId, Bitfield>,
    /// What the peer last told us it holds, per content.
    heard: HashMap<ContentId, Bitfield>,
    /// Our stream to the peer is open (we sent on it and have not closed it).
    writing: bool,
    last_active: Instant,
}

impl Session {
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.told.is_empty() && self.heard.is_empty() && !self.writing
    }
}

/// Every peer's session.
#[derive(Debug)]
pub struct Sessions<P> {
    config: SessionConfig,
    peers: HashMap<P, Session>,
    /// Ask deadlines in order (all asks share one timeout); answered ones
    /// are skipped when they come up.
    deadlines: VecDeque<(Instant, P, u32)>,
}

impl<P: Copy + Eq + Hash> Sessions<P> {
    /// No sessions yet.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            deadlines: VecDeque::new(),
        }
    }

    fn session(&mut self, now: Instant, peer: P) -> &mut Session {
        let s = self.peers.entry(peer).or_insert_with(|| Session {
            next_rid: 0,
            pending: HashMap::new(),
            told: HashMap::new(),
            heard: HashMap::new(),
            writing: false,
            last_active: now,
        });
        s.last_active = now;
        s
    }

    /// Records an ask to `peer` and returns its request ID, or `None` if
    /// too many asks to it are outstanding.
    pub fn ask(&mut self, now: Instant, peer: P, what: Pending) -> Option<u32> {
        let max = self.config.max_pending_per_peer;
        let deadline = now + self.config.ask_timeout;
        let s = self.session(now, peer);
        if s.pending.len() >= max {
            return None;
        }
        s.writing = true;
        let mut rid = s.next_rid;
        while s.pending.contains_key(&rid) {
            rid = rid.wrapping_add(1);
        }
        s.next_rid = rid.wrapping_add(1);
        s.pending.insert(rid, what);
        self.deadlines.push_back((deadline, peer, rid));
        self.compact();
        Some(rid)
    }

    /// An ask to `peer` for `what` is still outstanding.
    pub fn is_pending(&self, peer: &P, what: Pending) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|s| s.pending.values().any(|&p| p == what))
    }

    /// `peer` answered ask `rid`: what it was for, or `None` for an ID we
    /// are not waiting on (given up, or never asked).
    pub fn answered(&mut self, now: Instant, peer: P, rid: u32) -> Option<Pending> {
        self.peers.get_mut(&peer).and_then(|s| {
            s.last_active = now;
            s.pending.remove(&rid)
        })
    }

    /// A message other than an answer or a have arrived from `peer`.
    pub fn heard_from(&mut self, now: Instant, peer: P) {
        self.session(now, peer);
    }

    /// We are about to send `peer` something other than an ask or a have.
    pub fn sending(&mut self, now: Instant, peer: P) {
        self.session(now, peer).writing = true;
    }

    /// The asks past their deadline, given up now.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(P, Pending)> {
        let mut expired = Vec::new();
        while let Some(&(deadline, peer, rid)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(what) = self
                .peers
                .get_mut(&peer)
                .and_then(|s| s.pending.remove(&rid))
            {
                expired.push((peer, what));
            }
        }
        expired
    }

    /// When `handle_timeout` next has work (possibly early).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.front().map(|d| d.0)
    }

    /// Our stream to `peer` ended (or we closed it): what we told it is
    /// forgotten, and our outstanding asks, which it may never have seen, fail.
    pub fn writer_ended(&mut self, peer: &P) -> Vec<Pending> {
        self.end(peer, |s| {
            s.told.clear();
            s.writing = false;
        })
    }

    /// `peer`'s stream to us ended: what it told us is forgotten, and our
    /// outstanding asks, whose answers would have come on it, fail.
    pub fn reader_ended(&mut self, peer: &P) -> Vec<Pending> {
        self.end(peer, |s| s.heard.clear())
    }

    fn end(&mut self, peer: &P, forget: impl FnOnce(&mut Session)) -> Vec<Pending> {
        let Some(s) = self.peers.get_mut(peer) else {
            return Vec::new();
        };
        forget(s);
        let failed = s.pending.drain().map(|(_, what)| what).collect();
        if s.is_empty() {
            self.peers.remove(peer);
        }
        failed
    }

    /// Peers whose stream from us has had nothing outstanding and no traffic
    /// either way for `idle_after`: time to close it.
    pub fn idle(&self, now: Instant) -> Vec<P> {
        self.peers
            .iter()
            .filter(|(_, s)| {
                s.writing
                    && s.pending.is_empty()
                    && now.saturating_duration_since(s.last_active) >= self.config.idle_after
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// Whether `peer` has a session.
    pub fn contains(&self, peer: &P) -> bool {
        self.peers.contains_key(peer)
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The have message telling `peer` our holdings `info` of `id` (which
    /// has `chunks` chunks): the chunks gained since we last told it, or the
    /// whole set when that is smaller or it has heard nothing yet.
    pub fn have_message(
        &mut self,
        now: Instant,
        peer: P,
        id: ContentId,
        chunks: u32,
        info: &HaveInfo,
    ) -> Message {
        let s = self.session(now, peer);
        s.writing = true;
        let Ok(held) = info.have.to_bitfield(chunks) else {
            return Message::Have {
                id,
                info: info.clone(),
            };
        };
        let diff = s.told.get(&id).and_then(|old| gained_since(old, &held));
        s.told.insert(id, held);
        match diff {
            Some(gained) => Message::Gained {
                id,
                chunks: gained,
                interested: info.interested,
                choking: info.choking,
            },
            None => Message::Have {
                id,
                info: info.clone(),
            },
        }
    }

    /// The full holdings a have message from `peer` about `id` (with
    /// `chunks` chunks) amounts to.
    pub fn read_have(
        &mut self,
        now: Instant,
        peer: P,
        chunks: u32,
        msg: &Message,
    ) -> Result<HaveInfo, HaveError> {
        let s = self.session(now, peer);
        match msg {
            Message::Have { id, info } => {
                let held = info
                    .have
                    .to_bitfield(chunks)
                    .map_err(|_| HaveError::Malformed)?;
                s.heard.insert(*id, held);
                Ok(info.clone())
            }
            Message::Gained {
                id,
                chunks: gained,
                interested,
                choking,
            } => {
                let held = s.heard.get_mut(id).ok_or(HaveError::NoBase)?;
                if gained.iter().any(|&i| i >= chunks) {
                    return Err(HaveError::Malformed);
                }
                for &i in gained {
                    held.set(i);
                }
                Ok(HaveInfo {
                    have: HaveSet::from_bitfield(held),
                    interested: *interested,
                    choking: *choking,
                })
            }
            _ => Err(HaveError::Malformed),
        }
    }

    /// `peer` dropped us from swarm `id`: the next have we send it is whole.
    pub fn forget_told(&mut self, peer: &P, id: &ContentId) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.told.remove(id);
        }
    }

    /// Keeps the deadline queue from growing far past the live asks.
    fn compact(&mut self) {
        let live: usize = self.peers.values().map(|s| s.pending.len()).sum();
        if self.deadlines.len() > 4 * live + 64 {
            let peers = &self.peers;
            self.deadlines
                .retain(|(_, p, rid)| peers.get(p).is_some_and(|s| s.pending.contains_key(rid)));
        }
    }
}

/// Chunks in `now` and not in `old`, if that is the cheaper message (and
/// nothing was lost, which a diff cannot say).
fn gained_since(old: &Bitfield, now: &Bitfield) -> Option<Vec<ChunkIndex>> {
    if old.len() != now.len() || old.iter_ones().any(|i| !now.get(i)) {
        return None;
    }
    let bitfield_bytes = (now.len() as usize).div_ceil(8);
    let mut gained = Vec::new();
    for i in now.iter_ones().filter(|&i| !old.get(i)) {
        gained.push(i);
        // An index costs up to 5 bytes of CBOR; past the bitfield's size, send that.
        if gained.len() > MAX_GAINED_PER_MESSAGE || gained.len() * 5 > bitfield_bytes + 16 {
            return None;
        }
    }
    Some(gained)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn id() -> ContentId {
        ContentId::from_bytes([3; 32])
    }

    fn info(bf: &Bitfield) -> HaveInfo {
        HaveInfo {
            have: HaveSet::from_bitfield(bf),
            interested: true,
            choking: false,
        }
    }

    #[test]
    fn asks_get_distinct_ids_and_answers_match_them() {
        let t0 = Instant::now();
        let mut s = Sessions::new(SessionConfig::default());
        let a = s.ask(t0, 1u8, Pending::Chunk(id(), 4)).unwrap();
        let b = s.ask(t0, 1u8, Pending::Chunk(id(), 5)).unwrap();
        assert_ne!(a, b);
        assert_eq!(s.answered(t0, 1, b), Some(Pending::Chunk(id(), 5)));
        assert_eq!(s.answered(t0, 1, b), None, "an answer counts once");
        assert_eq!(
            s.answered(t0, 2, a),
            None,
            "another peer cannot answer our ask"
        );
        assert_eq!(s.answered(t0, 1, a), Some(Pending::Chunk(id(), 4)));
    }

    #[test]
    fn a_chunk_ask_is_pending_until_answered_or_expired() {
        // The engine relies on this to never ask a peer twice for one chunk
        // while the first ask can still be answered.
        let t0 = Instant::now();
        let cfg = SessionConfig::default();
        let mut s = Sessions::new(cfg.clone());
        let what = Pending::Chunk(id(), 7);
        assert!(!s.is_pending(&1u8, what));
        let rid = s.ask(t0, 1u8, what).unwrap();
        s.ask(t0, 2u8, Pending::Chunk(id(), 8)).unwrap();
        assert!(s.is_pending(&1, what));
        assert!(!s.is_pending(&2, what), "asked of another peer");
        assert!(!s.is_pending(&1, Pending::Chunk(id(), 8)), "another chunk");
        s.answered(t0 + SEC, 1, rid);
        assert!(!s.is_pending(&1, what), "answered");
        s.ask(t0 + SEC, 1u8, what).unwrap();
        s.handle_timeout(t0 + SEC + cfg.ask_timeout);
        assert!(!s.is_pending(&1, what), "expired");
    }

    #[test]
    fn unanswered_asks_expire_on_the_virtual_clock() {
        let t0 = Instant::now();
        let cfg = SessionConfig::default();
        let mut s = Sessions::new(cfg.clone());
        s.ask(t0, 1u8, Pending::Manifest(id())).unwrap();
        let answered = s.ask(t0 + SEC, 1u8, Pending::Peers(id())).unwrap();
        s.ask(t0 + 2 * SEC, 2u8, Pending::Chunk(id(), 0)).unwrap();
        s.answered(t0 + 3 * SEC, 1, answered);
        assert_eq!(s.poll_timeout(), Some(t0 + cfg.ask_timeout));
        assert!(s.handle_timeout(t0 + cfg.ask_timeout - SEC).is_empty());
        assert_eq!(
            s.handle_timeout(t0 + cfg.ask_timeout + 5 * SEC),
            vec![(1, Pending::Manifest(id())), (2, Pending::Chunk(id(), 0))],
            "the answered ask does not expire"
        );
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn asks_per_peer_are_bounded() {
        let t0 = Instant::now();
        let mut s = Sessions::new(SessionConfig {
            max_pending_per_peer: 3,
            ..SessionConfig::default()
        });
        for i in 0..3 {
            assert!(s.ask(t0, 1u8, Pending::Chunk(id(), i)).is_some());
        }
        assert_eq!(s.ask(t0, 1u8, Pending::Chunk(id(), 9)), None);
        assert!(
            s.ask(t0, 2u8, Pending::Chunk(id(), 9)).is_some(),
            "per peer"
        );
    }

    #[test]
    fn the_deadline_queue_stays_near_the_live_asks() {
        let t0 = Instant::now();
        let mut s = Sessions::new(SessionConfig::default());
        for i in 0..10_000u32 {
            let rid = s.ask(t0, 1u8, Pending::Chunk(id(), i)).unwrap();
            s.answered(t0, 1, rid);
        }
        assert!(s.deadlines.len() <= 64 + 4, "{}", s.deadlines.len());
    }

    #[test]
    fn a_closed_stream_fails_the_asks_and_forgets_its_side_only() {
        let t0 = Instant::now();
        let mut s = Sessions::new(SessionConfig::default());
        s.ask(t0, 1u8, Pending::Chunk(id(), 7)).unwrap();
        assert_eq!(s.writer_ended(&1), vec![Pending::Chunk(id(), 7)]);
        assert!(!s.contains(&1));
        assert!(s.handle_timeout(t0 + Duration::from_secs(3600)).is_empty());
        // What the peer told us survives the end of our stream to it (its
        // stream to us goes on, with diffs against it), and vice versa.
        let mut held = Bitfield::new(10);
        held.set(2);
        let whole = Message::Have {
            id: id(),
            info: info(&held),
        };
        s.read_have(t0, 1u8, 10, &whole).unwrap();
        let told = s.have_message(t0, 1u8, id(), 10, &info(&held));
        assert!(matches!(told, Message::Have { .. }));
        s.writer_ended(&1);
        let diff = Message::Gained {
            id: id(),
            chunks: vec![3],
            interested: true,
            choking: false,
        };
        assert!(s.read_have(t0, 1u8, 10, &diff).is_ok(), "heard survives");
        let again = s.have_message(t0, 1u8, id(), 10, &info(&held));
        assert!(
            matches!(again, Message::Have { .. }),
            "told was forgotten: whole again"
        );
        s.reader_ended(&1);
        assert_eq!(s.read_have(t0, 1u8, 10, &diff), Err(HaveError::NoBase));
        // A peer that dropped us from the swarm hears the whole set next time.
        s.have_message(t0, 1u8, id(), 10, &info(&held));
        s.forget_told(&1, &id());
        let fresh = s.have_message(t0, 1u8, id(), 10, &info(&held));
        assert!(matches!(fresh, Message::Have { .. }));
    }

    #[test]
    fn quiet_sessions_with_nothing_pending_go_idle() {
        let t0 = Instant::now();
        let cfg = SessionConfig::default();
        let mut s = Sessions::new(cfg.clone());
        s.sending(t0, 1u8);
        s.ask(t0, 2u8, Pending::Peers(id())).unwrap();
        s.sending(t0, 3u8);
        s.heard_from(t0 + 20 * SEC, 3u8);
        s.heard_from(t0, 4u8);
        let mut idle = s.idle(t0 + cfg.idle_after);
        idle.sort();
        assert_eq!(
            idle,
            vec![1],
            "2 waits on an answer, 3 spoke recently, we never wrote to 4"
        );
    }

    #[test]
    fn holdings_travel_as_diffs_and_add_up_to_the_same_set() {
        let t0 = Instant::now();
        let (mut ours, mut theirs) = (
            Sessions::new(SessionConfig::default()),
            Sessions::new(SessionConfig::default()),
        );
        let mut held = Bitfield::new(1000);
        held.set(1);
        let first = ours.have_message(t0, 1u8, id(), 1000, &info(&held));
        assert!(matches!(first, Message::Have { .. }), "the first is whole");
        assert_eq!(
            theirs.read_have(t0, 9u8, 1000, &first).unwrap(),
            info(&held)
        );
        held.set(500);
        held.set(999);
        let diff = ours.have_message(t0, 1u8, id(), 1000, &info(&held));
        assert_eq!(
            diff,
            Message::Gained {
                id: id(),
                chunks: vec![500, 999],
                interested: true,
                choking: false
            }
        );
        assert_eq!(theirs.read_have(t0, 9u8, 1000, &diff).unwrap(), info(&held));
        // Many new chunks at once: the whole set is smaller.
        for i in 0..1000 {
            held.set(i);
        }
        let whole = ours.have_message(t0, 1u8, id(), 1000, &info(&held));
        assert!(matches!(whole, Message::Have { .. }));
        assert_eq!(
            theirs.read_have(t0, 9u8, 1000, &whole).unwrap(),
            info(&held)
        );
    }

    #[test]
    fn bad_have_messages_are_refused() {
        let t0 = Instant::now();
        let mut s = Sessions::new(SessionConfig::default());
        let diff = Message::Gained {
            id: id(),
            chunks: vec![1],
            interested: false,
            choking: false,
        };
        assert_eq!(s.read_have(t0, 1u8, 10, &diff), Err(HaveError::NoBase));
        let whole = Message::Have {
            id: id(),
            info: info(&Bitfield::new(10)),
        };
        s.read_have(t0, 1u8, 10, &whole).unwrap();
        let past_end = Message::Gained {
            id: id(),
            chunks: vec![10],
            interested: false,
            choking: false,
        };
        assert_eq!(
            s.read_have(t0, 1u8, 10, &past_end),
            Err(HaveError::Malformed)
        );
        let mut other = Bitfield::new(100);
        other.set(50);
        let wrong_size = Message::Have {
            id: id(),
            info: info(&other),
        };
        assert_eq!(
            s.read_have(t0, 1u8, 10, &wrong_size),
            Err(HaveError::Malformed)
        );
    }
}

//! The fluid bandwidth model.
//!
//! Each (uploader, downloader) pair has one connection that sends the chunks
//! it was asked for one after another, as the node's per-peer session stream
//! does. An uplink is shared equally among its connections that have data to
//! send (TCP's fair share), a downlink likewise; a connection runs at the
//! smaller of its two shares. With uncapped downloads (the default, as in
//! `testnet distribution`) this is exactly equal sharing of each uplink, which
//! is also max-min fair. A chunk completes when all its bytes have flowed.
//!
//! A rate changes only when a connection on the same uplink (or capped
//! downlink) starts or stops, so each change touches a handful of flows;
//! completions are scheduled with a generation number and stale ones are
//! skipped, so there is no per-event scan over the swarm.

use std::collections::VecDeque;

use protocol::ChunkIndex;

use super::queue::{Nanos, SECOND};

/// Index of a flow in the slab.
pub type FlowId = u32;

/// A chunk queued on a connection.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Which chunk.
    pub index: ChunkIndex,
    /// Its length in bytes.
    pub bytes: u32,
    /// Bytes it takes on the wire (headers included): what flows.
    pub wire: u32,
    /// Its Merkle proof, as the uploader's transfer produced it.
    pub proof: Vec<u8>,
}

/// One connection with data to send.
#[derive(Debug)]
struct Flow {
    up: u32,
    down: u32,
    queue: VecDeque<Chunk>,
    /// Bytes of the head chunk still to flow, as of `last`.
    remaining: f64,
    /// Bytes per second since `last`.
    rate: f64,
    last: Nanos,
    generation: u64,
    live: bool,
}

/// A head chunk that finished flowing.
#[derive(Debug)]
pub struct Delivered {
    /// Uploader.
    pub up: u32,
    /// Downloader.
    pub down: u32,
    /// The chunk.
    pub chunk: Chunk,
    /// The next chunk on this connection started flowing now: its length.
    pub next_started: Option<u32>,
}

/// Every link and every connection with data to send.
#[derive(Debug)]
pub struct Net {
    up_rate: Vec<f64>,
    down_rate: Vec<f64>,
    up_flows: Vec<Vec<FlowId>>,
    down_flows: Vec<Vec<FlowId>>,
    flows: Vec<Flow>,
    free: Vec<FlowId>,
    /// Sum of the rates of uplinks with at least one connection sending.
    busy_up: f64,
    /// Completion times to schedule: (time, flow, generation).
    pub scheduled: Vec<(Nanos, FlowId, u64)>,
}

impl Net {
    /// Links for `up` and `down` in bytes per second (`f64::INFINITY`: uncapped).
    pub fn new(up: Vec<f64>, down: Vec<f64>) -> Self {
        let n = up.len();
        Self {
            up_rate: up,
            down_rate: down,
            up_flows: vec![Vec::new(); n],
            down_flows: vec![Vec::new(); n],
            flows: Vec::new(),
            free: Vec::new(),
            busy_up: 0.0,
            scheduled: Vec::new(),
        }
    }

    /// Queues `chunk` from `up` to `down`; returns true if it started flowing at once.
    pub fn enqueue(&mut self, now: Nanos, up: u32, down: u32, chunk: Chunk) -> bool {
        if let Some(&id) = self.up_flows[up as usize]
            .iter()
            .find(|&&id| self.flows[id as usize].down == down)
        {
            self.flows[id as usize].queue.push_back(chunk);
            return false;
        }
        let flow = Flow {
            up,
            down,
            remaining: f64::from(chunk.wire),
            queue: VecDeque::from([chunk]),
            rate: 0.0,
            last: now,
            generation: 0,
            live: true,
        };
        let id = match self.free.pop() {
            Some(id) => {
                // Generations keep counting across reuse, so a stale completion
                // of the slot's previous flow can never match the new one.
                let generation = self.flows[id as usize].generation + 1;
                self.flows[id as usize] = Flow { generation, ..flow };
                id
            }
            None => {
                self.flows.push(flow);
                (self.flows.len() - 1) as FlowId
            }
        };
        if self.up_flows[up as usize].is_empty() {
            self.busy_up += self.up_rate[up as usize];
        }
        self.up_flows[up as usize].push(id);
        self.down_flows[down as usize].push(id);
        self.reshare(now, up, down);
        true
    }

    /// Flow `id`'s head chunk is due to finish at `now` if `generation` is still current.
    pub fn complete(&mut self, now: Nanos, id: FlowId, generation: u64) -> Option<Delivered> {
        let f = self.flows.get_mut(id as usize)?;
        if !f.live || f.generation != generation {
            return None;
        }
        let chunk = f.queue.pop_front()?;
        let (up, down) = (f.up, f.down);
        let next_started = f.queue.front().map(|c| (c.bytes, c.wire));
        match next_started {
            Some((_, wire)) => {
                f.remaining = f64::from(wire);
                f.last = now;
                f.generation += 1;
                let at = finish_at(now, f.remaining, f.rate);
                if let Some(at) = at {
                    self.scheduled.push((at, id, f.generation));
                }
            }
            None => self.remove(now, id),
        }
        Some(Delivered {
            up,
            down,
            chunk,
            next_started: next_started.map(|(bytes, _)| bytes),
        })
    }

    /// `peer` left: every connection from or to it is dropped, unsent chunks with it.
    pub fn drop_peer(&mut self, now: Nanos, peer: u32) {
        let mut ids = self.up_flows[peer as usize].clone();
        ids.extend(self.down_flows[peer as usize].iter().copied());
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if self.flows[id as usize].live {
                self.remove(now, id);
            }
        }
    }

    /// Bytes per second of uplink capacity with something to send now (each
    /// busy uplink counts in full: with uncapped downloads it is all in use).
    pub fn busy_upload(&self) -> f64 {
        self.busy_up.max(0.0)
    }

    /// Uplink rate of `peer` in bytes per second.
    pub fn up_rate(&self, peer: u32) -> f64 {
        self.up_rate[peer as usize]
    }

    /// Connections from `up` with data to send.
    pub fn active_flows(&self, up: u32) -> usize {
        self.up_flows[up as usize].len()
    }

    fn remove(&mut self, now: Nanos, id: FlowId) {
        let f = &mut self.flows[id as usize];
        f.live = false;
        f.queue.clear();
        f.generation += 1;
        let (up, down) = (f.up, f.down);
        self.up_flows[up as usize].retain(|&x| x != id);
        if self.up_flows[up as usize].is_empty() {
            self.busy_up -= self.up_rate[up as usize];
        }
        self.down_flows[down as usize].retain(|&x| x != id);
        self.free.push(id);
        self.reshare(now, up, down);
    }

    /// The share of `up`'s uplink, and of `down`'s downlink if capped, changed:
    /// brings their flows' progress up to `now` and reschedules them.
    fn reshare(&mut self, now: Nanos, up: u32, down: u32) {
        // Indexed loops: `retime` reads the lists' lengths, so they stay in place.
        for k in 0..self.up_flows[up as usize].len() {
            let id = self.up_flows[up as usize][k];
            self.retime(now, id);
        }
        if self.down_rate[down as usize].is_finite() {
            for k in 0..self.down_flows[down as usize].len() {
                let id = self.down_flows[down as usize][k];
                if self.flows[id as usize].up != up {
                    self.retime(now, id);
                }
            }
        }
    }

    fn retime(&mut self, now: Nanos, id: FlowId) {
        let f = &self.flows[id as usize];
        let (up, down) = (f.up as usize, f.down as usize);
        let n_up = self.up_flows[up].len().max(1) as f64;
        let n_down = self.down_flows[down].len().max(1) as f64;
        let rate = (self.up_rate[up] / n_up).min(self.down_rate[down] / n_down);
        let f = &mut self.flows[id as usize];
        let elapsed = now.saturating_sub(f.last) as f64 / SECOND as f64;
        f.remaining = (f.remaining - f.rate * elapsed).max(0.0);
        f.last = now;
        f.rate = rate;
        f.generation += 1;
        if let Some(at) = finish_at(now, f.remaining, rate) {
            self.scheduled.push((at, id, f.generation));
        }
    }
}

/// When `remaining` bytes finish flowing at `rate`; `None` if they never will.
fn finish_at(now: Nanos, remaining: f64, rate: f64) -> Option<Nanos> {
    if rate.is_nan() || rate <= 0.0 {
        return None;
    }
    // An uncapped rate (infinite) finishes at once.
    let secs = remaining / rate;
    Some(now.saturating_add((secs * SECOND as f64).ceil() as Nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(index: u32, bytes: u32) -> Chunk {
        Chunk {
            index,
            bytes,
            wire: bytes,
            proof: Vec::new(),
        }
    }

    /// Runs the net until no completion is left; returns (time, up, down, index) per chunk.
    fn drain(net: &mut Net) -> Vec<(Nanos, u32, u32, u32)> {
        let mut q = super::super::queue::Queue::new();
        let mut out = Vec::new();
        loop {
            for (at, id, g) in net.scheduled.drain(..) {
                q.push(at, (id, g));
            }
            let Some((now, (id, g))) = q.pop() else {
                return out;
            };
            if let Some(d) = net.complete(now, id, g) {
                out.push((now, d.up, d.down, d.chunk.index));
            }
        }
    }

    #[test]
    fn an_uplink_is_shared_equally_and_a_connection_sends_in_order() {
        // 1000 B/s uplink; downloads uncapped.
        let mut net = Net::new(vec![1000.0, 1000.0, 1000.0], vec![f64::INFINITY; 3]);
        assert!(net.enqueue(0, 0, 1, chunk(7, 1000)));
        assert!(!net.enqueue(0, 0, 1, chunk(8, 500)));
        assert!(net.enqueue(0, 0, 2, chunk(9, 1000)));
        let done = drain(&mut net);
        // Two connections at 500 B/s: both first chunks end at 2 s; then chunk 8
        // has the link alone: 500 B at 1000 B/s.
        assert_eq!(
            done,
            vec![
                (2 * SECOND, 0, 1, 7),
                (2 * SECOND, 0, 2, 9),
                (2 * SECOND + SECOND / 2, 0, 1, 8)
            ]
        );
        assert_eq!(net.active_flows(0), 0);
    }

    #[test]
    fn a_capped_downlink_limits_its_connections() {
        // Two uploaders of 1000 B/s into one downlink of 1000 B/s: 500 B/s each.
        let mut net = Net::new(
            vec![1000.0, 1000.0, 0.0],
            vec![f64::INFINITY, f64::INFINITY, 1000.0],
        );
        net.enqueue(0, 0, 2, chunk(1, 1000));
        net.enqueue(0, 1, 2, chunk(2, 1000));
        let mut done = drain(&mut net);
        done.sort();
        assert_eq!(done, vec![(2 * SECOND, 0, 2, 1), (2 * SECOND, 1, 2, 2)]);
    }

    #[test]
    fn a_departed_peer_takes_its_connections_with_it() {
        let mut net = Net::new(vec![1000.0; 3], vec![f64::INFINITY; 3]);
        net.enqueue(0, 0, 1, chunk(1, 1000));
        net.enqueue(0, 0, 2, chunk(2, 1000));
        net.drop_peer(SECOND, 1);
        let done = drain(&mut net);
        // Half of chunk 2 flowed in the first second; the rest at full rate.
        assert_eq!(done, vec![(SECOND + SECOND / 2, 0, 2, 2)]);
    }
}

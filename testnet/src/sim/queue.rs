//! The event queue: a binary heap keyed by (virtual time, sequence number),
//! so events at the same instant run in the order they were scheduled and a
//! run never depends on anything but its inputs.
//!
//! Most events are messages scheduled one fixed latency ahead, so they come
//! in time order: they wait in a FIFO beside the heap (`push_in_order`), and
//! `pop` takes the smaller (time, sequence) of the two heads. The order is
//! exactly that of one heap; only the heap stays small.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Virtual time in nanoseconds since the start of the run.
pub type Nanos = u64;

/// Nanoseconds in one second.
pub const SECOND: Nanos = 1_000_000_000;

/// Pending events, earliest first.
#[derive(Debug)]
pub struct Queue<E> {
    heap: BinaryHeap<Entry<E>>,
    /// Entries in ascending (time, sequence) order.
    fifo: VecDeque<Entry<E>>,
    seq: u64,
}

#[derive(Debug)]
struct Entry<E> {
    at: Nanos,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<E> Queue<E> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            fifo: VecDeque::new(),
            seq: 0,
        }
    }

    /// Schedules `event` at `at`.
    pub fn push(&mut self, at: Nanos, event: E) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            event,
        });
    }

    /// Schedules `event` at `at`, which is usually no earlier than the last
    /// event scheduled this way (a message one latency ahead): then it skips the heap.
    pub fn push_in_order(&mut self, at: Nanos, event: E) {
        if self.fifo.back().is_some_and(|last| last.at > at) {
            self.push(at, event);
            return;
        }
        self.seq += 1;
        self.fifo.push_back(Entry {
            at,
            seq: self.seq,
            event,
        });
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(Nanos, E)> {
        let fifo_first = match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(h)) => (f.at, f.seq) < (h.at, h.seq),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let entry = if fifo_first {
            self.fifo.pop_front()
        } else {
            self.heap.pop()
        };
        entry.map(|e| (e.at, e.event))
    }

    /// Number of events scheduled (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len() + self.fifo.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty() && self.fifo.is_empty()
    }
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_in_scheduling_order() {
        let mut q = Queue::new();
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [(1, "a"), (1, "b"), (5, "c"), (5, "d")]);
        assert!(q.is_empty());
    }

    #[test]
    fn in_order_pushes_interleave_with_the_heap_as_one_queue() {
        let mut q = Queue::new();
        q.push(3, "t3");
        q.push_in_order(1, "m1");
        q.push_in_order(3, "m3");
        q.push(1, "t1");
        q.push_in_order(2, "late");
        q.push_in_order(5, "m5");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            [
                (1, "m1"),
                (1, "t1"),
                (2, "late"),
                (3, "t3"),
                (3, "m3"),
                (5, "m5")
            ]
        );
        assert!(q.is_empty());
    }
}

//! The deadlines a timer keeps: the timer thread's and each event loop's. Earliest first, equal
//! deadlines in the order they came.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::task::Waker;
use std::time::Instant;

/// Tasks to wake, each at its deadline.
#[derive(Default)]
pub(crate) struct Deadlines {
    entries: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl Deadlines {
    /// Wake `waker` at `deadline`.
    pub(crate) fn push(&mut self, deadline: Instant, waker: Waker) {
        self.seq += 1;
        self.entries.push(Reverse(Entry {
            deadline,
            seq: self.seq,
            waker,
        }));
    }

    /// Move the wakers due by `now` into `due` (to be woken once no lock is held); the next
    /// deadline after them.
    pub(crate) fn take_due(&mut self, now: Instant, due: &mut Vec<Waker>) -> Option<Instant> {
        while self
            .entries
            .peek()
            .is_some_and(|Reverse(e)| e.deadline <= now)
        {
            if let Some(Reverse(e)) = self.entries.pop() {
                due.push(e.waker);
            }
        }
        self.entries.peek().map(|Reverse(e)| e.deadline)
    }

    /// Wake every task now, deadline or not: the timer cannot serve them (each wakes to find
    /// its deadline not yet come, and waits some other way).
    pub(crate) fn wake_all(&mut self) {
        for Reverse(e) in self.entries.drain() {
            e.waker.wake();
        }
    }
}

/// A deadline and the task to wake at it (`seq` keeps equal deadlines in arrival order).
struct Entry {
    deadline: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

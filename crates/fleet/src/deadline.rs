//! A deadline in a timer's heap: the time, the task to wake, and an arrival number that keeps
//! equal deadlines in the order they came (the timer thread's and each event loop's heap).

use std::task::Waker;
use std::time::Instant;

/// A deadline and the task to wake at it (`seq` keeps equal deadlines in arrival order).
pub(crate) struct Entry {
    pub(crate) deadline: Instant,
    pub(crate) seq: u64,
    pub(crate) waker: Waker,
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

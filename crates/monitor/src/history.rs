//! The snapshots the monitor has seen, bounded: what its charts draw.

use std::collections::VecDeque;

use fleetbench_metrics::aggregate::Snapshot;

/// The snapshots seen so far (the newest last), bounded.
#[derive(Debug, Clone)]
pub struct History {
    points: VecDeque<Snapshot>,
    cap: usize,
}

impl History {
    pub fn new(cap: usize) -> Self {
        History {
            points: VecDeque::with_capacity(cap),
            cap: cap.max(2),
        }
    }

    pub fn push(&mut self, s: Snapshot) {
        if self.points.len() == self.cap {
            self.points.pop_front();
        }
        self.points.push_back(s);
    }

    pub fn latest(&self) -> Option<&Snapshot> {
        self.points.back()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Snapshot> {
        self.points.iter()
    }
}

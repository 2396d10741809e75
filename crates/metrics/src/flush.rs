//! What the tasks of a run hand the aggregator, at most once a tick: a device's sends,
//! lateness, acknowledgements and connection changes; an observer's deliveries and their
//! latency; errors.

use std::time::Duration;

use crate::hist::LatencyHistogram;

/// The lateness steps sends are counted by (milliseconds after they were due): the report's
/// raw late-send figures (`generator.late_by`).
pub const LATE_BY_MS: [u64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000];

/// Count a send that left `lag_us` after it was due into `late_by` (one count per step it
/// passed).
#[inline]
pub fn count_late(late_by: &mut [u32; LATE_BY_MS.len()], lag_us: u64) {
    for (n, step) in late_by.iter_mut().zip(LATE_BY_MS) {
        if lag_us <= step * 1_000 {
            break;
        }
        *n += 1;
    }
}

/// What a device task hands over, at most once a tick and once more when it ends.
#[derive(Debug, Clone, Default)]
pub struct DeviceFlush {
    /// The device's position in the plan.
    pub device: u32,
    /// Messages sent so far (cumulative): sequence numbers `0..sent` have been published.
    pub sent: u64,
    /// Sends since the last flush that left later than their due time plus the lateness
    /// threshold.
    pub late_sends: u64,
    /// Largest lag behind the schedule since the last flush.
    pub max_lag_us: u64,
    /// Sends since the last flush that left more than [`LATE_BY_MS`]`[i]` late, by `i`.
    pub late_by: [u32; LATE_BY_MS.len()],
    /// PUBACK latencies (QoS 1) or PUBCOMP latencies (QoS 2) since the last flush.
    pub ack_us: Vec<u32>,
    /// Set on the flush after a connection is established: how long CONNECT to CONNACK took.
    pub connect_us: Option<u64>,
    /// A change of connection state, if any since the last flush.
    pub connected: Option<bool>,
    /// Of the messages sent since the last flush, how many were due in each load phase (empty
    /// when the scenario has no phases).
    pub phase_sent: Vec<u64>,
    /// Connections that went down since the last flush and came back (or never did).
    pub downs: Vec<Down>,
    /// The connection went down because the device left on purpose (its publish window over,
    /// or its `drop_at`), not because it was lost.
    pub left: bool,
}

/// A device's connection that went down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Down {
    /// When, from the ramp start (a planned cut: when the plan cut it).
    pub at: Duration,
    /// How long until the device was connected again; None when it never was.
    pub back_after: Option<Duration>,
    /// A fault's plan cut it; otherwise it was lost.
    pub planned: bool,
}

/// What an observer task hands over once a tick.
#[derive(Debug, Clone, Default)]
pub struct ObserverFlush {
    pub observer: u32,
    pub from_intended: LatencyHistogram,
    pub from_send: LatencyHistogram,
    /// Latency from intended of the messages that left on time (within the lateness
    /// threshold): the figures as they would be without the generator's late sends.
    pub on_time: LatencyHistogram,
    pub delivered: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub unexpected: u64,
    pub connected: Option<bool>,
    /// First arrivals and their latency from intended, by the load phase the message was due
    /// in (empty when the scenario has no phases).
    pub phases: Vec<PhaseFlush>,
}

/// One load phase's share of an observer flush.
#[derive(Debug, Clone, Default)]
pub struct PhaseFlush {
    pub delivered: u64,
    pub from_intended: LatencyHistogram,
}

impl DeviceFlush {
    pub fn new(device: u32) -> Self {
        DeviceFlush {
            device,
            ..DeviceFlush::default()
        }
    }

    /// Hand over what was recorded since the last flush and start afresh.
    pub fn take(&mut self) -> DeviceFlush {
        std::mem::replace(self, DeviceFlush::new(self.device))
    }

    /// Count one message sent that was due in load phase `phase`.
    #[inline]
    pub fn count_phase(&mut self, phase: usize) {
        if self.phase_sent.len() <= phase {
            self.phase_sent.resize(phase + 1, 0);
        }
        self.phase_sent[phase] += 1;
    }
}

impl ObserverFlush {
    pub fn new(observer: u32) -> Self {
        ObserverFlush {
            observer,
            from_intended: LatencyHistogram::new(),
            from_send: LatencyHistogram::new(),
            on_time: LatencyHistogram::new(),
            delivered: 0,
            duplicates: 0,
            reordered: 0,
            unexpected: 0,
            connected: None,
            phases: Vec::new(),
        }
    }

    /// The figures of load phase `phase`.
    #[inline]
    pub fn phase(&mut self, phase: usize) -> &mut PhaseFlush {
        if self.phases.len() <= phase {
            self.phases.resize_with(phase + 1, PhaseFlush::default);
        }
        &mut self.phases[phase]
    }

    /// Hand over what was recorded since the last flush and start afresh.
    pub fn take(&mut self) -> ObserverFlush {
        std::mem::replace(self, ObserverFlush::new(self.observer))
    }
}

#[derive(Debug, Clone)]
pub enum Flush {
    Device(DeviceFlush),
    Observer(ObserverFlush),
    /// Something went wrong: `kind` groups errors for display.
    Error {
        kind: crate::ErrorKind,
        detail: String,
    },
}

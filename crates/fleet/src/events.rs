//! Messages devices publish about themselves (statuses, last wills), told apart from data by
//! topic and payload: observers tally them per device, and at the end the tallies are judged
//! against what MQTT promises. (Commands and replies carry a flagged header of their own, see
//! [`crate::header`].)

use std::collections::HashMap;

use fleetbench_metrics::behaviour::{StatusCheck, WillCheck};
use fleetbench_scenario::{topic, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Status,
    Will,
}

struct Source {
    pos: u32,
    kind: EventKind,
    payload: Vec<u8>,
}

/// Topic -> the device messages published on it.
#[derive(Default)]
pub struct Events(HashMap<String, Vec<Source>>);

impl Events {
    pub fn of(plan: &Plan) -> Events {
        let mut map: HashMap<String, Vec<Source>> = HashMap::new();
        for (pos, d) in plan.devices.iter().enumerate() {
            let pos = pos as u32;
            let mut add = |topic: &str, kind, payload: &str| {
                map.entry(topic.to_string()).or_default().push(Source {
                    pos,
                    kind,
                    payload: payload.as_bytes().to_vec(),
                });
            };
            if let Some(s) = &d.status {
                add(&s.topic, EventKind::Status, &s.payload);
            }
            if let Some(w) = &d.will {
                add(&w.topic, EventKind::Will, &w.payload);
            }
        }
        Events(map)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Which device message a publish is, if any.
    pub fn classify(&self, topic: &str, payload: &[u8]) -> Option<(usize, EventKind)> {
        self.0
            .get(topic)?
            .iter()
            .find_map(|s| (s.payload == payload).then_some((s.pos as usize, s.kind)))
    }
}

/// What one observer heard from one device.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heard {
    pub status: u32,
    /// Statuses that came with the retain flag (sent from the broker's store).
    pub status_retained: u32,
    pub will: u32,
}

impl Heard {
    pub fn record(&mut self, kind: EventKind, retained: bool) {
        match kind {
            EventKind::Status => {
                self.status += 1;
                self.status_retained += u32::from(retained);
            }
            EventKind::Will => self.will += 1,
        }
    }

    fn add(&mut self, other: &Heard) {
        self.status += other.status;
        self.status_retained += other.status_retained;
        self.will += other.will;
    }
}

/// How one device's connection went, as far as its status and will are concerned.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceFate {
    pub connected: bool,
    /// Cut its connection while connected: the broker owes its will.
    pub dropped: bool,
    /// Connections of it that faults cut while up: the broker owes a will for each.
    pub cut: u32,
}

impl DeviceFate {
    /// Wills the broker owes for this device: one per connection dropped without a DISCONNECT.
    fn wills_owed(&self) -> u64 {
        u64::from(self.dropped) + u64::from(self.cut)
    }
}

/// Judge statuses and wills: `heard[o][d]` is what observer `o` heard from device `d`.
pub fn judge(
    plan: &Plan,
    heard: &[&[Heard]],
    fates: &[DeviceFate],
) -> (Option<StatusCheck>, Option<WillCheck>) {
    let any_status = plan.devices.iter().any(|d| d.status.is_some());
    let any_will = plan.devices.iter().any(|d| d.will.is_some());
    let mut status = StatusCheck::default();
    let mut wills = WillCheck::default();
    let receivers = plan.receivers();
    for (d, (dev, fate)) in plan.devices.iter().zip(fates).enumerate() {
        status.devices += u64::from(dev.status.is_some() && fate.connected);
        if dev.will.is_some() {
            wills.dropped += fate.wills_owed();
        }
        for members in &receivers {
            let spec = &plan.observers[members[0]];
            let mut got = Heard::default();
            for m in members {
                if let Some(h) = heard.get(*m).and_then(|h| h.get(d)) {
                    got.add(h);
                }
            }
            let hears = |t: &str| spec.filters.iter().any(|f| topic::matches(f, t));
            let late = spec.join_at.is_some();
            if let Some(s) = dev
                .status
                .as_ref()
                .filter(|s| fate.connected && hears(&s.topic))
            {
                // A late observer can only have the status from the broker's store.
                if !late || s.retain {
                    status.expected += 1;
                    if got.status > 0 {
                        status.received += 1;
                    } else {
                        status.missing += 1;
                    }
                }
                if late && s.retain {
                    status.retained_expected += 1;
                    status.not_retained += u64::from(got.status > got.status_retained);
                }
            }
            if let Some(w) = dev.will.as_ref().filter(|w| hears(&w.topic)) {
                let owed = fate.wills_owed();
                let got = u64::from(got.will);
                if owed == 0 {
                    wills.unexpected += got;
                } else if late && !w.retain {
                    // A late observer may have missed them: only more than owed is wrong.
                    wills.unexpected += got.saturating_sub(owed);
                } else if late {
                    // A retained will keeps the last of them for a late observer.
                    wills.expected += 1;
                    wills.received += u64::from(got > 0);
                    wills.missing += u64::from(got == 0);
                } else {
                    wills.expected += owed;
                    wills.received += got.min(owed);
                    wills.missing += owed.saturating_sub(got);
                    wills.unexpected += got.saturating_sub(owed);
                }
            }
        }
    }
    (any_status.then_some(status), any_will.then_some(wills))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let text = r#"
            name = "wills"
            duration = "6s"
            [[group]]
            name = "d"
            count = 3
            topic = "d/{index}/data"
            rate = 1.0
            drop_at = "3s"
            will = { topic = "d/{index}/will", payload = "gone {index}" }
            status = { topic = "d/{index}/status" }
            [[observer]]
            name = "all"
            filters = ["d/#"]
            [[observer]]
            name = "late"
            filters = ["d/+/status"]
            join_at = "4s"
        "#;
        let scenario = fleetbench_scenario::parse("wills.toml", text).expect("valid");
        Plan::build(&scenario, fleetbench_scenario::Shard::WHOLE)
    }

    #[test]
    fn topics_and_payloads_tell_device_messages_apart() {
        let events = Events::of(&plan());
        assert_eq!(
            events.classify("d/2/will", b"gone 2"),
            Some((2, EventKind::Will))
        );
        assert_eq!(
            events.classify("d/1/status", b"online"),
            Some((1, EventKind::Status))
        );
        // Another payload on a will topic is not this device's will; data is not an event.
        assert_eq!(events.classify("d/2/will", b"gone 1"), None);
        assert_eq!(events.classify("d/0/data", b"online"), None);
    }

    #[test]
    fn wills_are_owed_only_by_devices_that_dropped() {
        let plan = plan();
        let fates = [
            DeviceFate {
                connected: true,
                dropped: true,
                cut: 0,
            },
            DeviceFate {
                connected: true,
                dropped: true,
                cut: 0,
            },
            DeviceFate {
                connected: true,
                dropped: false,
                cut: 0,
            },
        ];
        let mut live = vec![Heard::default(); 3];
        live[0].record(EventKind::Will, false);
        // Device 1's will never came; device 2 said goodbye, yet its will came.
        live[2].record(EventKind::Will, false);
        for h in &mut live {
            h.record(EventKind::Status, false);
        }
        let mut late = vec![Heard::default(); 3];
        late[0].record(EventKind::Status, true);
        late[1].record(EventKind::Status, false);
        let (status, wills) = judge(&plan, &[&live, &late], &fates);
        let wills = wills.expect("the scenario has wills");
        assert_eq!((wills.dropped, wills.expected), (2, 2));
        assert_eq!((wills.received, wills.missing, wills.unexpected), (1, 1, 1));
        let status = status.expect("the scenario has statuses");
        // Three from the live observer; the late one heard two, one not from the store.
        assert_eq!(
            (status.expected, status.received, status.missing),
            (6, 5, 1)
        );
        assert_eq!((status.retained_expected, status.not_retained), (3, 1));
    }

    #[test]
    fn each_connection_a_fault_cut_owes_a_will() {
        // Device 0 was cut twice and one will came; device 1 was cut once and dropped at the
        // end: two owed, three came.
        let plan = plan();
        let fates = [
            DeviceFate {
                connected: true,
                dropped: false,
                cut: 2,
            },
            DeviceFate {
                connected: true,
                dropped: true,
                cut: 1,
            },
            DeviceFate::default(),
        ];
        let mut live = vec![Heard::default(); 3];
        live[0].record(EventKind::Will, false);
        for _ in 0..3 {
            live[1].record(EventKind::Will, false);
        }
        let (_, wills) = judge(&plan, &[&live], &fates);
        let wills = wills.expect("the scenario has wills");
        assert_eq!((wills.dropped, wills.expected), (4, 4));
        assert_eq!((wills.received, wills.missing, wills.unexpected), (3, 1, 1));
    }
}

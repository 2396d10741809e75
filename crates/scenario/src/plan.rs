//! Expansion of a scenario into a load plan: one entry per virtual device and per observer.

use std::time::Duration;

use crate::model::{Qos, Scenario};
use crate::topic;

/// Which slice of the fleet this process runs: shard `index` of `count` (`--shard i/n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// The half-open range of device indices of a group of `n` that this shard runs.
    pub fn slice(&self, n: u32) -> std::ops::Range<u32> {
        let per = u64::from(n) * u64::from(self.index) / u64::from(self.count);
        let end = u64::from(n) * (u64::from(self.index) + 1) / u64::from(self.count);
        per as u32..end as u32
    }
}

/// One virtual device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Dense id over the whole scenario (all groups, all shards): travels in every message.
    pub id: u32,
    pub group: usize,
    pub index: u32,
    pub client_id: String,
    pub topic: String,
    pub period: Duration,
    pub qos: Qos,
    pub payload_size: u32,
    pub keep_alive: Duration,
    /// When this device connects, counted from the start of the connect ramp.
    pub connect_at: Duration,
    /// Offset of its first message after it has connected, in `[0, period)`, drawn from the
    /// scenario's seed so that devices do not all publish at the same instant.
    pub phase: Duration,
}

/// One observer client.
#[derive(Debug, Clone)]
pub struct ObserverSpec {
    pub id: u32,
    pub group: usize,
    pub client_id: String,
    pub filters: Vec<String>,
    pub qos: Qos,
    /// For each device of the plan (by position in [`Plan::devices`]), whether this observer's
    /// filters match its topic, so that it should receive every message of that device.
    pub expects: Vec<bool>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub devices: Vec<DeviceSpec>,
    pub observers: Vec<ObserverSpec>,
    /// Total devices in the scenario over all shards: the range of device ids.
    pub total_devices: u32,
}

impl Plan {
    pub fn build(scenario: &Scenario, shard: Shard) -> Plan {
        let mut rng = SplitMix64(scenario.seed ^ 0x9E37_79B9_7F4A_7C15);
        let mut devices = Vec::new();
        let mut first_id = 0u32;
        for (gi, g) in scenario.groups.iter().enumerate() {
            let period = g.period();
            let slice = shard.slice(g.count);
            for index in 0..g.count {
                // Draw for every device of every shard so that a device's phase does not depend
                // on how the fleet is sharded.
                let phase = period.mul_f64(rng.unit());
                if !slice.contains(&index) {
                    continue;
                }
                let connect_at = match g.connect_rate {
                    Some(r) => Duration::from_secs_f64(f64::from(index - slice.start) / r),
                    None => Duration::ZERO,
                };
                devices.push(DeviceSpec {
                    id: first_id + index,
                    group: gi,
                    index,
                    client_id: topic::render(&g.client_id, &g.name, index),
                    topic: topic::render(&g.topic, &g.name, index),
                    period,
                    qos: g.qos,
                    payload_size: g.payload_size,
                    keep_alive: g.keep_alive,
                    connect_at,
                    phase,
                });
            }
            first_id += g.count;
        }
        let mut observers = Vec::new();
        for (gi, o) in scenario.observers.iter().enumerate() {
            let expects: Vec<bool> = devices
                .iter()
                .map(|d| o.filters.iter().any(|f| topic::matches(f, &d.topic)))
                .collect();
            for i in 0..o.count {
                let suffix = if shard.count > 1 {
                    format!("-s{}", shard.index)
                } else {
                    String::new()
                };
                observers.push(ObserverSpec {
                    id: observers.len() as u32,
                    group: gi,
                    client_id: format!("fleetbench-{}-{}-{i}{suffix}", scenario.name, o.name),
                    filters: o.filters.clone(),
                    qos: o.qos,
                    expects: expects.clone(),
                });
            }
        }
        Plan {
            devices,
            observers,
            total_devices: first_id,
        }
    }

    /// Messages each observer should receive per second when every device keeps its rate.
    pub fn expected_deliveries_per_s(&self) -> f64 {
        self.observers
            .iter()
            .map(|o| {
                self.devices
                    .iter()
                    .zip(&o.expects)
                    .filter(|(_, e)| **e)
                    .map(|(d, _)| 1.0 / d.period.as_secs_f64())
                    .sum::<f64>()
            })
            .sum()
    }
}

/// A small, portable, seedable generator: the same seed gives the same plan on any machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

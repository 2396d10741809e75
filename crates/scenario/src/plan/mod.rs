//! Expansion of a scenario into a load plan: one entry per virtual device and per observer.

mod cuts;

use std::time::Duration;

use std::sync::Arc;

use crate::load::{Arrivals, LoadShape, Schedule, SplitMix64};
use crate::model::{
    Backoff, DeviceGroup, DeviceMessage, Mqtt5Publish, Offline, Protocol, Qos, Scenario, WhileDown,
};
use crate::payload::Payload;
use crate::shard::Shard;
use crate::topic;

/// One virtual device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Dense id over the whole scenario (all groups, all shards): travels in every message.
    pub id: u32,
    pub group: usize,
    pub group_name: String,
    pub index: u32,
    pub client_id: String,
    pub topic: String,
    /// Messages per second before the load phases scale it.
    pub rate: f64,
    pub arrivals: Arrivals,
    pub qos: Qos,
    pub payload: Arc<Payload>,
    pub keep_alive: Duration,
    /// When this device connects, counted from the start of the connect ramp.
    pub connect_at: Duration,
    /// Offset of its first message in `[0, 1 / rate)` (at rate multiple 1), drawn from the
    /// scenario's seed so that devices do not all publish at the same instant.
    pub offset: Duration,
    /// Seed of this device's own random draws (Poisson gaps, payload values).
    pub seed: u64,
    /// Published on every connect.
    pub status: Option<MessageSpec>,
    /// Left with the broker at connect.
    pub will: Option<MessageSpec>,
    /// When the device drops its connection for good, from the ramp start.
    pub drop_at: Option<Duration>,
    /// Command and reply topics, when the device takes commands.
    pub commands: Option<CommandTopics>,
    pub reconnect: Backoff,
    pub while_down: WhileDown,
    /// MQTT 5 properties of its data messages, rendered for this device.
    pub mqtt5: Option<Arc<Mqtt5Publish>>,
    /// When faults cut its connection (no DISCONNECT; it reconnects by its backoff), from the
    /// ramp start, in order.
    pub cuts: Vec<Duration>,
}

/// Room in a packet beyond what a scenario's messages hold: fixed header, packet identifier,
/// the short properties, a user name and password.
pub const PACKET_OVERHEAD: usize = 1024;

/// A device's status or will, rendered for that device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSpec {
    pub topic: String,
    pub payload: String,
    pub qos: Qos,
    pub retain: bool,
}

impl MessageSpec {
    fn render(m: &DeviceMessage, group: &str, index: u32, shard: u32) -> MessageSpec {
        MessageSpec {
            topic: topic::render(&m.topic, group, index, shard),
            payload: topic::render(&m.payload, group, index, shard),
            qos: m.qos,
            retain: m.retain,
        }
    }
}

/// One device's command and reply topics.
#[derive(Debug, Clone)]
pub struct CommandTopics {
    pub topic: String,
    pub reply: String,
    pub qos: Qos,
}

/// One controller client: commands every device of its group in this shard.
#[derive(Debug, Clone)]
pub struct ControllerSpec {
    pub name: String,
    pub client_id: String,
    /// The devices it commands, by position in [`Plan::devices`].
    pub targets: Vec<usize>,
    /// Commands per second to each device.
    pub rate: f64,
    pub seed: u64,
}

impl DeviceSpec {
    /// The device's arrival times, from the ramp start.
    pub fn schedule(&self) -> Schedule {
        Schedule::new(self.rate, self.arrivals, self.seed, self.offset)
    }

    /// The largest MQTT packet the device's own messages make, sent or received: a data
    /// message (topic, payload, MQTT 5 properties), its status, its CONNECT with its will, a
    /// command and its reply; with [`PACKET_OVERHEAD`] for headers, identifiers and
    /// credentials. A client's packet limit is sized from it, so that anything a scenario
    /// passes `check` with can be sent.
    pub fn largest_packet(&self) -> usize {
        let properties = self.mqtt5.as_ref().map_or(0, |m| {
            (m.user_properties.iter())
                .map(|(k, v)| k.len() + v.len() + 5)
                .sum()
        });
        let data = self.topic.len() + self.payload.max_size() + properties;
        let status = (self.status.as_ref()).map_or(0, |s| s.topic.len() + s.payload.len());
        let connect = self.client_id.len()
            + (self.will.as_ref()).map_or(0, |w| w.topic.len() + w.payload.len());
        let commands = (self.commands.as_ref()).map_or(0, |c| {
            c.topic.len().max(c.reply.len()) + crate::payload::HEADER_LEN
        });
        [data, status, connect, commands]
            .into_iter()
            .max()
            .unwrap_or(0)
            + PACKET_OVERHEAD
    }

    /// Seed of the device's payload values (independent of its schedule's draws).
    pub fn payload_seed(&self) -> u64 {
        SplitMix64(self.seed ^ 0xA5A5_5A5A_F00D_CAFE).next_u64()
    }
}

impl DeviceSpec {
    /// Device `index` of group `g` (number `group` in the scenario), id `id`, its patterns
    /// rendered for shard `shard`; schedule figures (connect time, offset, seed) are left at
    /// zero.
    fn render(
        g: &DeviceGroup,
        index: u32,
        id: u32,
        group: usize,
        payload: Arc<Payload>,
        shard: u32,
    ) -> Self {
        let render = |s: &str| topic::render(s, &g.name, index, shard);
        let b = &g.behaviour;
        DeviceSpec {
            id,
            group,
            group_name: g.name.clone(),
            index,
            client_id: render(&g.client_id),
            topic: render(&g.topic),
            rate: g.rate,
            arrivals: g.arrivals,
            qos: g.qos,
            payload,
            keep_alive: g.keep_alive,
            connect_at: Duration::ZERO,
            offset: Duration::ZERO,
            seed: 0,
            status: b
                .status
                .as_ref()
                .map(|m| MessageSpec::render(m, &g.name, index, shard)),
            will: b
                .will
                .as_ref()
                .map(|m| MessageSpec::render(m, &g.name, index, shard)),
            drop_at: b.drop_at,
            commands: b.commands.as_ref().map(|c| CommandTopics {
                topic: render(&c.topic),
                reply: render(&c.reply),
                qos: c.qos,
            }),
            reconnect: b.reconnect,
            while_down: b.while_down,
            cuts: Vec::new(),
            mqtt5: b.mqtt5.as_ref().map(|m| {
                Arc::new(Mqtt5Publish {
                    user_properties: m
                        .user_properties
                        .iter()
                        .map(|(k, v)| (render(k), render(v)))
                        .collect(),
                    ..m.clone()
                })
            }),
        }
    }
}

/// Every observer client of the scenario, with the devices (of this shard) each expects.
fn observers(scenario: &Scenario, devices: &[DeviceSpec], shard: Shard) -> Vec<ObserverSpec> {
    let suffix = suffix(shard);
    let mut observers = Vec::new();
    for (gi, o) in scenario.observers.iter().enumerate() {
        let filters: Vec<String> = (o.filters.iter())
            .map(|f| topic::render_filter(f, shard.index))
            .collect();
        let expects: Vec<bool> = devices
            .iter()
            .map(|d| filters.iter().any(|f| topic::matches(f, &d.topic)))
            .collect();
        for i in 0..o.count {
            observers.push(ObserverSpec {
                id: observers.len() as u32,
                group: gi,
                client_id: format!("fleetbench-{}-{}-{i}{suffix}", scenario.name, o.name),
                filters: filters.clone(),
                qos: o.qos,
                expects: expects.clone(),
                share: o.share.as_ref().map(|_| filters.join(" ")),
                clean_session: o.clean_session,
                offline: o.offline,
                join_at: o.join_at,
                stalls: (scenario.faults.iter())
                    .filter(|f| {
                        matches!(&f.kind, crate::model::FaultKind::SlowConsumer { observer } if *observer == o.name)
                    })
                    .map(|f| (f.at, f.length))
                    .collect(),
            });
        }
    }
    observers
}

/// What a shard's observer and controller client ids end with, so that shards do not take
/// each other's sessions.
fn suffix(shard: Shard) -> String {
    if shard.count > 1 {
        format!("-s{}", shard.index)
    } else {
        String::new()
    }
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
    /// Observers with the same key share their subscriptions (`$share/...`): between them each
    /// message is expected once.
    pub share: Option<String>,
    pub clean_session: bool,
    pub offline: Option<Offline>,
    /// A late observer connects this long after the ramp start.
    pub join_at: Option<Duration>,
    /// Windows (from the ramp start, length) in which it stops reading its socket: a slow
    /// consumer fault.
    pub stalls: Vec<(Duration, Duration)>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub devices: Vec<DeviceSpec>,
    pub observers: Vec<ObserverSpec>,
    pub controllers: Vec<ControllerSpec>,
    /// Total devices in the scenario over all shards: the range of device ids.
    pub total_devices: u32,
    /// The load over time that every device's schedule follows.
    pub shape: LoadShape,
    pub protocol: Protocol,
    /// The broker restarts the faults call for: (the fault's index in the scenario's faults;
    /// when, from the ramp start; how long down). A restart's results carry its index.
    pub broker_restarts: Vec<(usize, Duration, Duration)>,
    /// The network faults with their indices, in order of their start: the devices then
    /// connect through a proxy, which counts what it did by index.
    pub network: Vec<(usize, crate::model::Fault)>,
    /// The grid around the faults that loss and duplicates are split over (empty without
    /// faults).
    pub fault_grid: crate::fault_grid::FaultGrid,
}

impl Plan {
    pub fn build(scenario: &Scenario, shard: Shard) -> Plan {
        let shape = scenario.load_shape();
        let mut rng = SplitMix64(scenario.seed ^ 0x9E37_79B9_7F4A_7C15);
        let mut devices = Vec::new();
        let mut first_id = 0u32;
        for (gi, g) in scenario.groups.iter().enumerate() {
            let period = g.period();
            let slice = shard.slice(g.count);
            let payload = Arc::new(g.payload.clone());
            for index in 0..g.count {
                // Draw for every device of every shard so that a device's offset does not
                // depend on how the fleet is sharded.
                let offset = period.mul_f64(rng.unit());
                let seed = rng.next_u64();
                if !slice.contains(&index) {
                    continue;
                }
                let id = first_id + index;
                // Phases with connect rates order the whole fleet; a group's own rate counts
                // within this shard's slice of it.
                let connect_at = match g.connect_rate {
                    _ if shape.paces_connections() => shape.connect_at(id),
                    Some(r) => crate::load::seconds(f64::from(index - slice.start) / r),
                    None => Duration::ZERO,
                };
                let mut d = DeviceSpec::render(g, index, id, gi, payload.clone(), shard.index);
                d.connect_at = connect_at;
                d.offset = offset;
                d.seed = seed;
                devices.push(d);
            }
            first_id += g.count;
        }
        cuts::assign(scenario, &mut devices);
        let suffix = suffix(shard);
        let observers = observers(scenario, &devices, shard);
        let controllers = scenario
            .controllers
            .iter()
            .map(|c| ControllerSpec {
                name: c.name.clone(),
                client_id: format!("fleetbench-{}-{}{suffix}", scenario.name, c.name),
                targets: (0..devices.len())
                    .filter(|p| devices[*p].group == c.group)
                    .collect(),
                rate: c.rate,
                seed: rng.next_u64(),
            })
            .collect();
        Plan {
            devices,
            observers,
            controllers,
            total_devices: first_id,
            shape,
            protocol: scenario.protocol,
            broker_restarts: (scenario.faults.iter().enumerate())
                .filter(|(_, f)| matches!(f.kind, crate::model::FaultKind::BrokerRestart { .. }))
                .map(|(i, f)| (i, f.at, f.length))
                .collect(),
            network: (scenario.faults.iter().enumerate())
                .filter(|(_, f)| matches!(f.kind, crate::model::FaultKind::Network(_)))
                .map(|(i, f)| (i, f.clone()))
                .collect(),
            fault_grid: crate::fault_grid::FaultGrid::of(&scenario.faults, scenario.duration),
        }
    }

    /// The observers that account as one: each ordinary observer alone, and the members of a
    /// shared subscription together. Lists positions in [`Plan::observers`].
    pub fn receivers(&self) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        let mut shares: Vec<(&str, usize)> = Vec::new();
        for (i, o) in self.observers.iter().enumerate() {
            match &o.share {
                None => out.push(vec![i]),
                Some(key) => match shares.iter().find(|(k, _)| k == key) {
                    Some((_, slot)) => out[*slot].push(i),
                    None => {
                        shares.push((key, out.len()));
                        out.push(vec![i]);
                    }
                },
            }
        }
        out
    }

    /// For each device, how many copies of each of its messages the subscriptions call for (a
    /// shared subscription counts once).
    pub fn watchers(&self) -> Vec<u32> {
        let receivers = self.receivers();
        (0..self.devices.len())
            .map(|d| {
                receivers
                    .iter()
                    .filter(|r| self.observers[r[0]].expects[d])
                    .count() as u32
            })
            .collect()
    }

    /// Messages the observers should receive per second when every device keeps its group's
    /// rate (phases scale this).
    pub fn expected_deliveries_per_s(&self) -> f64 {
        self.devices
            .iter()
            .zip(self.watchers())
            .map(|(d, w)| d.rate * f64::from(w))
            .sum()
    }
}

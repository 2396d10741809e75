//! Splitting a fleet over processes: which devices a shard runs, and whether a scenario can be
//! split so that each shard's observers hear exactly its own devices.
//!
//! Under sharding every shard runs every observer and controller of the scenario, for its own
//! devices only. An observer's filters say which devices are its own with the `{shard}`
//! placeholder, which renders as the index of the shard that runs it (0 in an unsharded run):
//! a filter `fleet/{shard}/#` and a topic `fleet/{shard}/{group}/{index}` keep the shards apart
//! at the broker, so that no shard receives another's messages and the merged counts equal a
//! one-process run's. So fan-in (many devices, one observer) becomes one observer per shard
//! over that shard's devices, fan-out (one device, many observers) keeps its observers per
//! device, a shared subscription is shared among one shard's members, and a controller commands
//! the devices of its shard (command and reply topics name one device each already).

use crate::model::Scenario;
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

/// An observer filter that would hear other shards' devices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "observer {observer:?}: filter {filter:?} would receive the messages of every shard's devices \
     of group {group:?} (its {what} {pattern:?}), so with {count} shards each shard would hear \
     the whole fleet; put a {{shard}} level at the same place in both, e.g. \
     topic = \"fleet/{{shard}}/{{group}}/{{index}}\" and filter \"fleet/{{shard}}/#\""
)]
pub struct ShardingError {
    pub observer: String,
    pub filter: String,
    pub group: String,
    /// "topic", "status topic" or "will topic".
    pub what: &'static str,
    pub pattern: String,
    pub count: u32,
}

/// Whether `scenario` can run as `count` shards with each shard's observers receiving exactly
/// its own devices' messages: every observer filter that matches a group's topic (data, status
/// or will) must have a `{shard}` level where that topic pattern has one.
pub fn check_sharding(scenario: &Scenario, count: u32) -> Result<(), ShardingError> {
    if count <= 1 {
        return Ok(());
    }
    for o in &scenario.observers {
        for filter in &o.filters {
            let inner = topic::shared(filter).map_or(filter.as_str(), |(_, f)| f);
            for g in &scenario.groups {
                let b = &g.behaviour;
                let patterns = [
                    ("topic", Some(&g.topic)),
                    ("status topic", b.status.as_ref().map(|m| &m.topic)),
                    ("will topic", b.will.as_ref().map(|m| &m.topic)),
                ];
                for (what, pattern) in patterns {
                    let Some(pattern) = pattern else { continue };
                    if separated(inner, pattern) || !hears(inner, pattern, &g.name, g.count) {
                        continue;
                    }
                    return Err(ShardingError {
                        observer: o.name.clone(),
                        filter: filter.clone(),
                        group: g.name.clone(),
                        what,
                        pattern: pattern.clone(),
                        count,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Both have `{shard}` as a whole level at the same depth: rendered for different shards,
/// the filter cannot match the topic.
fn separated(filter: &str, pattern: &str) -> bool {
    filter
        .split('/')
        .zip(pattern.split('/'))
        .any(|(f, p)| f == topic::SHARD && p == topic::SHARD)
}

/// The filter matches some device's topic of the group (both rendered for shard 0).
fn hears(filter: &str, pattern: &str, group: &str, count: u32) -> bool {
    let filter = topic::render_filter(filter, 0);
    (0..count).any(|i| topic::matches(&filter, &topic::render(pattern, group, i, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(topic: &str, filter: &str) -> Scenario {
        let text = format!(
            "name = \"s\"\nduration = \"5s\"\n[[group]]\nname = \"temp\"\ncount = 8\n\
             topic = \"{topic}\"\nrate = 1.0\n[[observer]]\nname = \"all\"\nfilters = [\"{filter}\"]\n"
        );
        crate::parse("s.toml", &text).expect("a valid scenario")
    }

    #[test]
    fn slices_cover_every_device_once() {
        for n in [0u32, 1, 7, 100] {
            let mut all = Vec::new();
            for index in 0..3 {
                all.extend(Shard { index, count: 3 }.slice(n));
            }
            assert_eq!(all, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_shard_level_in_topic_and_filter_splits_the_fleet() {
        let s = scenario("f/{shard}/{group}/{index}", "f/{shard}/#");
        assert_eq!(check_sharding(&s, 4), Ok(()));
        let shared = scenario("f/{shard}/{group}/{index}", "$share/g/f/{shard}/+/+");
        assert_eq!(check_sharding(&shared, 4), Ok(()));
    }

    #[test]
    fn a_filter_that_hears_every_shard_is_refused_only_when_sharded() {
        let s = scenario("f/{group}/{index}", "f/#");
        assert_eq!(check_sharding(&s, 1), Ok(()));
        let e = check_sharding(&s, 4).expect_err("every shard would hear the whole fleet");
        assert_eq!((e.observer.as_str(), e.group.as_str()), ("all", "temp"));
        assert!(e.to_string().contains("{shard}"), "{e}");
        // A {shard} in only one of them does not separate the shards either.
        let s = scenario("f/{shard}/{group}/{index}", "f/+/temp/#");
        assert!(check_sharding(&s, 2).is_err());
        // Nor does one at another depth.
        let s = scenario("f/{shard}/{index}", "f/+/{shard}");
        assert!(check_sharding(&s, 2).is_err());
    }
}

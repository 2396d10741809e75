//! Which devices the `disconnect` and `churn` faults cut, and when: drawn from the scenario's
//! seed over each whole group, so that a device's cuts do not depend on how the fleet is
//! sharded (every shard draws the same and keeps its own devices').

use std::collections::HashMap;
use std::time::Duration;

use super::DeviceSpec;
use crate::load::{seconds, SplitMix64};
use crate::model::{FaultKind, Scenario};

/// Add every fault's cuts to the devices of this plan (positions by group and index).
pub(crate) fn assign(scenario: &Scenario, devices: &mut [DeviceSpec]) {
    if scenario.faults.is_empty() {
        return;
    }
    let at: HashMap<(usize, u32), usize> = devices
        .iter()
        .enumerate()
        .map(|(p, d)| ((d.group, d.index), p))
        .collect();
    for (n, fault) in scenario.faults.iter().enumerate() {
        let mut rng = SplitMix64(scenario.seed ^ 0xC07C_u64.rotate_left(17) ^ (n as u64 + 1));
        let (group, cuts) = match &fault.kind {
            FaultKind::Disconnect { group, devices } => {
                let Some((gi, g)) = find(scenario, group) else {
                    continue;
                };
                let chosen = choose(&mut rng, g.count, *devices);
                (gi, chosen.into_iter().map(|i| (i, fault.at)).collect())
            }
            FaultKind::Churn { group, rate } => {
                let Some((gi, g)) = find(scenario, group) else {
                    continue;
                };
                (gi, churn(&mut rng, g.count, *rate, fault.at, fault.length))
            }
            FaultKind::BrokerRestart { .. }
            | FaultKind::Network(_)
            | FaultKind::SlowConsumer { .. } => continue,
        };
        for (index, when) in cuts {
            if let Some(&p) = at.get(&(group, index)) {
                devices[p].cuts.push(when);
            }
        }
    }
    for d in devices.iter_mut() {
        d.cuts.sort();
    }
}

fn find<'s>(scenario: &'s Scenario, name: &str) -> Option<(usize, &'s crate::DeviceGroup)> {
    scenario
        .groups
        .iter()
        .enumerate()
        .find(|(_, g)| g.name == name)
}

/// `k` distinct indices of `0..n`, at random (a partial Fisher-Yates shuffle).
fn choose(rng: &mut SplitMix64, n: u32, k: u32) -> Vec<u32> {
    let mut all: Vec<u32> = (0..n).collect();
    let k = k.min(n) as usize;
    for i in 0..k {
        let j = i + (rng.next_u64() % (all.len() - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(k);
    all
}

/// Drops at `rate` per second over `[at, at + length)`, a Poisson process, each on a device
/// drawn at random: (device index, when).
fn churn(
    rng: &mut SplitMix64,
    n: u32,
    rate: f64,
    at: Duration,
    length: Duration,
) -> Vec<(u32, Duration)> {
    let mut out = Vec::new();
    let end = at + length;
    let mut t = at;
    loop {
        // Exponential gaps with mean 1 / rate.
        let gap = -(1.0 - rng.unit()).ln() / rate;
        t += seconds(gap);
        if t >= end || n == 0 {
            return out;
        }
        out.push(((rng.next_u64() % u64::from(n)) as u32, t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Plan, Shard};

    fn scenario(faults: &str) -> Scenario {
        let text = format!(
            "name = \"f\"\nduration = \"60s\"\n[[group]]\nname = \"s\"\ncount = 100\n\
             topic = \"t/{{shard}}/{{index}}\"\nrate = 1.0\n[[observer]]\nname = \"o\"\n\
             filters = [\"t/{{shard}}/#\"]\n{faults}"
        );
        crate::parse("f.toml", &text).expect("a valid scenario")
    }

    #[test]
    fn a_disconnect_cuts_its_share_once_and_churn_its_rate() {
        let s = scenario(
            "[[fault]]\nkind = \"disconnect\"\nat = \"10s\"\ngroup = \"s\"\nshare = 0.25\n\
             [[fault]]\nkind = \"churn\"\nat = \"20s\"\nfor = \"20s\"\ngroup = \"s\"\nrate = 5.0\n",
        );
        let plan = Plan::build(&s, Shard::WHOLE);
        let at10 = plan
            .devices
            .iter()
            .filter(|d| d.cuts.contains(&Duration::from_secs(10)));
        assert_eq!(at10.count(), 25);
        let churned: usize = (plan.devices.iter())
            .map(|d| {
                d.cuts
                    .iter()
                    .filter(|c| **c >= Duration::from_secs(20))
                    .count()
            })
            .sum();
        // 100 expected over 20 s at 5 per second; a Poisson count is within 30% of it.
        assert!((70..=130).contains(&churned), "{churned}");
        assert!(plan
            .devices
            .iter()
            .flat_map(|d| &d.cuts)
            .all(|c| *c < Duration::from_secs(40)));
    }

    #[test]
    fn shards_cut_the_same_devices_as_one_process() {
        let s =
            scenario("[[fault]]\nkind = \"disconnect\"\nat = \"10s\"\ngroup = \"s\"\ncount = 7\n");
        let cut = |plan: &Plan| -> Vec<String> {
            (plan.devices.iter())
                .filter(|d| !d.cuts.is_empty())
                .map(|d| d.client_id.clone())
                .collect()
        };
        let whole = cut(&Plan::build(&s, Shard::WHOLE));
        let mut split: Vec<String> = (0..3)
            .flat_map(|index| cut(&Plan::build(&s, Shard { index, count: 3 })))
            .collect();
        split.sort();
        let mut whole_sorted = whole.clone();
        whole_sorted.sort();
        assert_eq!(whole.len(), 7);
        assert_eq!(split, whole_sorted);
    }
}

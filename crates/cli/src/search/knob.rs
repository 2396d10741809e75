//! What a capacity search varies, and the scenario of one step: the scenario's load with the
//! knob set to the step's value, run at one constant level.

use fleetbench_scenario::Scenario;

/// The load a search varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Knob {
    /// Messages per second per device, the first group's; the other groups keep their ratio
    /// to it.
    Rate,
    /// Devices over all groups; each group keeps its share.
    Devices,
    /// Observers (subscribers) over all observer groups; each group keeps its share.
    Subscribers,
}

impl Knob {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Knob::Rate => "rate",
            Knob::Devices => "devices",
            Knob::Subscribers => "subscribers",
        }
    }

    /// What its values count, for tables.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Knob::Rate => "msg/s per device",
            Knob::Devices => "devices",
            Knob::Subscribers => "subscribers",
        }
    }

    /// Whether its values are whole numbers.
    pub(crate) fn whole(self) -> bool {
        !matches!(self, Knob::Rate)
    }

    /// The knob's value in the scenario as written.
    pub(crate) fn base(self, s: &Scenario) -> f64 {
        match self {
            Knob::Rate => s.groups.first().map_or(0.0, |g| g.rate),
            Knob::Devices => s.device_count() as f64,
            Knob::Subscribers => s.observers.iter().map(|o| f64::from(o.count)).sum(),
        }
    }

    /// Why this scenario cannot be searched along this knob, if it cannot.
    pub(crate) fn cannot_vary(self, s: &Scenario) -> Option<String> {
        if !s.phases.is_empty() {
            return Some(format!(
                "it has load phases ({}); a search runs each step at one constant level: \
                 remove the [[phase]] tables",
                s.phases.len()
            ));
        }
        if !s.faults.is_empty() {
            return Some(
                "it injects faults; a search measures a healthy broker: remove the [[fault]] \
                 tables"
                    .into(),
            );
        }
        match self {
            Knob::Rate | Knob::Devices if s.groups.is_empty() => {
                Some("it has no device groups".into())
            }
            Knob::Rate if self.base(s) <= 0.0 => {
                Some("its first group publishes at rate 0; give it a rate to scale".into())
            }
            Knob::Subscribers if s.observers.is_empty() => Some(
                "it has no observers to vary; add an [[observer]] group, or vary rate or devices"
                    .into(),
            ),
            _ => None,
        }
    }

    /// The scenario of a step: `s` with the knob at `value`. Absolute rate expectations
    /// (`min_publish_per_s`, `min_deliver_per_s`) scale with the load they judge.
    pub(crate) fn apply(self, s: &Scenario, value: f64) -> Scenario {
        let mut out = s.clone();
        let base = self.base(s);
        let factor = if base > 0.0 { value / base } else { 1.0 };
        match self {
            Knob::Rate => out.groups.iter_mut().for_each(|g| g.rate *= factor),
            Knob::Devices => scale_counts(out.groups.iter_mut().map(|g| &mut g.count), value),
            Knob::Subscribers => {
                scale_counts(out.observers.iter_mut().map(|o| &mut o.count), value);
            }
        }
        let e = &mut out.expect;
        if self != Knob::Subscribers {
            e.min_publish_per_s = e.min_publish_per_s.map(|r| r * factor);
        }
        e.min_deliver_per_s = e.min_deliver_per_s.map(|r| r * factor);
        out
    }
}

/// Set the counts so that they add up to `total`, each keeping its share (at least 1).
fn scale_counts<'a>(counts: impl Iterator<Item = &'a mut u32>, total: f64) {
    let mut counts: Vec<&mut u32> = counts.collect();
    let sum: f64 = counts.iter().map(|c| f64::from(**c)).sum();
    let total = total.round().max(counts.len() as f64);
    let mut left = total as u32;
    let n = counts.len();
    for (i, c) in counts.iter_mut().enumerate() {
        let share = if i + 1 == n {
            left
        } else {
            let want = (f64::from(**c) / sum.max(1.0) * total).round() as u32;
            want.clamp(1, left.saturating_sub((n - i - 1) as u32).max(1))
        };
        **c = share.max(1);
        left = left.saturating_sub(share);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            "name = \"k\"\nduration = \"10s\"\n\
             [[group]]\nname = \"a\"\ncount = 30\ntopic = \"k/{{index}}\"\nrate = 2.0\n\
             [[group]]\nname = \"b\"\ncount = 10\ntopic = \"j/{{index}}\"\nrate = 1.0\n\
             [[observer]]\nname = \"o\"\ncount = 2\nfilters = [\"k/#\"]\n\
             {extra}\n[expect]\nmax_lost = 0\nmin_publish_per_s = 70.0\n"
        );
        fleetbench_scenario::parse("k.toml", &text).expect("valid scenario")
    }

    #[test]
    fn rate_scales_every_group_and_the_rate_expectations() {
        let s = scenario("");
        assert_eq!(Knob::Rate.base(&s), 2.0);
        let t = Knob::Rate.apply(&s, 8.0);
        let rates: Vec<f64> = t.groups.iter().map(|g| g.rate).collect();
        assert_eq!(rates, vec![8.0, 4.0], "the groups keep their ratio");
        assert_eq!(t.expect.min_publish_per_s, Some(280.0));
        assert_eq!(t.expect.max_lost, Some(0));
    }

    #[test]
    fn devices_keep_their_shares_and_add_up() {
        let s = scenario("");
        let t = Knob::Devices.apply(&s, 100.0);
        let counts: Vec<u32> = t.groups.iter().map(|g| g.count).collect();
        assert_eq!(counts, vec![75, 25]);
        let t = Knob::Devices.apply(&s, 3.0);
        assert_eq!(
            t.device_count(),
            3,
            "{:?}",
            t.groups.iter().map(|g| g.count)
        );
        assert!(t.groups.iter().all(|g| g.count >= 1));
    }

    #[test]
    fn a_knob_the_scenario_cannot_vary_is_named() {
        let s = scenario("");
        assert_eq!(Knob::Subscribers.base(&s), 2.0);
        assert_eq!(Knob::Subscribers.cannot_vary(&s), None);
        assert_eq!(Knob::Rate.cannot_vary(&s), None);
        let phased = scenario(
            "[[phase]]\nname = \"up\"\nduration = \"5s\"\nrate = 1.0\n\
             [[phase]]\nname = \"peak\"\nduration = \"5s\"\nrate = 2.0\n",
        );
        let why = Knob::Rate.cannot_vary(&phased).expect("phases");
        assert!(why.contains("load phases (2)"), "{why}");
    }
}

//! How a capacity search picks its steps (docs/SEARCH.md, "The method"): climb geometrically
//! from `from` until a step fails, bisect between the highest pass and the lowest fail until
//! they are within the tolerance, then repeat the highest pass once to confirm it. A
//! confirmation that fails becomes the lowest fail, and the search bisects below it again (at
//! most [`MAX_CONFIRMATIONS`] times). Pure: the caller runs each step and records its verdict.

/// Each climbing step offers this many times the last one.
pub(crate) const CLIMB_FACTOR: f64 = 2.0;

/// Confirmations at most: a broker whose answer keeps failing its repeat is reported with the
/// bracket it was last found in, not searched for ever.
pub(crate) const MAX_CONFIRMATIONS: u32 = 2;

/// Why a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Purpose {
    Climb,
    Bisect,
    Confirm,
}

impl Purpose {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Purpose::Climb => "climb",
            Purpose::Bisect => "bisect",
            Purpose::Confirm => "confirm",
        }
    }
}

/// The range and precision of a search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) from: f64,
    pub(crate) to: f64,
    /// The bracket is narrow enough when (fail - pass) / pass is at most this.
    pub(crate) tolerance: f64,
    /// Values are whole numbers (devices, subscribers).
    pub(crate) whole: bool,
}

/// Where a search stands.
#[derive(Debug, Clone)]
pub(crate) struct Method {
    bounds: Bounds,
    /// Every passing value so far (a failed confirmation falls back to the next one below).
    passes: Vec<f64>,
    /// The lowest value that failed.
    lowest_fail: Option<f64>,
    /// The value whose confirmation is under way or done.
    confirming: Option<f64>,
    confirmed: Option<f64>,
    confirmations: u32,
    last_climb: Option<f64>,
}

impl Method {
    pub(crate) fn new(bounds: Bounds) -> Method {
        Method {
            bounds,
            passes: Vec::new(),
            lowest_fail: None,
            confirming: None,
            confirmed: None,
            confirmations: 0,
            last_climb: None,
        }
    }

    /// The highest value that passed and is below every failure.
    pub(crate) fn highest_pass(&self) -> Option<f64> {
        let below = |v: &&f64| self.lowest_fail.is_none_or(|f| **v < f);
        self.passes.iter().filter(below).copied().reduce(f64::max)
    }

    pub(crate) fn lowest_fail(&self) -> Option<f64> {
        self.lowest_fail
    }

    /// The answer once confirmed.
    pub(crate) fn confirmed(&self) -> Option<f64> {
        self.confirmed
    }

    /// The next step to run, or None when the search is over.
    pub(crate) fn next(&self) -> Option<(f64, Purpose)> {
        if self.confirmed.is_some() {
            return None;
        }
        let Some(pass) = self.highest_pass() else {
            // Nothing passed yet: the first step, or `from` itself failed (the answer is below
            // the range).
            return (self.lowest_fail.is_none()).then_some((self.bounds.from, Purpose::Climb));
        };
        let Some(fail) = self.lowest_fail else {
            if pass >= self.bounds.to {
                return self.confirm(pass);
            }
            let up = self.round((pass * CLIMB_FACTOR).min(self.bounds.to));
            return Some((up.max(pass + self.least_step()), Purpose::Climb));
        };
        if self.narrow(pass, fail) {
            return self.confirm(pass);
        }
        let mid = self.round((pass + fail) / 2.0);
        Some((mid, Purpose::Bisect))
    }

    fn confirm(&self, pass: f64) -> Option<(f64, Purpose)> {
        if self.confirmations >= MAX_CONFIRMATIONS && self.confirming != Some(pass) {
            return None;
        }
        Some((pass, Purpose::Confirm))
    }

    /// Record a step's verdict.
    pub(crate) fn record(&mut self, value: f64, purpose: Purpose, passed: bool) {
        if purpose == Purpose::Climb {
            self.last_climb = Some(value);
        }
        match (purpose, passed) {
            (Purpose::Confirm, true) => {
                self.confirmations += 1;
                self.confirmed = Some(value);
            }
            (Purpose::Confirm, false) => {
                self.confirmations += 1;
                self.confirming = None;
                self.passes.retain(|p| *p < value);
                self.lowest_fail = Some(self.lowest_fail.map_or(value, |f| f.min(value)));
            }
            (_, true) => self.passes.push(value),
            (_, false) => {
                self.lowest_fail = Some(self.lowest_fail.map_or(value, |f| f.min(value)));
            }
        }
        if purpose == Purpose::Confirm && !passed && self.confirmations >= MAX_CONFIRMATIONS {
            // No more repeats: what passed below stands unconfirmed.
            self.confirming = None;
        }
    }

    /// Whether the search has used its repeats without confirming an answer.
    pub(crate) fn out_of_confirmations(&self) -> bool {
        self.confirmed.is_none() && self.confirmations >= MAX_CONFIRMATIONS
    }

    fn narrow(&self, pass: f64, fail: f64) -> bool {
        fail - pass <= self.least_step() || (fail - pass) / pass <= self.bounds.tolerance
    }

    fn least_step(&self) -> f64 {
        if self.bounds.whole {
            1.0
        } else {
            f64::EPSILON
        }
    }

    fn round(&self, v: f64) -> f64 {
        if self.bounds.whole {
            v.round()
        } else {
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a search against a broker that holds up to `limit` (and, when `flaky`, fails the
    /// first confirmation).
    fn search(bounds: Bounds, limit: f64, flaky: bool) -> (Method, Vec<(f64, Purpose)>) {
        let mut m = Method::new(bounds);
        let mut steps = Vec::new();
        let mut flaked = false;
        while let Some((v, p)) = m.next() {
            assert!(steps.len() < 40, "the search does not end: {steps:?}");
            let mut pass = v <= limit;
            if p == Purpose::Confirm && flaky && !flaked {
                flaked = true;
                pass = false;
            }
            m.record(v, p, pass);
            steps.push((v, p));
        }
        (m, steps)
    }

    fn rate(from: f64, to: f64) -> Bounds {
        Bounds {
            from,
            to,
            tolerance: 0.05,
            whole: false,
        }
    }

    #[test]
    fn finds_a_limit_within_the_tolerance_in_bounded_steps() {
        for limit in [7.3, 100.0, 333.0, 999.0] {
            let (m, steps) = search(rate(1.0, 1000.0), limit, false);
            let answer = m.confirmed().expect("confirmed");
            assert!(
                answer <= limit && answer >= limit * 0.95,
                "{limit}: {answer} {steps:?}"
            );
            // log2(1000) climbs + log2(1/0.05) bisections + a confirmation.
            assert!(steps.len() <= 10 + 6 + 1, "{limit}: {} steps", steps.len());
            assert_eq!(steps.last().map(|s| s.1), Some(Purpose::Confirm));
        }
    }

    #[test]
    fn a_failed_confirmation_moves_the_answer_down() {
        let (m, steps) = search(rate(10.0, 1000.0), 333.0, true);
        let confirms: Vec<f64> = (steps.iter())
            .filter(|s| s.1 == Purpose::Confirm)
            .map(|s| s.0)
            .collect();
        assert_eq!(confirms.len(), 2, "{steps:?}");
        assert!(confirms[1] < confirms[0], "{steps:?}");
        assert_eq!(m.confirmed(), Some(confirms[1]));
    }

    #[test]
    fn whole_values_stop_at_neighbours() {
        let b = Bounds {
            from: 1.0,
            to: 64.0,
            tolerance: 0.0,
            whole: true,
        };
        let (m, steps) = search(b, 37.0, false);
        assert_eq!(m.confirmed(), Some(37.0), "{steps:?}");
        assert_eq!(m.lowest_fail(), Some(38.0), "{steps:?}");
        assert!(steps.iter().all(|s| s.0.fract() == 0.0), "{steps:?}");
    }

    #[test]
    fn a_limit_outside_the_range_is_said_as_such() {
        let (m, steps) = search(rate(10.0, 100.0), 1e9, false);
        assert_eq!(m.confirmed(), Some(100.0), "the top of the range held");
        assert_eq!(m.lowest_fail(), None);
        assert!(steps.len() <= 6, "{steps:?}");
        let (m, steps) = search(rate(10.0, 100.0), 5.0, false);
        assert_eq!(m.confirmed(), None);
        assert_eq!(m.highest_pass(), None);
        assert_eq!(
            steps,
            vec![(10.0, Purpose::Climb)],
            "from failed: nothing below to try"
        );
    }
}

//! What `fleetbench run` takes from the environment, so that one pod template serves every
//! shard of a Kubernetes Indexed Job: the report's path; the shard, given whole or as a count
//! with the pod's index (`JOB_COMPLETION_INDEX`, which Kubernetes sets in every pod of an
//! Indexed Job); the common start of all shards; and the broker with its credentials (the
//! password only ever from the environment, e.g. a Secret). Flags win over variables; a bad
//! value names the variable or flag it came from.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use fleetbench_scenario::{BrokerTarget, ExternalBroker, Located, Location, Scenario, Shard};

use crate::RunArgs;

/// The report's path when `--report` is not given.
pub const REPORT: &str = "FLEETBENCH_REPORT";
/// The shard as `I/N` when `--shard` is not given.
pub const SHARD: &str = "FLEETBENCH_SHARD";
/// The shard count when neither `--shard`, `--shards` nor `FLEETBENCH_SHARD` is given.
pub const SHARDS: &str = "FLEETBENCH_SHARDS";
/// The pod's index in a Kubernetes Indexed Job: the shard index with `--shards`.
pub const JOB_INDEX: &str = "JOB_COMPLETION_INDEX";
/// The common start (RFC 3339) when `--start-at` is not given.
pub const START_AT: &str = "FLEETBENCH_START_AT";
/// The broker's URL, replacing the scenario's `[broker]`, when `--broker-url` is not given.
pub const BROKER_URL: &str = "FLEETBENCH_BROKER_URL";
/// The broker user name when `--broker-username` is not given.
pub const BROKER_USERNAME: &str = "FLEETBENCH_BROKER_USERNAME";
/// The broker password: from the environment only, never a flag (flags show in `ps`).
pub const BROKER_PASSWORD: &str = "FLEETBENCH_BROKER_PASSWORD";

/// How far ahead a common start may lie: further is taken for a mistake (a wrong date).
const MAX_START_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// The report path, shard, start and broker of a run, flags first, then the environment.
#[derive(Debug, Clone)]
pub struct RunEnv {
    pub report: Option<PathBuf>,
    pub shard: Shard,
    pub start_at: Option<StartAt>,
    pub broker: Option<BrokerOverride>,
}

/// The instant every shard starts its fleet at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartAt {
    pub at: SystemTime,
    /// As RFC 3339, in UTC.
    pub text: String,
}

/// A broker given on the command line or in the environment instead of the scenario's.
#[derive(Debug, Clone)]
pub struct BrokerOverride {
    /// The broker its URL names (refused if the URL carries credentials).
    pub target: ExternalBroker,
    /// The flag or variable it came from.
    pub from: &'static str,
    pub username: Option<String>,
    /// [`BROKER_PASSWORD`] is set (and not empty).
    pub password: bool,
}

/// Resolve `args` against `env` (a lookup of environment variables).
pub fn resolve(args: &RunArgs, env: impl Fn(&str) -> Option<String>) -> Result<RunEnv, String> {
    let report = args
        .report
        .clone()
        .or_else(|| env(REPORT).filter(|v| !v.is_empty()).map(PathBuf::from));
    Ok(RunEnv {
        report,
        shard: shard(args, &env)?,
        start_at: start_at(args, &env, SystemTime::now())?,
        broker: broker_override(
            args.broker_url.as_deref(),
            args.broker_username.as_deref(),
            &env,
        )?,
    })
}

/// A flag's value, else the variable's (an empty variable counts as unset), with its source.
fn pick(
    flag: &Option<String>,
    flag_name: &'static str,
    var: &'static str,
    env: &impl Fn(&str) -> Option<String>,
) -> Option<(String, &'static str)> {
    match flag {
        Some(v) => Some((v.clone(), flag_name)),
        None => env(var).filter(|v| !v.trim().is_empty()).map(|v| (v, var)),
    }
}

fn shard(args: &RunArgs, env: &impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
    Ok(match (args.shard, args.shards) {
        // clap refuses both flags; kept for callers that build RunArgs themselves.
        (Some(_), Some(_)) => return Err("give --shard I/N or --shards N, not both".into()),
        (Some(s), None) => s,
        (None, Some(count)) => indexed(count, "--shards", env)?,
        (None, None) => match (env(SHARD), env(SHARDS)) {
            (Some(_), Some(_)) => return Err(format!("set {SHARD} or {SHARDS}, not both")),
            (Some(v), None) => crate::parse_shard(&v).map_err(|e| format!("{SHARD}={v:?}: {e}"))?,
            (None, Some(v)) => {
                let count = parse_count(&v).map_err(|e| format!("{SHARDS}={v:?}: {e}"))?;
                indexed(count, SHARDS, env)?
            }
            (None, None) => Shard::WHOLE,
        },
    })
}

/// Shard `JOB_COMPLETION_INDEX` of `count` (`from` names where the count came from).
fn indexed(count: u32, from: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
    let Some(v) = env(JOB_INDEX) else {
        return Err(format!(
            "{from} {count} takes the shard index from {JOB_INDEX} (set by Kubernetes in each \
             pod of an Indexed Job), and it is not set; or give --shard I/N"
        ));
    };
    let index: u32 = v
        .trim()
        .parse()
        .map_err(|_| format!("{JOB_INDEX}={v:?}: expected the pod's index, 0 or more"))?;
    if index >= count {
        return Err(format!(
            "{JOB_INDEX}={index}: expected an index below the shard count {count} ({from})"
        ));
    }
    Ok(Shard { index, count })
}

/// A shard count: 1 or more.
pub(crate) fn parse_count(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?}: expected a shard count, 1 or more")),
    }
}

/// The common start: an RFC 3339 time no more than a day ahead of `now` (one in the past
/// starts at once, and the report shows how late).
fn start_at(
    args: &RunArgs,
    env: &impl Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<Option<StartAt>, String> {
    let Some((text, from)) = pick(&args.start_at, "--start-at", START_AT, env) else {
        return Ok(None);
    };
    let at = parse_rfc3339(&text).map_err(|e| format!("{from}={text:?}: {e}"))?;
    if at
        .duration_since(now)
        .is_ok_and(|ahead| ahead > MAX_START_AHEAD)
    {
        return Err(format!(
            "{from}={text:?}: lies more than a day ahead; expected the time all shards start at, \
             such as \"{}\"",
            format_rfc3339(now + Duration::from_secs(120))
        ));
    }
    Ok(Some(StartAt {
        at,
        text: format_rfc3339(at),
    }))
}

/// An RFC 3339 time (`2026-11-27T23:30:00Z`, or with an offset such as `+01:00`).
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("not an RFC 3339 time ({e}); expected e.g. \"2026-11-27T23:30:00Z\""))
}

/// `t` as RFC 3339 in UTC, to the second.
pub fn format_rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The broker of `--broker-url` (`url`) or the environment, with its user name, if any.
pub(crate) fn broker_override(
    url: Option<&str>,
    username: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<BrokerOverride>, String> {
    let username = pick(
        &username.map(str::to_string),
        "--broker-username",
        BROKER_USERNAME,
        env,
    );
    let password = env(BROKER_PASSWORD).is_some_and(|p| !p.is_empty());
    let Some((url, from)) = pick(&url.map(str::to_string), "--broker-url", BROKER_URL, env) else {
        if let Some((_, from)) = username {
            return Err(format!(
                "{from} applies to the broker of --broker-url or {BROKER_URL}, and neither is given"
            ));
        }
        return Ok(None);
    };
    // Read now, so that a bad URL is named before anything starts; never echoed.
    let target = fleetbench_scenario::external_url(&url).map_err(|e| format!("{from}: {e}"))?;
    Ok(Some(BrokerOverride {
        target,
        from,
        username: username.map(|(u, _)| u),
        password,
    }))
}

impl BrokerOverride {
    /// Point `scenario` at this broker. Certificates of an external broker the scenario names
    /// stay (their paths are relative to the scenario file); credentials given here replace its.
    pub fn apply(&self, scenario: &mut Scenario) -> Result<(), String> {
        let mut x = self.target.clone();
        if let BrokerTarget::External(old) = &scenario.broker {
            if x.scheme.uses_tls() {
                x.tls = old.tls.clone();
            }
            x.username = old.username.clone();
            x.password_env = old.password_env.clone();
        }
        if let Some(u) = &self.username {
            x.username = Some(u.clone());
            x.password_env = None;
        }
        if self.password {
            if x.username.is_none() {
                return Err(format!(
                    "{BROKER_PASSWORD} is set but no user name is: set {BROKER_USERNAME} (or \
                     --broker-username) as well; MQTT 3.1.1 sends no password without one"
                ));
            }
            x.password_env = Some(Located {
                value: BROKER_PASSWORD.to_string(),
                at: Location {
                    file: "(environment)".into(),
                    line: 1,
                    column: 1,
                },
                field: BROKER_PASSWORD.into(),
            });
        }
        scenario.broker = BrokerTarget::External(Box::new(x));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;
    use crate::{Command, Opts};

    fn args(flags: &[&str]) -> RunArgs {
        let mut argv = vec!["fleetbench", "run", "s.toml"];
        argv.extend_from_slice(flags);
        match Opts::try_parse_from(argv).expect("valid flags").command {
            Command::Run(a) => a,
            _ => panic!("not a run"),
        }
    }

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn shard(index: u32, count: u32) -> Shard {
        Shard { index, count }
    }

    #[test]
    fn one_pod_template_serves_every_shard_of_an_indexed_job() {
        for i in 0..4u32 {
            let env = with(&[
                (SHARDS, "4"),
                (JOB_INDEX, &i.to_string()),
                (REPORT, "/reports/r.json"),
            ]);
            let r = resolve(&args(&[]), env).expect("resolves");
            assert_eq!(r.shard, shard(i, 4));
            assert_eq!(r.report, Some(PathBuf::from("/reports/r.json")));
        }
        let r = resolve(&args(&["--shards", "3"]), with(&[(JOB_INDEX, "2")])).expect("resolves");
        assert_eq!(r.shard, shard(2, 3));
    }

    #[test]
    fn flags_win_over_the_environment() {
        let env = with(&[(SHARD, "1/2"), (REPORT, "/env.json")]);
        let r = resolve(&args(&["--shard", "0/4", "--report", "flag.json"]), env).expect("ok");
        assert_eq!(r.shard, shard(0, 4));
        assert_eq!(r.report, Some(PathBuf::from("flag.json")));
        let r = resolve(&args(&[]), with(&[(SHARD, "1/2")])).expect("ok");
        assert_eq!((r.shard, r.report), (shard(1, 2), None));
        assert_eq!(
            resolve(&args(&[]), with(&[])).expect("ok").shard,
            Shard::WHOLE
        );
    }

    /// Flags, environment, and what the refusal must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn a_bad_value_names_the_variable_it_came_from() {
        let cases: &[Case] = &[
            (&[], &[(SHARD, "4/4")], "FLEETBENCH_SHARD=\"4/4\""),
            (&[], &[(SHARD, "two")], "FLEETBENCH_SHARD=\"two\""),
            (&[], &[(SHARDS, "0")], "FLEETBENCH_SHARDS=\"0\""),
            (
                &[],
                &[(SHARDS, "4"), (JOB_INDEX, "4")],
                "JOB_COMPLETION_INDEX=4",
            ),
            (
                &[],
                &[(SHARDS, "4"), (JOB_INDEX, "-1")],
                "JOB_COMPLETION_INDEX=\"-1\"",
            ),
            (
                &[],
                &[(SHARDS, "4")],
                "JOB_COMPLETION_INDEX (set by Kubernetes",
            ),
            (
                &["--shards", "2"],
                &[(JOB_INDEX, "7")],
                "below the shard count 2 (--shards)",
            ),
            (&[], &[(SHARD, "0/2"), (SHARDS, "2")], "not both"),
            (
                &[],
                &[(START_AT, "tomorrow")],
                "FLEETBENCH_START_AT=\"tomorrow\": not an RFC 3339",
            ),
            (&["--start-at", "2026-13-01T00:00:00Z"], &[], "--start-at="),
            (
                &[],
                &[(START_AT, "2999-01-01T00:00:00Z")],
                "more than a day ahead",
            ),
            (
                &[],
                &[(BROKER_URL, "http://b:80")],
                "FLEETBENCH_BROKER_URL: unsupported scheme",
            ),
            (&["--broker-url", "b:1883"], &[], "--broker-url: "),
            (
                &[],
                &[(BROKER_USERNAME, "fleet")],
                "FLEETBENCH_BROKER_USERNAME applies to",
            ),
        ];
        for (flags, vars, says) in cases {
            let err = resolve(&args(flags), with(vars)).expect_err("refused");
            assert!(err.contains(says), "{flags:?} {vars:?}: {err}");
        }
    }

    #[test]
    fn a_broker_url_with_credentials_is_refused_without_echoing_them() {
        let env = with(&[(BROKER_URL, "mqtt://fleet:hunter2@b:1883")]);
        let err = resolve(&args(&[]), env).expect_err("refused");
        assert!(
            err.contains(BROKER_URL) && err.contains("user name or password"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_common_start_and_the_broker_come_from_the_environment() {
        let env = with(&[
            (START_AT, "2026-11-27T23:30:00+01:00"),
            (BROKER_URL, "mqtts://mqtt.example"),
            (BROKER_USERNAME, "fleet"),
            (BROKER_PASSWORD, "secret"),
        ]);
        let now = parse_rfc3339("2026-11-27T22:00:00Z").expect("a time");
        let start = start_at(&args(&[]), &env, now)
            .expect("ok")
            .expect("a start");
        // Offsets are honoured; the report shows UTC.
        assert_eq!(start.text, "2026-11-27T22:30:00Z");
        let b = broker_override(None, None, &env)
            .expect("ok")
            .expect("a broker");
        assert_eq!(
            (b.from, b.username.as_deref(), b.password),
            (BROKER_URL, Some("fleet"), true)
        );
        let mut scenario = fleetbench_scenario::parse(
            "s.toml",
            "name = \"s\"\nduration = \"5s\"\n[[group]]\nname = \"g\"\ncount = 1\n\
             topic = \"t/{index}\"\nrate = 1.0\n[[observer]]\nname = \"o\"\nfilters = [\"t/#\"]\n",
        )
        .expect("a scenario");
        let embedded = scenario.clone();
        b.apply(&mut scenario).expect("applies");
        let BrokerTarget::External(x) = &scenario.broker else {
            panic!("the embedded broker was not replaced")
        };
        assert_eq!(x.url_without_credentials(), "mqtts://mqtt.example:8883");
        assert_eq!(x.username.as_deref(), Some("fleet"));
        assert_eq!(
            x.password_env.as_ref().map(|v| v.value.as_str()),
            Some(BROKER_PASSWORD)
        );
        // A password needs a user name.
        let lone = BrokerOverride {
            username: None,
            ..b.clone()
        };
        let err = lone.apply(&mut embedded.clone()).err();
        assert!(err.is_some_and(|e| e.contains(BROKER_USERNAME)));
    }
}

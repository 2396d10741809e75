//! What `fleetbench run` takes from the environment, so that one pod template serves every
//! shard of a Kubernetes Indexed Job: the report's path, and the shard, given whole or as a
//! count with the pod's index (`JOB_COMPLETION_INDEX`, which Kubernetes sets in every pod of an
//! Indexed Job). Flags win over variables; a bad value names the variable it came from.

use std::path::PathBuf;

use fleetbench_scenario::Shard;

use crate::RunArgs;

/// The report's path when `--report` is not given.
pub const REPORT: &str = "FLEETBENCH_REPORT";
/// The shard as `I/N` when `--shard` is not given.
pub const SHARD: &str = "FLEETBENCH_SHARD";
/// The shard count when neither `--shard`, `--shards` nor `FLEETBENCH_SHARD` is given.
pub const SHARDS: &str = "FLEETBENCH_SHARDS";
/// The pod's index in a Kubernetes Indexed Job: the shard index with `--shards`.
pub const JOB_INDEX: &str = "JOB_COMPLETION_INDEX";

/// The report path and shard of a run, flags first, then the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnv {
    pub report: Option<PathBuf>,
    pub shard: Shard,
}

/// Resolve `args` against `env` (a lookup of environment variables).
pub fn resolve(args: &RunArgs, env: impl Fn(&str) -> Option<String>) -> Result<RunEnv, String> {
    let report = args
        .report
        .clone()
        .or_else(|| env(REPORT).filter(|v| !v.is_empty()).map(PathBuf::from));
    let shard = match (args.shard, args.shards) {
        // clap refuses both flags; kept for callers that build RunArgs themselves.
        (Some(_), Some(_)) => return Err("give --shard I/N or --shards N, not both".into()),
        (Some(s), None) => s,
        (None, Some(count)) => indexed(count, "--shards", &env)?,
        (None, None) => match (env(SHARD), env(SHARDS)) {
            (Some(_), Some(_)) => return Err(format!("set {SHARD} or {SHARDS}, not both")),
            (Some(v), None) => crate::parse_shard(&v).map_err(|e| format!("{SHARD}={v:?}: {e}"))?,
            (None, Some(v)) => {
                let count = parse_count(&v).map_err(|e| format!("{SHARDS}={v:?}: {e}"))?;
                indexed(count, SHARDS, &env)?
            }
            (None, None) => Shard::WHOLE,
        },
    };
    Ok(RunEnv { report, shard })
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
        ];
        for (flags, vars, says) in cases {
            let err = resolve(&args(flags), with(vars)).expect_err("refused");
            assert!(err.contains(says), "{flags:?} {vars:?}: {err}");
        }
    }
}

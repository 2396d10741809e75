//! What `deploy kubernetes` is given, held to Kubernetes' own rules before anything is printed:
//! names that the API server takes, an image reference a kubelet can pull, a shard count an
//! Indexed Job takes and every shard with devices to run, a start still ahead.

use std::time::{Duration, SystemTime};

use fleetbench_scenario::{Scenario, Shard};

use crate::KubernetesArgs;

/// Kubernetes caps `completions` of an Indexed Job with `backoffLimitPerIndex` at this.
pub(crate) const MAX_SHARDS: u32 = 100_000;

/// Every rule the arguments must keep; the first broken one, said.
pub(crate) fn arguments(args: &KubernetesArgs, scenario: &Scenario) -> Result<(), String> {
    if args.shards > MAX_SHARDS {
        return Err(format!(
            "--shards {}: an Indexed Job with a backoff limit per index takes at most \
             {MAX_SHARDS} completions",
            args.shards
        ));
    }
    every_shard_has_devices(scenario, args.shards)?;
    image(&args.image)?;
    if let Some(ns) = &args.namespace {
        dns_label(ns, 63).map_err(|why| format!("--namespace {ns:?}: {why}"))?;
    }
    if let Some(secret) = &args.password_secret {
        dns_subdomain(secret).map_err(|why| format!("--password-secret {secret:?}: {why}"))?;
    }
    Ok(())
}

/// The smallest shard has at least one device: a shard without any fails at once, and with it
/// the merged run.
fn every_shard_has_devices(scenario: &Scenario, shards: u32) -> Result<(), String> {
    let devices: u64 = scenario.groups.iter().map(|g| u64::from(g.count)).sum();
    if u64::from(shards) > devices {
        return Err(format!(
            "--shards {shards}: the scenario has {devices} devices, so some shards would have \
             none; give at most {devices} shards"
        ));
    }
    // Groups are split one by one, each shard its slice of every group: a shard can be left
    // with none of any.
    let counts: Vec<u32> = scenario.groups.iter().map(|g| g.count).collect();
    let empty = (0..shards).find(|&index| {
        let shard = Shard {
            index,
            count: shards,
        };
        counts.iter().all(|n| shard.slice(*n).is_empty())
    });
    if let Some(index) = empty {
        return Err(format!(
            "--shards {shards}: shard {index}/{shards} would have no device (each group of the \
             scenario is split on its own); give fewer shards"
        ));
    }
    Ok(())
}

/// A container image reference: `[registry[:port]/]path[:tag][@digest]`, no spaces or
/// control characters, lower-case path.
fn image(image: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "--image {image:?}: {why}; expected such as registry.example/fleetbench:0.1"
        ))
    };
    if image.is_empty() {
        return bad("is empty");
    }
    if image.len() > 4096 {
        return bad("is longer than 4096 characters");
    }
    if let Some(c) = image
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@".contains(*c)))
    {
        return bad(&format!("holds {c:?}, which no image reference does"));
    }
    let name = image.split('@').next().unwrap_or(image);
    // The path after the registry (which may hold a port and upper case) is lower case.
    let path = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => name,
    };
    let path = path.rsplit_once(':').map_or(path, |(p, _tag)| p);
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return bad("its repository path has upper-case letters");
    }
    if path.is_empty() || path.split('/').any(str::is_empty) {
        return bad("has an empty path component");
    }
    Ok(())
}

/// A DNS-1123 label: lower-case letters, digits and '-', starting and ending alphanumeric, at
/// most `max` characters.
fn dns_label(name: &str, max: usize) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not a Kubernetes name (DNS-1123 label: 1 to {max} lower-case letters, digits and \
             '-', starting and ending with a letter or digit)"
        ))
    }
}

/// A DNS-1123 subdomain (a Secret's name): labels joined by '.', at most 253 characters.
fn dns_subdomain(name: &str) -> Result<(), String> {
    let ok = name.len() <= 253 && name.split('.').all(|l| dns_label(l, 63).is_ok());
    if ok {
        Ok(())
    } else {
        Err(
            "not a Kubernetes name (DNS-1123 subdomain: at most 253 lower-case letters, \
             digits, '-' and '.', each part starting and ending with a letter or digit)"
                .into(),
        )
    }
}

/// The common start: ahead of now (a start in the past starts every shard at once, whenever
/// its pod comes up, and the run is not one).
pub(crate) fn start_ahead(start: SystemTime, now: SystemTime) -> Result<(), String> {
    match now.duration_since(start) {
        Ok(past) if past > Duration::ZERO => Err(format!(
            "--start-at is {}s in the past: the shards would each start as their pod comes up, \
             not together; give a time ahead (or --start-in)",
            past.as_secs().max(1)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_images_kubernetes_would_refuse_are_refused() {
        for ok in [
            "fleetbench:0.1",
            "registry.example/fleetbench:0.1",
            "localhost:5000/team/fleetbench@sha256:abc",
            "Registry.Example:443/fleetbench",
        ] {
            assert!(image(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "fleet bench",
            "fleetbench\n",
            "Fleetbench:0.1",
            "a//b",
            "x;rm",
        ] {
            assert!(image(bad).is_err(), "{bad:?}");
        }
        assert!(dns_label("load-tests", 63).is_ok());
        for bad in ["a/b", "-a", "a-", "A", ""] {
            assert!(dns_label(bad, 63).is_err(), "{bad:?}");
        }
        assert!(dns_subdomain("broker.password").is_ok());
        assert!(dns_subdomain("Bad Secret/x").is_err());
    }

    #[test]
    fn a_start_in_the_past_is_refused() {
        let now = SystemTime::now();
        assert!(start_ahead(now + Duration::from_secs(60), now).is_ok());
        let e = start_ahead(now - Duration::from_secs(90), now).expect_err("past");
        assert!(e.contains("90s in the past"), "{e}");
    }
}

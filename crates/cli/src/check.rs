//! `fleetbench check`, and the loading every command shares: read a scenario file, validate it,
//! and resolve what only this machine can tell (certificate files, the password's environment
//! variable), so that `check` refuses everything `run` would.

use std::path::{Path, PathBuf};

use fleetbench_fleet::transport::{tls_config, TlsConfig, TlsError, Transport};
use fleetbench_scenario::{
    BrokerTarget, ExternalBroker, Located, Location, Scenario, ScenarioError, Scheme,
};

use crate::{Outcome, UsageError};

/// A user name and its password.
type Credentials = Option<(String, String)>;

/// A scenario file is text of a few kilobytes; anything past this is not one.
const MAX_SCENARIO_BYTES: u64 = 1 << 20;

/// A validated scenario with what an external broker needs, read from this machine.
pub(crate) struct Prepared {
    pub scenario: Scenario,
    /// How clients reach an external broker (certificates read and checked); `Tcp` for the
    /// embedded one.
    pub transport: Transport,
    /// User name and password for an external broker.
    pub credentials: Credentials,
}

/// Read and validate one scenario file, and resolve its external broker's files and secrets.
/// Every problem is a usage error naming file, line and field.
pub(crate) fn load(path: &Path) -> anyhow::Result<Prepared> {
    load_with(path, None)
}

/// [`load`], with the broker given on the command line or in the environment instead of the
/// scenario's.
pub(crate) fn load_with(
    path: &Path,
    broker: Option<&crate::run_env::BrokerOverride>,
) -> anyhow::Result<Prepared> {
    let (scenario, _) = parse_file(path)?;
    prepare(path, scenario, broker)
}

/// [`load_with`] for a scenario already read from `path`.
pub(crate) fn prepare(
    path: &Path,
    mut scenario: Scenario,
    broker: Option<&crate::run_env::BrokerOverride>,
) -> anyhow::Result<Prepared> {
    if let Some(b) = broker {
        b.apply(&mut scenario).map_err(UsageError)?;
    }
    let (transport, credentials) = match &scenario.broker {
        BrokerTarget::Embedded(_) => (Transport::Tcp, None),
        BrokerTarget::External(x) => resolve(x, path).map_err(|e| UsageError(e.to_string()))?,
    };
    restart_programs(&scenario, path)?;
    Ok(Prepared {
        scenario,
        transport,
        credentials,
    })
}

/// Every `broker_restart` command's program can be started here: found on the PATH (a bare
/// name) or an executable file (a path). Found after the run, a missing one would have cost the
/// whole run.
fn restart_programs(scenario: &Scenario, path: &Path) -> anyhow::Result<()> {
    for f in &scenario.faults {
        let fleetbench_scenario::FaultKind::BrokerRestart {
            command: Some(command),
            ..
        } = &f.kind
        else {
            continue;
        };
        let Some(program) = command.first() else {
            continue;
        };
        if !runnable(Path::new(program)) {
            return Err(UsageError(format!(
                "{}: {}: its command's program {program:?} {}; give a program this machine \
                 has",
                path.display(),
                f.label(),
                if program.contains('/') {
                    "is not an executable file"
                } else {
                    "is not on the PATH"
                }
            ))
            .into());
        }
    }
    Ok(())
}

/// Whether `program` names an executable file, directly (with a `/`) or on the PATH.
fn runnable(program: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program);
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| executable(&d.join(program))))
}

/// Read and validate one scenario file, nothing resolved on this machine: the scenario and the
/// file's text.
pub(crate) fn parse_file(path: &Path) -> anyhow::Result<(Scenario, String)> {
    let shown = path.display().to_string();
    let text = read_text(path)?;
    let scenario =
        fleetbench_scenario::parse(&shown, &text).map_err(|e| UsageError(e.to_string()))?;
    Ok((scenario, text))
}

/// The file's text: a regular file of at most [`MAX_SCENARIO_BYTES`], in UTF-8.
pub(crate) fn read_text(path: &Path) -> anyhow::Result<String> {
    let shown = path.display();
    let usage = |msg: String| anyhow::Error::from(UsageError(msg));
    let bytes = crate::inputs::read_capped(path, "scenario", MAX_SCENARIO_BYTES)?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let location = Location::in_bytes(&shown.to_string(), bytes, at);
        usage(format!(
            "{location}: (file): not UTF-8 text (byte 0x{:02x}); save the scenario as UTF-8",
            bytes.get(at).copied().unwrap_or(0)
        ))
    })
}

/// The transport and credentials of an external broker: certificate files read (paths relative
/// to the scenario file) and the password read from its environment variable.
fn resolve(x: &ExternalBroker, scenario: &Path) -> Result<(Transport, Credentials), ScenarioError> {
    let credentials = match (&x.username, &x.password_env) {
        (Some(user), Some(var)) => Some((user.clone(), password(var)?)),
        (Some(user), None) => Some((user.clone(), String::new())),
        _ => None,
    };
    let transport = match x.scheme {
        Scheme::Mqtt => Transport::Tcp,
        Scheme::Ws => Transport::Ws {
            path: x.path.clone(),
        },
        Scheme::Mqtts => Transport::Tls(tls(x, scenario)?),
        Scheme::Wss => Transport::Wss {
            path: x.path.clone(),
            tls: tls(x, scenario)?,
        },
    };
    Ok((transport, credentials))
}

/// The password in the variable `var` names: set and not empty.
fn password(var: &Located<String>) -> Result<String, ScenarioError> {
    match std::env::var(&var.value) {
        Ok(p) if p.is_empty() => Err(var.error(format!(
            "{} is set but empty; an empty password is refused",
            var.value
        ))),
        Ok(p) => {
            crate::logging::keep_secret(&p);
            Ok(p)
        }
        Err(std::env::VarError::NotPresent) => Err(var.error(format!(
            "{} is not set in the environment; export the broker's password in it",
            var.value
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(var.error(format!(
            "{} does not hold UTF-8 text; MQTT passwords here are text",
            var.value
        ))),
    }
}

/// The TLS configuration of the scenario's certificates; a problem points at the field that
/// names the file at fault.
fn tls(x: &ExternalBroker, scenario: &Path) -> Result<TlsConfig, ScenarioError> {
    let dir = scenario.parent().unwrap_or(Path::new("."));
    let file = |f: &Option<Located<String>>| f.as_ref().map(|f| dir.join(&f.value));
    let (ca, cert, key) = (
        file(&x.tls.ca_file),
        file(&x.tls.client_cert),
        file(&x.tls.client_key),
    );
    let client = cert.as_deref().zip(key.as_deref());
    tls_config(ca.as_deref(), client).map_err(|e| {
        let path: Option<&PathBuf> = match &e {
            TlsError::Read { path, .. }
            | TlsError::Empty { path, .. }
            | TlsError::Invalid { path, .. } => Some(path),
            _ => None,
        };
        let field = [
            (&ca, &x.tls.ca_file),
            (&cert, &x.tls.client_cert),
            (&key, &x.tls.client_key),
        ]
        .into_iter()
        .find(|(p, _)| p.is_some() && p.as_ref() == path)
        .and_then(|(_, f)| f.as_ref())
        .or(x.tls.client_cert.as_ref())
        .or(x.tls.ca_file.as_ref());
        let message = format!("{e} (certificate paths are relative to the scenario file)");
        match field {
            Some(f) => f.error(message),
            None => ScenarioError::new(
                Location {
                    file: scenario.display().to_string(),
                    line: 1,
                    column: 1,
                },
                "broker",
                message,
            ),
        }
    })
}

pub(crate) fn check(files: &[PathBuf], shards: u32) -> anyhow::Result<Outcome> {
    let mut failed = 0;
    for f in files {
        let loaded = load(f).and_then(|p| {
            fleetbench_scenario::check_sharding(&p.scenario, shards)
                .map_err(|e| UsageError(format!("{}: {e}", f.display())))?;
            Ok(p)
        });
        match loaded {
            Ok(p) => {
                let s = &p.scenario;
                crate::say(format_args!(
                    "ok   {}: {} ({} devices in {} groups, {} observers, {:.1}s)\n",
                    f.display(),
                    s.name,
                    s.device_count(),
                    s.groups.len(),
                    s.observer_count(),
                    s.duration.as_secs_f64()
                ))
            }
            Err(e) => {
                failed += 1;
                eprintln!("{e:#}");
            }
        }
    }
    if failed > 0 {
        return Err(UsageError(format!(
            "{failed} of {} scenario files are invalid",
            files.len()
        ))
        .into());
    }
    Ok(Outcome::Pass)
}

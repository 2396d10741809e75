//! The brokers the comparison knows: how each is installed, started on a free loopback port
//! (on the last core where there are two or more) and stopped by its PID.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::root;
use crate::test::{apt_get_install, is_root};

/// A broker of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// rumqttd as fleetbench embeds it, in a process of its own (`fleetbench broker`).
    Embedded,
    /// rumqttd's own binary from crates.io, installed under target/tools/rumqttd.
    Rumqttd,
    /// Debian's mosquitto.
    Mosquitto,
    /// Debian's rabbitmq-server with its MQTT plugin, a node of its own.
    Rabbitmq,
    /// amqtt from PyPI, in a virtualenv of its own under target/tools/amqtt.
    Amqtt,
    /// aedes from npm under target/tools/aedes, started by a script of ours.
    Aedes,
}

/// The versions installed when missing.
const RUMQTTD: &str = "0.20.0";
const AMQTT: &str = "amqtt==0.12.1";
const AEDES: &str = "aedes@1.2.0";

impl Kind {
    pub(crate) const ALL: [Kind; 6] = [
        Kind::Embedded,
        Kind::Rumqttd,
        Kind::Mosquitto,
        Kind::Rabbitmq,
        Kind::Amqtt,
        Kind::Aedes,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Embedded => "embedded",
            Kind::Rumqttd => "rumqttd",
            Kind::Mosquitto => "mosquitto",
            Kind::Rabbitmq => "rabbitmq",
            Kind::Amqtt => "amqtt",
            Kind::Aedes => "aedes",
        }
    }

    pub(crate) fn parse(name: &str) -> anyhow::Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .with_context(|| {
                let known: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "no broker {name:?}; the comparison knows {}",
                    known.join(", ")
                )
            })
    }

    /// The committed configuration, for the brokers that read one (`{port}` stands for the
    /// port).
    fn config(self) -> Option<PathBuf> {
        let file = match self {
            Kind::Embedded | Kind::Aedes => return None,
            Kind::Rumqttd => "rumqttd.toml",
            Kind::Mosquitto => "mosquitto.conf",
            Kind::Rabbitmq => "rabbitmq.conf",
            Kind::Amqtt => "amqtt.yaml",
        };
        Some(root().join("benches/brokers").join(file))
    }
}

/// What a broker needs before it can start: installed (or found), and its version.
pub(crate) fn prepare(kind: Kind, fleetbench: &Path) -> anyhow::Result<String> {
    Ok(match kind {
        Kind::Embedded => format!("rumqttd 0.20 in {}", said(fleetbench, "--version")?),
        Kind::Rumqttd => said(&rumqttd()?, "--version")?,
        // `mosquitto -h` prints its version on the first line (and exits 3).
        Kind::Mosquitto => said(&mosquitto()?, "-h")?,
        Kind::Rabbitmq => {
            rabbitmq()?;
            let out = Command::new("dpkg-query")
                .args(["-W", "-f", "${Version}", "rabbitmq-server"])
                .output()
                .context("running dpkg-query for rabbitmq-server's version")?;
            format!("RabbitMQ {}", String::from_utf8_lossy(&out.stdout).trim())
        }
        Kind::Amqtt => format!("amqtt {}", said(&amqtt()?, "--version")?),
        Kind::Aedes => {
            let package = aedes()?.with_file_name("package.json");
            let text = std::fs::read_to_string(&package)
                .with_context(|| format!("reading {}", package.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", package.display()))?;
            let version = json["version"].as_str().unwrap_or("?").to_string();
            format!(
                "aedes {version} on node {}",
                said(Path::new("node"), "--version")?
            )
        }
    })
}

/// The first line `program arg` prints (a version).
fn said(program: &Path, arg: &str) -> anyhow::Result<String> {
    let out = Command::new(program)
        .arg(arg)
        .output()
        .with_context(|| format!("running {} {arg}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// mosquitto's binary: found, or installed with apt-get when this runs as root.
fn mosquitto() -> anyhow::Result<PathBuf> {
    debian(&["/usr/sbin/mosquitto", "/usr/bin/mosquitto"], "mosquitto")
}

/// RabbitMQ's server script (which execs the Erlang VM) and Erlang's port mapper (epmd): found,
/// or installed with apt-get when this runs as root.
fn rabbitmq() -> anyhow::Result<(PathBuf, PathBuf)> {
    let epmd = debian(&["/usr/bin/epmd"], "erlang-base")?;
    Ok((debian(&[RABBITMQ_SERVER], "rabbitmq-server")?, epmd))
}

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The first of `paths` that exists, after installing Debian's `package` when none does.
fn debian(paths: &[&str], package: &str) -> anyhow::Result<PathBuf> {
    let found = || paths.iter().map(PathBuf::from).find(|p| p.is_file());
    if let Some(p) = found() {
        return Ok(p);
    }
    if !is_root() {
        bail!("{package} is not installed (as root: apt-get install {package})");
    }
    apt_get_install(&[package])?;
    found().with_context(|| format!("apt-get installed {package}, but not as {}", paths[0]))
}

fn tools() -> PathBuf {
    root().join("target/tools")
}

/// rumqttd's binary, installed with `cargo install` when missing (a few minutes, once). Not
/// `--locked`: the lock file published with 0.20.0 pins metrics 0.22.1, which today's rustc
/// refuses (E0521); cargo picks the newest compatible versions instead.
fn rumqttd() -> anyhow::Result<PathBuf> {
    let dir = tools().join("rumqttd");
    let bin = dir.join("bin/rumqttd");
    if bin.is_file() {
        return Ok(bin);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    run_setup(
        Command::new(cargo)
            .args(["install", "--quiet", "rumqttd", "--version", RUMQTTD])
            .arg("--root")
            .arg(&dir),
        &format!("cargo install rumqttd --version {RUMQTTD}"),
    )?;
    Ok(bin)
}

/// amqtt's program, installed with pip into a virtualenv of its own when missing.
fn amqtt() -> anyhow::Result<PathBuf> {
    let venv = tools().join("amqtt");
    let bin = venv.join("bin/amqtt");
    if bin.is_file() {
        return Ok(bin);
    }
    run_setup(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run_setup(
        Command::new(venv.join("bin/pip")).args(["install", "--quiet", AMQTT]),
        &format!("pip install {AMQTT}"),
    )?;
    Ok(bin)
}

/// aedes's module, installed with npm when missing.
fn aedes() -> anyhow::Result<PathBuf> {
    let dir = tools().join("aedes");
    let module = dir.join("node_modules/aedes/aedes.js");
    if module.is_file() {
        return Ok(module);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    run_setup(
        Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", AEDES])
            .current_dir(&dir),
        &format!("npm install {AEDES} (node and npm are needed)"),
    )?;
    Ok(module)
}

fn run_setup(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Where the broker and the generator run: the broker on the last core, fleetbench on the
/// others, when the machine has two or more and `taskset` is there.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub(crate) broker: Option<String>,
    pub(crate) generator: Option<String>,
}

impl Placement {
    pub(crate) fn of_machine() -> Placement {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = Command::new("taskset")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if cores < 2 || !taskset {
            return Placement {
                broker: None,
                generator: None,
            };
        }
        let last = cores - 1;
        Placement {
            broker: Some(last.to_string()),
            generator: Some(if last == 1 {
                "0".to_string()
            } else {
                format!("0-{}", last - 1)
            }),
        }
    }

    /// `program` with `args`, pinned to `cores` when given.
    pub(crate) fn command(cores: Option<&str>, program: &Path) -> Command {
        match cores {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(c).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }
}

/// A broker that is running: stopped (SIGTERM, then SIGKILL after 5 s) when dropped, and
/// after it the helpers it needed (RabbitMQ's epmd).
pub(crate) struct Running {
    pub(crate) port: u16,
    child: Child,
    helpers: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Running {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Still running? A broker that crashed is a finding of its row.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Stop it, then its helpers, by their PIDs, and wait for them.
    pub(crate) fn stop(&mut self) {
        stop_child(&mut self.child);
        for helper in &mut self.helpers {
            stop_child(helper);
        }
    }
}

/// SIGTERM to `child`, SIGKILL if it is still there 5 s later; reaped either way.
fn stop_child(child: &mut Child) {
    if child.try_wait().is_ok_and(|s| s.is_some()) {
        return;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().is_ok_and(|s| s.is_some()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a broker may take to listen: RabbitMQ boots an Erlang node and its plugins, which
/// took 13 s on a quiet 2-core VM.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Start `kind` on a free loopback port and wait until it accepts connections.
pub(crate) fn start(
    kind: Kind,
    fleetbench: &Path,
    place: &Placement,
    log: &Path,
) -> anyhow::Result<Running> {
    let port = free_port()?;
    // On tmpfs where there is one: no broker of the comparison writes to a disk.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .context("a directory for the broker's files")?;
    let mut helpers = Vec::new();
    let mut cmd = command(kind, fleetbench, place, port, dir.path(), &mut helpers)?;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err_file = log_file.try_clone().context("the broker's log")?;
    let spawned = cmd
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            helpers.iter_mut().for_each(stop_child);
            return Err(e).with_context(|| format!("starting {}", kind.name()));
        }
    };
    let mut running = Running {
        port,
        child,
        helpers,
        _dir: dir,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = running.exited() {
            bail!(
                "{} exited as it started ({status}); its log: {}",
                kind.name(),
                log.display()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(running);
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not listen on port {port} within {} s; its log: {}",
                kind.name(),
                START_TIMEOUT.as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The command that starts `kind` on `port`, pinned to the broker's cores; helpers it needs
/// started go to `helpers`, to be stopped with it.
fn command(
    kind: Kind,
    fleetbench: &Path,
    place: &Placement,
    port: u16,
    dir: &Path,
    helpers: &mut Vec<Child>,
) -> anyhow::Result<Command> {
    let cores = place.broker.as_deref();
    Ok(match kind {
        Kind::Embedded => {
            let mut c = Placement::command(cores, fleetbench);
            c.args(["broker", "--listen", &format!("127.0.0.1:{port}")]);
            c
        }
        Kind::Rumqttd => {
            let mut c = configured(cores, &rumqttd()?, kind, port, dir)?;
            c.arg("-q"); // no banner
            c
        }
        Kind::Mosquitto => configured(cores, &mosquitto()?, kind, port, dir)?,
        Kind::Amqtt => configured(cores, &amqtt()?, kind, port, dir)?,
        Kind::Rabbitmq => rabbitmq_node(cores, port, dir, helpers)?,
        Kind::Aedes => {
            let mut c = Placement::command(cores, Path::new("node"));
            c.arg(root().join("benches/brokers/aedes-server.mjs"))
                .arg(port.to_string())
                .arg(aedes()?);
            c
        }
    })
}

/// `program -c CONF`, CONF the committed configuration of `kind` for `port`.
fn configured(
    cores: Option<&str>,
    program: &Path,
    kind: Kind,
    port: u16,
    dir: &Path,
) -> anyhow::Result<Command> {
    let mut c = Placement::command(cores, program);
    c.arg("-c").arg(configure(kind, port, dir)?);
    Ok(c)
}

/// A RabbitMQ node of its own: its name, epmd (started here, on a port of its own, so that
/// nothing outlives the comparison), distribution port, data, logs, configuration and plugins
/// all in `dir`, and the Erlang VM exec'd in place of the script (`RUNNING_UNDER_SYSTEMD`), so
/// that the PID the harness stops is the broker's.
fn rabbitmq_node(
    cores: Option<&str>,
    port: u16,
    dir: &Path,
    helpers: &mut Vec<Child>,
) -> anyhow::Result<Command> {
    let (server, epmd) = rabbitmq()?;
    let conf = configure(Kind::Rabbitmq, port, dir)?;
    let plugins = dir.join("enabled_plugins");
    std::fs::write(&plugins, "[rabbitmq_mqtt].\n")
        .with_context(|| format!("writing {}", plugins.display()))?;
    let epmd_port = free_port()?.to_string();
    let epmd = Command::new(epmd)
        .args(["-port", &epmd_port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting epmd for RabbitMQ")?;
    helpers.push(epmd);
    let mut c = Placement::command(cores, &server);
    c.env("HOME", dir)
        .env("ERL_EPMD_PORT", &epmd_port)
        .env("RABBITMQ_NODENAME", format!("fleetbench{port}@localhost"))
        .env("RABBITMQ_DIST_PORT", free_port()?.to_string())
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .env("RABBITMQ_CONFIG_FILE", conf)
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", plugins)
        .env("RUNNING_UNDER_SYSTEMD", "true");
    Ok(c)
}

/// The committed configuration with `port` in it, written to `dir`.
fn configure(kind: Kind, port: u16, dir: &Path) -> anyhow::Result<PathBuf> {
    let committed = kind.config().context("the broker's configuration")?;
    let text = std::fs::read_to_string(&committed)
        .with_context(|| format!("reading {}", committed.display()))?;
    let name = committed.file_name().context("a configuration file name")?;
    let conf = dir.join(name);
    std::fs::write(&conf, text.replace("{port}", &port.to_string()))
        .with_context(|| format!("writing {}", conf.display()))?;
    Ok(conf)
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("finding a free loopback port")?;
    Ok(l.local_addr().context("the free port")?.port())
}

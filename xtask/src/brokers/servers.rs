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
    /// Debian's mosquitto.
    Mosquitto,
    /// amqtt from PyPI, in a virtualenv of its own under target/tools/amqtt.
    Amqtt,
    /// aedes from npm under target/tools/aedes, started by a script of ours.
    Aedes,
}

/// The versions installed when missing.
const AMQTT: &str = "amqtt==0.12.1";
const AEDES: &str = "aedes@1.2.0";

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [Kind::Embedded, Kind::Mosquitto, Kind::Amqtt, Kind::Aedes];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Embedded => "embedded",
            Kind::Mosquitto => "mosquitto",
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
            Kind::Mosquitto => "mosquitto.conf",
            Kind::Amqtt => "amqtt.yaml",
        };
        Some(root().join("benches/brokers").join(file))
    }
}

/// What a broker needs before it can start: installed (or found), and its version.
pub(crate) fn prepare(kind: Kind, fleetbench: &Path) -> anyhow::Result<String> {
    Ok(match kind {
        Kind::Embedded => format!("rumqttd 0.20 in {}", said(fleetbench, "--version")?),
        // `mosquitto -h` prints its version on the first line (and exits 3).
        Kind::Mosquitto => said(&mosquitto()?, "-h")?,
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
    let found = |p: &str| Path::new(p).is_file().then(|| PathBuf::from(p));
    if let Some(p) = found("/usr/sbin/mosquitto").or_else(|| found("/usr/bin/mosquitto")) {
        return Ok(p);
    }
    if !is_root() {
        bail!("mosquitto is not installed (as root: apt-get install mosquitto)");
    }
    apt_get_install(&["mosquitto"])?;
    found("/usr/sbin/mosquitto").context("apt-get installed mosquitto, but not in /usr/sbin")
}

fn tools() -> PathBuf {
    root().join("target/tools")
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

/// A broker that is running: stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
pub(crate) struct Running {
    pub(crate) port: u16,
    child: Child,
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

    /// Stop it by its PID and wait for it.
    pub(crate) fn stop(&mut self) {
        if self.child.try_wait().is_ok_and(|s| s.is_some()) {
            return;
        }
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().is_ok_and(|s| s.is_some()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start `kind` on a free loopback port and wait until it accepts connections.
pub(crate) fn start(
    kind: Kind,
    fleetbench: &Path,
    place: &Placement,
    log: &Path,
) -> anyhow::Result<Running> {
    let port = free_port()?;
    let dir = tempfile::tempdir().context("a directory for the broker's files")?;
    let cores = place.broker.as_deref();
    let mut cmd = match kind {
        Kind::Embedded => {
            let mut c = Placement::command(cores, fleetbench);
            c.args(["broker", "--listen", &format!("127.0.0.1:{port}")]);
            c
        }
        Kind::Mosquitto => {
            let mut c = Placement::command(cores, &mosquitto()?);
            c.arg("-c").arg(configure(kind, port, dir.path())?);
            c
        }
        Kind::Amqtt => {
            let mut c = Placement::command(cores, &amqtt()?);
            c.arg("-c").arg(configure(kind, port, dir.path())?);
            c
        }
        Kind::Aedes => {
            let mut c = Placement::command(cores, Path::new("node"));
            c.arg(root().join("benches/brokers/aedes-server.mjs"))
                .arg(port.to_string())
                .arg(aedes()?);
            c
        }
    };
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err_file = log_file.try_clone().context("the broker's log")?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .with_context(|| format!("starting {}", kind.name()))?;
    let mut running = Running {
        port,
        child,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
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
            bail!("{} did not listen on port {port} within 20 s", kind.name());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

//! The embedded broker as a child process (`[broker] process = "child"`): `fleetbench broker`
//! started by this process, with its own open-file and CPU budgets, so that one machine can
//! carry more devices than one process's 20,000 descriptors allow.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fleetbench_broker::Endpoints;
use fleetbench_metrics::env::{proc_kb, stat_cpu_seconds};
use fleetbench_report::report::{ListenerRestartReport, ProcessUsage};

pub(crate) struct ChildBroker {
    child: Child,
    pub endpoints: Endpoints,
    started: Instant,
    /// What the child's broker watch reported on its standard output.
    events: Arc<Mutex<Vec<WatchEvent>>>,
    options: Options,
    /// CPU seconds and peak memory of the processes a restart ended.
    before: (f64, u64),
}

/// How the broker process is started (again, on a restart).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub tcp_nodelay: bool,
    pub max_connections: usize,
    pub mqtt5: bool,
    /// Messages kept per subscription filter (`--filter-log-mib`).
    pub filter_log_mib: u32,
}

/// A line `fleetbench broker` prints when its watch saw something (a rumqttd panic, a wedged
/// listener restarted): `event: ` and this as JSON. The parent reads them into the run's report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct WatchEvent {
    /// The listener restarted, if that is the news.
    pub restart: Option<ListenerRestartReport>,
    /// rumqttd panics in the broker process so far.
    pub panics: u64,
}

/// The prefix of a watch event line.
pub(crate) const EVENT_PREFIX: &str = "event: ";

const ATTEMPTS: u32 = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

impl ChildBroker {
    pub(crate) fn start(listeners: u16, options: Options) -> anyhow::Result<ChildBroker> {
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            match Self::try_start(listeners, options) {
                Ok(b) => return Ok(b),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the broker process did not start")))
    }

    fn try_start(listeners: u16, options: Options) -> anyhow::Result<ChildBroker> {
        // Ports that were free a moment ago; a clash makes the child exit and we try again.
        let held: Vec<TcpListener> = (0..listeners.max(1))
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .context("finding free ports for the broker process")?;
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()
            .context("reading the free ports")?;
        drop(held);
        Self::start_on(ports, options, Arc::default())
    }

    /// Start `fleetbench broker` on `ports` and wait for its banner.
    fn start_on(
        ports: Vec<u16>,
        options: Options,
        events: Arc<Mutex<Vec<WatchEvent>>>,
    ) -> anyhow::Result<ChildBroker> {
        let Options {
            tcp_nodelay,
            max_connections,
            mqtt5,
            filter_log_mib,
        } = options;
        let exe = std::env::current_exe().context("locating the fleetbench executable")?;
        let mut command = Command::new(exe);
        command.arg("broker");
        for p in &ports {
            command.arg("--listen").arg(format!("127.0.0.1:{p}"));
        }
        command
            .arg("--max-connections")
            .arg(max_connections.to_string())
            .arg("--filter-log-mib")
            .arg(filter_log_mib.to_string());
        if !tcp_nodelay {
            command.arg("--no-tcp-nodelay");
        }
        if mqtt5 {
            command.arg("--mqtt5");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the broker process")?;
        let stdout = child.stdout.take().context("the broker process's output")?;
        let banner = read_output(stdout, events.clone());
        let mut broker = ChildBroker {
            child,
            endpoints: Endpoints {
                host: "127.0.0.1".to_string(),
                ports,
            },
            started: Instant::now(),
            events,
            options,
            before: (0.0, 0),
        };
        match banner.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.contains("listening") => Ok(broker),
            Ok(line) => {
                broker.end();
                bail!("the broker process did not start: {}", line.trim())
            }
            Err(_) => {
                broker.end();
                bail!("the broker process was not ready within {READY_TIMEOUT:?}")
            }
        }
    }

    /// CPU seconds and peak memory of the current broker process.
    fn process_usage(&self) -> (f64, u64) {
        let pid = self.child.id();
        let cpu_s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat_cpu_seconds(&stat).map(|(_, s)| s))
            .unwrap_or(0.0);
        (
            cpu_s,
            proc_kb(&format!("/proc/{pid}/status"), "VmHWM").unwrap_or(0),
        )
    }

    /// CPU and peak memory of the broker processes so far (restarts included).
    pub(crate) fn usage(&self) -> ProcessUsage {
        let (cpu_s, peak) = self.process_usage();
        ProcessUsage {
            cpu_cores: (cpu_s + self.before.0) / self.started.elapsed().as_secs_f64().max(0.001),
            peak_rss_bytes: peak.max(self.before.1),
        }
    }

    /// A `broker_restart` fault: kill the broker process (SIGKILL: no goodbye to anyone), wait
    /// `down`, and start it again on the same ports. What its watch saw before stays.
    pub(crate) fn restart(&mut self, down: Duration) -> anyhow::Result<String> {
        let (cpu_s, peak) = self.process_usage();
        let pid = self.child.id();
        self.end();
        std::thread::sleep(down);
        let began = Instant::now();
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let (ports, events) = (self.endpoints.ports.clone(), self.events.clone());
            match Self::start_on(ports, self.options, events) {
                Ok(mut next) => {
                    next.started = self.started;
                    next.before = (self.before.0 + cpu_s, self.before.1.max(peak));
                    let took = began.elapsed();
                    *self = next;
                    return Ok(format!(
                        "broker process {pid} killed (SIGKILL), down {down:?}, a new one ({}) \
                         answered on the same ports {took:.1?} after its start",
                        self.child.id()
                    ));
                }
                Err(e) => last = Some(e),
            }
            // A port still held by the old process's sockets frees within moments.
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the broker process did not start again")))
    }

    /// Stop the broker process (the one this process started, by its PID) and report what it
    /// used and what its watch saw.
    pub(crate) fn stop(mut self) -> (ProcessUsage, Vec<WatchEvent>) {
        let usage = self.usage();
        self.end();
        let events = self.events.lock().map(|e| e.clone()).unwrap_or_default();
        (usage, events)
    }

    fn end(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read the broker process's output on a thread of its own: the banner (sent on the channel
/// once it comes: every listener has answered a CONNECT with a CONNACK), then its watch's
/// events. It keeps reading so that the child never blocks on a full pipe.
fn read_output(stdout: ChildStdout, seen: Arc<Mutex<Vec<WatchEvent>>>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let mut next = String::new();
        while reader.read_line(&mut next).map(|n| n > 0).unwrap_or(false) {
            let event = next
                .trim()
                .strip_prefix(EVENT_PREFIX)
                .and_then(|json| serde_json::from_str::<WatchEvent>(json).ok());
            if let (Some(e), Ok(mut all)) = (event, seen.lock()) {
                all.push(e);
            }
            next.clear();
        }
    });
    rx
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        self.end();
    }
}

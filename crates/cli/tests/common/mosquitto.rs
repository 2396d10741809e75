//! Debian's mosquitto as an external broker, on loopback ports of its own. `cargo xtask test`
//! installs it when it is missing; tests that use it fail (never skip) without it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running mosquitto, ended (by its PID) when dropped.
pub(crate) struct Mosquitto {
    child: Child,
    /// Its plain MQTT listener on 127.0.0.1.
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A program of the mosquitto package (`FLEETBENCH_MOSQUITTO` names the broker's binary).
pub(crate) fn mosquitto_program(name: &str) -> PathBuf {
    if name == "mosquitto" {
        if let Some(p) = std::env::var_os("FLEETBENCH_MOSQUITTO") {
            return p.into();
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: `cargo xtask test` installs it (apt-get install mosquitto)")
        })
}

impl Mosquitto {
    /// Anyone may connect; nothing is kept between runs or queued without limit.
    pub(crate) fn start() -> Mosquitto {
        Mosquitto::start_with(|_| ("allow_anonymous true\n".to_string(), Vec::new()))
    }

    /// `setup` gets the broker's directory and returns configuration to add after the plain
    /// listener (settings and further listeners) and the ports of those listeners, which are
    /// waited for as well.
    pub(crate) fn start_with(setup: impl FnOnce(&Path) -> (String, Vec<u16>)) -> Mosquitto {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let (extra, mut ports) = setup(dir.path());
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "persistence false\nmax_queued_messages 0\nlog_type error\n\
                 listener {port} 127.0.0.1\n{extra}"
            ),
        )
        .expect("write config");
        let child = Command::new(mosquitto_program("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mosquitto");
        let m = Mosquitto { child, port, dir };
        ports.push(port);
        let start = Instant::now();
        for p in ports {
            while TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "mosquitto did not listen on {p}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        m
    }
}

impl Mosquitto {
    /// The broker's process id (for a test that restarts it as a service manager would).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

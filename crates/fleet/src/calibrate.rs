//! The calibration workload: a small, fixed piece of work every run executes on the same machine
//! just before its scenario, so that timing figures can be stated as multiples of it. "p99 =
//! 9.3 loopback round trips" means about the same on a laptop and on a CI runner; "p99 = 310 us"
//! does not.
//!
//! The work is what the fleet's own path is made of, without the broker under test: tokio tasks
//! exchanging small frames over loopback TCP, echoed back.
//!
//! - The latency unit is what one round trip costs a single busy core: several connections
//!   ping-pong at once on one thread (a current-thread runtime), and the unit is that thread's
//!   time divided by the round trips it made. A lone connection's round trip would be the more
//!   obvious unit, but it mostly measures how fast an idle core wakes up, which jumps between
//!   about 20 and 60 us on the same virtual machine from one minute to the next; a busy core
//!   does not sleep, and its cost per round trip also does not change with the number of cores.
//! - The throughput unit is round trips per second of many connections at once on every worker
//!   thread of the fleet's runtime: what the whole machine can push through loopback.
//!
//! Each part runs a few times and the median is kept, so that one unlucky round does not move
//! the unit.

use std::time::{Duration, Instant};

use fleetbench_metrics::calibration::Calibration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes per frame: about a small MQTT PUBLISH with fleetbench's header.
const FRAME: usize = 64;

/// How much calibration work to do.
#[derive(Debug, Clone, Copy)]
pub struct CalibrationWork {
    /// Round trips in all of the one-core part, per round.
    pub single_round_trips: u32,
    /// Connections ping-ponging at once (in both parts).
    pub parallel_connections: u32,
    /// Round trips of each connection of the all-cores part, per round.
    pub parallel_round_trips: u32,
    /// Rounds of each part; the median round is kept.
    pub rounds: u32,
}

impl Default for CalibrationWork {
    /// About half a second on a 2-core machine.
    fn default() -> Self {
        CalibrationWork {
            single_round_trips: 8_000,
            parallel_connections: 16,
            parallel_round_trips: 500,
            rounds: 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("calibration over loopback failed: {0}")]
pub struct CalibrationError(String);

fn err(what: &str) -> impl Fn(std::io::Error) -> CalibrationError + '_ {
    move |e| CalibrationError(format!("{what}: {e}"))
}

/// Run the calibration workload: the throughput part on the current tokio runtime, the latency
/// part on a thread of its own (loopback only; every connection, task and thread ends before
/// this returns).
pub async fn calibrate(work: CalibrationWork) -> Result<Calibration, CalibrationError> {
    let started = Instant::now();
    let rounds = work.rounds.max(1) as usize;
    let mut costs = Vec::with_capacity(rounds);
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (cost_tx, cost_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("fleet-calibrate".into())
            .spawn(move || {
                let _ = cost_tx.send(one_core_round_trip_us(work));
            })
            .map_err(err("starting the calibration thread"))?;
        costs.push(
            cost_rx
                .await
                .map_err(|_| CalibrationError("the calibration thread ended early".into()))??,
        );
        rates.push(
            round_trips_per_s(
                work.parallel_connections.max(1),
                work.parallel_round_trips.max(1),
            )
            .await?,
        );
    }
    Ok(Calibration {
        core_round_trip_us: median(&mut costs),
        round_trips_per_s: median(&mut rates),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The latency part: `parallel_connections` connections ping-pong `single_round_trips` round
/// trips in all on one thread; its time per round trip in microseconds.
fn one_core_round_trip_us(work: CalibrationWork) -> Result<f64, CalibrationError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(err("starting the one-core runtime"))?;
    let connections = work.parallel_connections.max(1);
    let each = (work.single_round_trips / connections).max(1);
    Ok(1e6 / rt.block_on(round_trips_per_s(connections, each))?)
}

/// `connections` connections each make `each` round trips at once, on the current runtime;
/// how many round trips per second they made together.
async fn round_trips_per_s(connections: u32, each: u32) -> Result<f64, CalibrationError> {
    let (addr, echo) = echo_server().await?;
    let t0 = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(ping_pong(addr, each)))
        .collect();
    let mut result = Ok(());
    for c in clients {
        match c.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(CalibrationError(format!("a calibration task failed: {e}"))),
        }
    }
    let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
    echo.abort();
    result.map(|()| f64::from(connections) * f64::from(each) / elapsed)
}

/// A loopback listener that echoes every frame, on the current runtime.
async fn echo_server(
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), CalibrationError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(err("binding a loopback port"))?;
    let addr = listener.local_addr().map_err(err("reading its address"))?;
    let echo = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; FRAME];
                while sock.read_exact(&mut buf).await.is_ok() {
                    if sock.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok((addr, echo))
}

/// `n` round trips on a fresh connection.
async fn ping_pong(addr: std::net::SocketAddr, n: u32) -> Result<(), CalibrationError> {
    let mut sock = TcpStream::connect(addr)
        .await
        .map_err(err("connecting over loopback"))?;
    sock.set_nodelay(true).map_err(err("setting TCP_NODELAY"))?;
    let mut frame = [0u8; FRAME];
    for i in 0..n {
        frame[..4].copy_from_slice(&i.to_le_bytes());
        sock.write_all(&frame).await.map_err(err("sending"))?;
        sock.read_exact(&mut frame)
            .await
            .map_err(err("receiving"))?;
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// How long the default calibration takes at most before a run gives up on it.
pub const CALIBRATION_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calibration_measures_plausible_units() {
        let c = calibrate(CalibrationWork {
            single_round_trips: 400,
            parallel_connections: 4,
            parallel_round_trips: 100,
            rounds: 3,
        })
        .await
        .expect("calibration");
        // A loopback round trip costs a core microseconds, not nanoseconds or milliseconds;
        // every worker thread together manages at least half of what one busy core does.
        assert!(
            (0.5..1_000.0).contains(&c.core_round_trip_us),
            "one-core round trip {} us",
            c.core_round_trip_us
        );
        assert!(
            c.round_trips_per_s > 0.5 * 1e6 / c.core_round_trip_us,
            "{} round trips/s against {} us per round trip on one core",
            c.round_trips_per_s,
            c.core_round_trip_us
        );
        assert!(c.elapsed_s > 0.0 && c.elapsed_s < 30.0);
    }
}

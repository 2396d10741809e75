//! The calibration workload: a small, fixed piece of work every run executes on the same machine
//! just before its scenario, so that timing figures can be stated as multiples of it. "p99 =
//! 9.3 loopback round trips" means about the same on a laptop and on a CI runner; "p99 = 310 us"
//! does not.
//!
//! The work is what the fleet's own path is made of, without the broker under test: tokio tasks
//! exchanging small frames over loopback TCP. One connection ping-pongs alone (its median round
//! trip is the latency unit); then many connections ping-pong at once on every worker thread
//! (their combined round trips per second are the throughput unit). Each part runs a few times
//! and the median is kept, so one unlucky scheduling hiccup does not move the unit.

use std::time::{Duration, Instant};

use fleetbench_metrics::report::Calibration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes per frame: about a small MQTT PUBLISH with fleetbench's header.
const FRAME: usize = 64;

/// How much calibration work to do.
#[derive(Debug, Clone, Copy)]
pub struct CalibrationWork {
    /// Round trips of the lone connection, per round.
    pub single_round_trips: u32,
    /// Connections ping-ponging at once in the parallel part.
    pub parallel_connections: u32,
    /// Round trips of each of them, per round.
    pub parallel_round_trips: u32,
    /// Rounds of each part; the median round is kept.
    pub rounds: u32,
}

impl Default for CalibrationWork {
    /// About half a second on a 2-core machine.
    fn default() -> Self {
        CalibrationWork {
            single_round_trips: 2_000,
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

/// Run the calibration workload on the current tokio runtime (loopback only; every connection
/// and task ends before this returns).
pub async fn calibrate(work: CalibrationWork) -> Result<Calibration, CalibrationError> {
    let started = Instant::now();
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
    let result = measure(addr, work).await;
    echo.abort();
    let (rtt_p50_us, round_trips_per_s) = result?;
    Ok(Calibration {
        rtt_p50_us,
        round_trips_per_s,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

async fn measure(
    addr: std::net::SocketAddr,
    work: CalibrationWork,
) -> Result<(f64, f64), CalibrationError> {
    let rounds = work.rounds.max(1) as usize;
    let mut rtt_medians = Vec::with_capacity(rounds);
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut rtts = ping_pong(addr, work.single_round_trips.max(1), true).await?;
        rtt_medians.push(median_ns(&mut rtts) as f64 / 1_000.0);

        let t0 = Instant::now();
        let clients: Vec<_> = (0..work.parallel_connections.max(1))
            .map(|_| tokio::spawn(ping_pong(addr, work.parallel_round_trips.max(1), false)))
            .collect();
        for c in clients {
            c.await
                .map_err(|e| CalibrationError(format!("a calibration task failed: {e}")))??;
        }
        let total = f64::from(work.parallel_connections.max(1))
            * f64::from(work.parallel_round_trips.max(1));
        rates.push(total / t0.elapsed().as_secs_f64().max(1e-9));
    }
    Ok((median(&mut rtt_medians), median(&mut rates)))
}

/// `n` round trips on a fresh connection; each one's time in nanoseconds when `timed`.
async fn ping_pong(
    addr: std::net::SocketAddr,
    n: u32,
    timed: bool,
) -> Result<Vec<u64>, CalibrationError> {
    let mut sock = TcpStream::connect(addr)
        .await
        .map_err(err("connecting over loopback"))?;
    sock.set_nodelay(true).map_err(err("setting TCP_NODELAY"))?;
    let mut frame = [0u8; FRAME];
    let mut times = Vec::with_capacity(if timed { n as usize } else { 0 });
    for i in 0..n {
        frame[..4].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        sock.write_all(&frame).await.map_err(err("sending"))?;
        sock.read_exact(&mut frame)
            .await
            .map_err(err("receiving"))?;
        if timed {
            times.push(t.elapsed().as_nanos() as u64);
        }
    }
    Ok(times)
}

fn median_ns(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
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
            single_round_trips: 200,
            parallel_connections: 4,
            parallel_round_trips: 100,
            rounds: 3,
        })
        .await
        .expect("calibration");
        // A loopback round trip through tokio takes microseconds, not nanoseconds or seconds;
        // connections working at once share the machine rather than queue behind each other,
        // so together they manage at least a fifth of what one RTT allows a lone connection.
        assert!(
            (1.0..5_000.0).contains(&c.rtt_p50_us),
            "rtt p50 {} us",
            c.rtt_p50_us
        );
        assert!(
            c.round_trips_per_s > 0.2 * 1e6 / c.rtt_p50_us,
            "{} round trips/s against an RTT of {} us",
            c.round_trips_per_s,
            c.rtt_p50_us
        );
        assert!(c.elapsed_s > 0.0 && c.elapsed_s < 30.0);
    }
}

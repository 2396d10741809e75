//! The network between the devices and the broker, for `network` faults: a TCP proxy on
//! loopback, one port per broker port, that the devices connect through (observers connect to
//! the broker directly: they are the measurement). Outside a fault's window it forwards bytes
//! as they come. Inside one it adds `delay` (plus or minus `jitter`, order kept) to every chunk
//! in both directions, drops a share of the devices' QoS 0 PUBLISH packets (it reads the MQTT
//! framing of the device-to-broker stream for that), limits each connection's bandwidth each
//! way (bytes queue behind the link, as in a slow modem), cuts every connection at the start
//! and refuses new ones, or holds everything until the end (a blackhole: connections stay
//! open).
//! It is only started when the scenario has network faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use fleetbench_scenario::{Fault, FaultKind, NetworkFault};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// What the proxy did in each network fault's window, in the plan's order.
#[derive(Debug, Default)]
pub(crate) struct ProxyStats {
    /// Each window's fault: its index in the scenario's faults.
    pub fault: Vec<usize>,
    /// QoS 0 publishes dropped.
    pub dropped: Vec<AtomicU64>,
    /// Connections cut (at the start, or refused while the window lasted).
    pub cut: Vec<AtomicU64>,
}

/// The proxy's windows, from the ramp start, and where it is in them.
struct Windows {
    faults: Vec<(Duration, Duration, NetworkFault)>,
    ramp: watch::Receiver<Option<Instant>>,
    stats: Arc<ProxyStats>,
    /// The cut window that has just begun (by index): one signal for every connection, sent
    /// once when it starts.
    cuts: watch::Receiver<Option<usize>>,
}

impl Windows {
    /// The window in force now: its index, fault and end.
    fn now(&self) -> Option<(usize, NetworkFault, Instant)> {
        let ramp = (*self.ramp.borrow())?;
        let now = Instant::now();
        self.faults
            .iter()
            .enumerate()
            .find_map(|(i, (at, len, f))| {
                let (start, end) = (ramp + *at, ramp + *at + *len);
                (now >= start && now < end).then_some((i, *f, end))
            })
    }
}

/// Listen on a loopback port per upstream port; returns the ports, in the same order.
pub(crate) fn start(
    host: &str,
    upstream: &[u16],
    plan: &[(usize, Fault)],
    ramp: watch::Receiver<Option<Instant>>,
    end: CancellationToken,
) -> std::io::Result<(Vec<u16>, Arc<ProxyStats>)> {
    let (index, faults): (Vec<usize>, Vec<(Duration, Duration, NetworkFault)>) = plan
        .iter()
        .filter_map(|(i, f)| match f.kind {
            FaultKind::Network(n) => Some((*i, (f.at, f.length, n))),
            _ => None,
        })
        .unzip();
    let stats = Arc::new(ProxyStats {
        fault: index,
        dropped: faults.iter().map(|_| AtomicU64::new(0)).collect(),
        cut: faults.iter().map(|_| AtomicU64::new(0)).collect(),
    });
    let (cut_tx, cuts) = watch::channel(None);
    tokio::spawn(announce_cuts(
        faults.clone(),
        ramp.clone(),
        cut_tx,
        end.clone(),
    ));
    let windows = Arc::new(Windows {
        faults,
        ramp,
        stats: stats.clone(),
        cuts,
    });
    let mut ports = Vec::with_capacity(upstream.len());
    for &up in upstream {
        let std = std::net::TcpListener::bind("127.0.0.1:0")?;
        std.set_nonblocking(true)?;
        ports.push(std.local_addr()?.port());
        let listener = TcpListener::from_std(std)?;
        let to = format!("{}:{up}", fleetbench_scenario::url_host(host));
        tokio::spawn(accept(listener, to, windows.clone(), end.clone()));
    }
    Ok((ports, stats))
}

/// Tell every connection when a cut window begins.
async fn announce_cuts(
    faults: Vec<(Duration, Duration, NetworkFault)>,
    mut ramp: watch::Receiver<Option<Instant>>,
    cuts: watch::Sender<Option<usize>>,
    end: CancellationToken,
) {
    let start = tokio::select! {
        r = ramp.wait_for(|r| r.is_some()) => match r.ok().and_then(|r| *r) {
            Some(start) => start,
            None => return,
        },
        _ = end.cancelled() => return,
    };
    for (i, (at, _, _)) in faults.iter().enumerate().filter(|(_, (_, _, f))| f.cut) {
        tokio::select! {
            _ = sleep_until(start + *at) => { cuts.send_replace(Some(i)); }
            _ = end.cancelled() => return,
        }
    }
}

async fn accept(listener: TcpListener, to: String, windows: Arc<Windows>, end: CancellationToken) {
    loop {
        let client = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    debug!("proxy accept: {e}");
                    continue;
                }
            },
            _ = end.cancelled() => return,
        };
        if let Some((i, _, _)) = windows.now().filter(|(_, f, _)| f.cut) {
            // The network is cut: the connection goes nowhere.
            windows.stats.cut[i].fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let (to, windows) = (to.clone(), windows.clone());
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(&to).await {
                connection(client, server, windows).await;
            }
        });
    }
}

/// One device connection: both directions until either side closes or a cut comes.
async fn connection(client: TcpStream, server: TcpStream, windows: Arc<Windows>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_rx, client_tx) = client.into_split();
    let (server_rx, server_tx) = server.into_split();
    let mut cuts = windows.cuts.clone();
    cuts.borrow_and_update();
    let up = pump(client_rx, server_tx, windows.clone(), true);
    let down = pump(server_rx, client_tx, windows.clone(), false);
    let cut = async {
        // The next cut window to begin ends the connection.
        if let Ok(Some(i)) = cuts.changed().await.map(|()| *cuts.borrow()) {
            windows.stats.cut[i].fetch_add(1, Ordering::Relaxed);
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut => {}
    }
}

/// One direction: read, apply the window in force, and hand each chunk to a writer that sends
/// it at its release time (so that a delay does not slow reading down). Devices' QoS 0
/// publishes (`upstream`) may be dropped.
async fn pump(mut rx: OwnedReadHalf, tx: OwnedWriteHalf, windows: Arc<Windows>, upstream: bool) {
    let (out, queue) = mpsc::unbounded_channel::<(Instant, BytesMut)>();
    let writer = tokio::spawn(write(tx, queue));
    let mut pending = BytesMut::with_capacity(16 * 1024);
    let mut last_release = Instant::now();
    // When the link has carried everything handed to it so far (a bandwidth limit).
    let mut link_free = Instant::now();
    loop {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        match rx.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let now = Instant::now();
        let window = windows.now();
        let chunk = match window {
            Some((i, f, _)) if upstream && f.drop > 0.0 => {
                pending.extend_from_slice(&buf);
                drop_qos0(&mut pending, f.drop, &windows.stats.dropped[i])
            }
            _ if !pending.is_empty() => {
                pending.extend_from_slice(&buf);
                whole_packets(&mut pending)
            }
            _ => buf,
        };
        if chunk.is_empty() {
            continue;
        }
        let release = match window {
            Some((_, f, end)) if f.blackhole => end,
            Some((_, f, _)) => {
                let jitter = f.jitter.as_secs_f64();
                let shift = rand::rng().random_range(-jitter..=jitter);
                let delayed =
                    now + Duration::from_secs_f64((f.delay.as_secs_f64() + shift).max(0.0));
                match f.bandwidth_bytes_per_s {
                    Some(rate) => {
                        link_free = serialized(link_free.max(now), chunk.len(), rate);
                        delayed.max(link_free)
                    }
                    None => delayed,
                }
            }
            None => now,
        };
        // Order is kept: nothing overtakes what was read before it.
        last_release = last_release.max(release);
        if out.send((last_release, chunk)).is_err() {
            break;
        }
    }
    drop(out);
    let _ = writer.await;
}

/// When a link of `rate` bytes per second, free from `from`, has carried `len` more bytes.
fn serialized(from: Instant, len: usize, rate: f64) -> Instant {
    from + Duration::from_secs_f64(len as f64 / rate)
}

async fn write(mut tx: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<(Instant, BytesMut)>) {
    while let Some((at, chunk)) = queue.recv().await {
        sleep_until(at).await;
        if tx.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = tx.shutdown().await;
}

/// The whole MQTT packets at the front of `buf` (a packet split over reads waits for its rest).
fn whole_packets(buf: &mut BytesMut) -> BytesMut {
    let mut len = 0;
    while let Some(n) = packet_len(&buf[len..]) {
        len += n;
    }
    buf.split_to(len)
}

/// The whole packets at the front of `buf`, less the QoS 0 PUBLISHes dropped (each with
/// probability `share`), counted in `dropped`.
fn drop_qos0(buf: &mut BytesMut, share: f64, dropped: &AtomicU64) -> BytesMut {
    let mut out = BytesMut::with_capacity(buf.len());
    let mut rng = rand::rng();
    while let Some(n) = packet_len(buf) {
        let first = buf[0];
        let qos0_publish = first >> 4 == 3 && (first >> 1) & 0b11 == 0;
        if qos0_publish && rng.random::<f64>() < share {
            dropped.fetch_add(1, Ordering::Relaxed);
            buf.advance(n);
        } else {
            out.extend_from_slice(&buf.split_to(n));
        }
    }
    out
}

/// The length of the MQTT packet at the front of `b` (fixed header and remaining length), if
/// it is all there.
fn packet_len(b: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let byte = *b.get(1 + i)?;
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let total = 1 + i + 1 + remaining;
            return (b.len() >= total).then_some(total);
        }
    }
    // A malformed length: pass the rest on as it is; the broker will say what it thinks.
    Some(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bandwidth_limit_spaces_chunks_by_their_size() {
        // 8 kB/s: 1,000 bytes take 125 ms, and a second chunk queues behind the first.
        let t0 = Instant::now();
        let first = serialized(t0, 1_000, 8_000.0);
        assert_eq!(first - t0, Duration::from_millis(125));
        let second = serialized(first.max(t0), 2_000, 8_000.0);
        assert_eq!(second - t0, Duration::from_millis(375));
    }

    fn publish(qos: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x30 | (qos << 1), body.len() as u8];
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn qos0_publishes_are_dropped_whole_and_counted_and_the_rest_passes() {
        let mut stream = Vec::new();
        for _ in 0..10 {
            stream.extend(publish(0, b"abc"));
            stream.extend(publish(1, b"\x00\x01t\x00\x07xyz"));
        }
        let dropped = AtomicU64::new(0);
        // Split in the middle of a packet: the tail waits for its rest.
        let mut buf = BytesMut::from(&stream[..stream.len() - 2]);
        let out = drop_qos0(&mut buf, 1.0, &dropped);
        assert_eq!(dropped.load(Ordering::Relaxed), 10);
        assert_eq!(buf.len(), publish(1, b"\x00\x01t\x00\x07xyz").len() - 2);
        assert_eq!(out.len(), 9 * publish(1, b"\x00\x01t\x00\x07xyz").len());
        let mut none = BytesMut::from(&stream[..]);
        assert_eq!(drop_qos0(&mut none, 0.0, &dropped).len(), stream.len());
    }
}

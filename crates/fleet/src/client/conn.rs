//! The connection driver: one state machine per client, polled by the task that owns it.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use fleetbench_scenario::Qos;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant, Sleep};
use tokio_util::io::{poll_read_buf, poll_write_buf};

use super::codec::{Flow, Incoming, OutPublish};
use super::net::{self, Stream};
use super::{Client, ClientError, ConnError, Ev, PublishProperties, Request, Settings};

/// Events handed out per poll before the socket is read again: bounds the work one poll
/// does when a broker sends faster than the owner takes events.
const MAX_QUEUED_EVENTS: usize = 256;
/// Bytes waiting to be written beyond which the owner is told to wait (`backlogged`).
const WRITE_HIGH: usize = 256 * 1024;
/// Spare room kept in the read buffer for each read.
const READ_CHUNK: usize = 2048;
/// Subscriptions take packet ids from here up, publishes below (up to the in-flight limit).
const SUB_PKID_BASE: u16 = 32_768;

type Connecting =
    Pin<Box<dyn Future<Output = Result<(Stream, BytesMut, Incoming), ConnError>> + Send>>;

enum State {
    Down,
    Connecting(Connecting),
    Up(Stream),
    /// DISCONNECT sent, or every handle gone: the connection is over for good.
    Finished,
}

/// A publish sent and not yet acknowledged.
struct Flight {
    publish: OutPublish,
    at: Instant,
    /// QoS 2: PUBREC came and PUBREL went; waiting for PUBCOMP.
    released: bool,
}

/// One client's connection to the broker. See the module docs of `client`.
pub struct Connection {
    s: Arc<Settings>,
    state: State,
    requests: Option<mpsc::UnboundedReceiver<Request>>,
    read: BytesMut,
    write: BytesMut,
    /// Publishes in flight, by packet id - 1 (grown as needed, up to the in-flight limit: a
    /// device at a message a second never holds more than a slot or two).
    flights: Vec<Option<Flight>>,
    max_flights: usize,
    in_flight: usize,
    /// In flight allowed on this connection (ours, or the broker's receive maximum if lower).
    limit: usize,
    next_slot: usize,
    /// Publishes waiting for the connection or for room in flight, in order.
    backlog: VecDeque<OutPublish>,
    /// Subscriptions asked for while the connection was down.
    subscriptions: Vec<Vec<(String, Qos)>>,
    next_sub_pkid: u16,
    events: VecDeque<Ev>,
    /// QoS 0 publishes in the write buffer, and those that have left.
    qos0_buffered: u64,
    qos0_left: u64,
    /// QoS 1 and 2 publishes acknowledged (PUBACK, PUBCOMP).
    acked: u64,
    ping: Option<Pin<Box<Sleep>>>,
    ping_outstanding: bool,
    disconnecting: bool,
}

impl Connection {
    pub fn new(s: Settings) -> Connection {
        let inflight = usize::from(s.inflight.max(1));
        Connection {
            s: Arc::new(s),
            state: State::Down,
            requests: None,
            read: BytesMut::new(),
            write: BytesMut::new(),
            flights: Vec::new(),
            max_flights: inflight,
            in_flight: 0,
            limit: inflight,
            next_slot: 0,
            backlog: VecDeque::new(),
            subscriptions: Vec::new(),
            next_sub_pkid: SUB_PKID_BASE,
            events: VecDeque::new(),
            qos0_buffered: 0,
            qos0_left: 0,
            acked: 0,
            ping: None,
            ping_outstanding: false,
            disconnecting: false,
        }
    }

    /// A handle for other tasks. Once handles exist, the connection finishes when the last one
    /// is dropped (`ConnError::RequestsDone`).
    pub fn handle(&mut self) -> Client {
        let (tx, rx) = mpsc::unbounded_channel();
        self.requests = Some(rx);
        Client {
            version: self.s.version,
            tx,
        }
    }

    /// The next event; connects (again) when the connection is down. Cancel-safe: everything
    /// in progress lives in the connection.
    pub async fn poll(&mut self) -> Result<Ev, ConnError> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Publish now if the connection is up and has room in flight, else as soon as it has.
    /// Never waits; see [`Connection::backlogged`].
    pub fn publish(
        &mut self,
        topic: &str,
        qos: Qos,
        retain: bool,
        payload: Bytes,
        properties: Option<PublishProperties>,
    ) -> Result<(), ClientError> {
        let p = OutPublish::new(self.s.version, topic, qos, retain, payload, properties);
        self.send_publish(p)
    }

    pub fn subscribe(&mut self, filters: Vec<(String, Qos)>) -> Result<(), ClientError> {
        if !matches!(self.state, State::Up(_)) {
            self.subscriptions.push(filters);
            return Ok(());
        }
        let pkid = self.next_sub_pkid;
        self.next_sub_pkid = self.next_sub_pkid.checked_add(1).unwrap_or(SUB_PKID_BASE);
        self.s.version.subscribe(pkid, &filters, &mut self.write)?;
        Ok(())
    }

    /// Say goodbye: DISCONNECT is written on the next poll, which then reports
    /// `Ev::SentDisconnect`. A connection that is down just finishes.
    pub fn disconnect(&mut self) {
        if matches!(self.state, State::Up(_)) {
            self.s.version.disconnect(&mut self.write);
            self.disconnecting = true;
        } else {
            self.state = State::Finished;
            self.events.push_back(Ev::SentDisconnect);
        }
    }

    /// Drop the network connection without a DISCONNECT. What was in flight is sent again
    /// after the next connect.
    pub fn clean(&mut self) {
        self.down();
    }

    /// Something handed to the connection has not been written to the socket yet: bytes in
    /// the write buffer, or publishes waiting behind the in-flight window.
    pub fn unwritten(&self) -> bool {
        !self.write.is_empty() || !self.backlog.is_empty()
    }

    /// So many publishes wait that the owner should stop publishing and poll until they
    /// have left (the publish path's back-pressure).
    pub fn backlogged(&self) -> bool {
        self.backlog.len() >= self.s.backlog || self.write.len() >= WRITE_HIGH
    }

    /// Publishes completed: QoS 0 ones that left, QoS 1 and 2 ones acknowledged.
    pub fn completed(&self) -> u64 {
        self.qos0_left + self.acked
    }

    /// Write a publish now if it may go (the connection up, nothing waiting before it, room in
    /// flight), else queue it behind what waits.
    fn send_publish(&mut self, p: OutPublish) -> Result<(), ClientError> {
        let up = matches!(self.state, State::Up(_));
        if !up || !self.backlog.is_empty() || (p.qos() > 0 && self.in_flight >= self.limit) {
            self.backlog.push_back(p);
            return Ok(());
        }
        self.write_now(p)
    }

    fn write_now(&mut self, p: OutPublish) -> Result<(), ClientError> {
        if p.qos() == 0 {
            p.write(&mut self.write, self.s.max_packet)?;
            self.qos0_buffered += 1;
            return Ok(());
        }
        self.fly(p)
    }

    /// Give a QoS 1 or 2 publish a packet id and write it.
    fn fly(&mut self, mut p: OutPublish) -> Result<(), ClientError> {
        let n = self.flights.len();
        let free = (0..n)
            .map(|i| (self.next_slot + i) % n)
            .find(|&i| self.flights[i].is_none());
        let slot = match free {
            Some(i) => i,
            None => {
                // Below the limit (checked by the caller), so there is room for one more.
                self.flights.push(None);
                n
            }
        };
        self.next_slot = (slot + 1) % self.max_flights;
        p.set(slot as u16 + 1, false);
        p.write(&mut self.write, self.s.max_packet)?;
        self.flights[slot] = Some(Flight {
            publish: p,
            at: Instant::now(),
            released: false,
        });
        self.in_flight += 1;
        Ok(())
    }

    /// Send what waits, as far as the connection and the in-flight limit allow.
    fn pump(&mut self) -> Result<(), ClientError> {
        while matches!(self.state, State::Up(_)) {
            let Some(front) = self.backlog.front() else {
                break;
            };
            if front.qos() > 0 && self.in_flight >= self.limit {
                break;
            }
            if let Some(p) = self.backlog.pop_front() {
                self.write_now(p)?;
            }
        }
        Ok(())
    }

    fn down(&mut self) {
        if !matches!(self.state, State::Finished) {
            self.state = State::Down;
        }
        self.read.clear();
        self.write.clear();
        self.qos0_buffered = 0;
        self.ping = None;
        self.ping_outstanding = false;
        self.disconnecting = false;
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Ev, ConnError>> {
        // Every event spends the task's cooperative budget: a busy connection (an observer
        // taking tens of thousands of deliveries a second) lets the other tasks of its worker
        // run, as tokio's own resources do.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        loop {
            if let Some(ev) = self.events.pop_front() {
                coop.made_progress();
                return Poll::Ready(Ok(ev));
            }
            if let Err(e) = self.take_requests(cx) {
                return Poll::Ready(Err(e));
            }
            if !self.events.is_empty() {
                continue;
            }
            match &mut self.state {
                State::Finished => return Poll::Ready(Err(ConnError::RequestsDone)),
                State::Down => {
                    let s = self.s.clone();
                    self.state = State::Connecting(Box::pin(establish(s)));
                }
                State::Connecting(f) => {
                    let result = ready!(f.as_mut().poll(cx));
                    match result.and_then(|(stream, read, ack)| self.connected(stream, read, ack)) {
                        Ok(()) => {}
                        Err(e) => {
                            self.down();
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                State::Up(_) => match self.poll_up(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => {
                        self.down();
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }

    /// Take what the handles asked for.
    fn take_requests(&mut self, cx: &mut Context<'_>) -> Result<(), ConnError> {
        let Some(rx) = &mut self.requests else {
            return Ok(());
        };
        let mut taken = Vec::new();
        let closed = loop {
            match rx.poll_recv(cx) {
                Poll::Ready(Some(r)) => taken.push(r),
                Poll::Ready(None) => break true,
                Poll::Pending => break false,
            }
        };
        for r in taken {
            match r {
                Request::Publish(p) => self.send_publish(p).map_err(client_to_conn)?,
                Request::Subscribe(f) => self.subscribe(f).map_err(client_to_conn)?,
                Request::Disconnect => self.disconnect(),
            }
        }
        if closed && !self.disconnecting && self.events.is_empty() {
            self.requests = None;
            self.state = State::Finished;
            return Err(ConnError::RequestsDone);
        }
        Ok(())
    }

    /// CONNACK: send again what was in flight, then what waited.
    fn connected(
        &mut self,
        stream: Stream,
        read: BytesMut,
        ack: Incoming,
    ) -> Result<(), ConnError> {
        let Incoming::ConnAck {
            refused,
            session_present,
            alias_max,
            receive_max,
        } = ack
        else {
            return Err(ConnError::Protocol(super::ProtocolError::NotConnAck));
        };
        if let Some(r) = refused {
            return Err(ConnError::Refused(r));
        }
        self.state = State::Up(stream);
        self.read = read;
        self.limit = self
            .max_flights
            .min(receive_max.map_or(usize::MAX, usize::from))
            .max(1);
        for f in self.flights.iter_mut().flatten() {
            if f.released {
                // QoS 2 after PUBREC: only PUBREL is owed.
                self.s
                    .version
                    .ack(Flow::Rel, pkid_of(&f.publish), &mut self.write);
            } else {
                let pkid = pkid_of(&f.publish);
                f.publish.set(pkid, true);
                f.publish.write(&mut self.write, self.s.max_packet)?;
            }
            f.at = Instant::now();
        }
        for filters in std::mem::take(&mut self.subscriptions) {
            self.subscribe(filters).map_err(client_to_conn)?;
        }
        self.pump().map_err(client_to_conn)?;
        if !self.s.keep_alive.is_zero() {
            self.ping = Some(Box::pin(sleep(self.s.keep_alive)));
        }
        self.events.push_back(Ev::ConnAck {
            session_present,
            alias_max,
        });
        Ok(())
    }

    /// One turn of a connection that is up: read and parse, keep alive, write. Ready when
    /// there are events to hand out.
    fn poll_up(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnError>> {
        self.poll_read(cx)?;
        self.poll_keep_alive(cx)?;
        self.poll_write(cx)?;
        if self.events.is_empty() && matches!(self.state, State::Up(_)) {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Result<(), ConnError> {
        loop {
            while let Some(packet) = self.s.version.read(&mut self.read, self.s.max_packet)? {
                self.incoming(packet)?;
            }
            if self.events.len() >= MAX_QUEUED_EVENTS {
                return Ok(());
            }
            let State::Up(stream) = &mut self.state else {
                return Ok(());
            };
            if self.read.capacity() - self.read.len() < READ_CHUNK / 2 {
                self.read.reserve(READ_CHUNK);
            }
            match poll_read_buf(Pin::new(stream), cx, &mut self.read) {
                Poll::Ready(Ok(0)) => return Err(ConnError::Closed),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => return Ok(()),
            }
        }
    }

    fn incoming(&mut self, packet: Incoming) -> Result<(), ConnError> {
        let v = self.s.version;
        match packet {
            Incoming::Publish { pkid, msg } => {
                match msg.qos {
                    1 => v.ack(Flow::Ack, pkid, &mut self.write),
                    2 => v.ack(Flow::Rec, pkid, &mut self.write),
                    _ => {}
                }
                self.events.push_back(Ev::Publish(msg));
            }
            Incoming::PubAck(pkid) | Incoming::PubComp(pkid) => self.complete(pkid)?,
            Incoming::PubRec(pkid) => {
                if let Some(f) = self.flight(pkid) {
                    f.released = true;
                    v.ack(Flow::Rel, pkid, &mut self.write);
                }
            }
            Incoming::PubRel(pkid) => v.ack(Flow::Comp, pkid, &mut self.write),
            Incoming::SubAck(codes) => self.events.push_back(Ev::SubAck(codes)),
            Incoming::PingResp => self.ping_outstanding = false,
            Incoming::Disconnect(reason) => return Err(ConnError::ServerDisconnect(reason)),
            Incoming::ConnAck { .. } | Incoming::Other => {}
        }
        Ok(())
    }

    fn flight(&mut self, pkid: u16) -> Option<&mut Flight> {
        let i = usize::from(pkid).checked_sub(1)?;
        self.flights.get_mut(i)?.as_mut()
    }

    /// PUBACK or PUBCOMP: the flow is over, its packet id free.
    fn complete(&mut self, pkid: u16) -> Result<(), ConnError> {
        let Some(i) = usize::from(pkid).checked_sub(1) else {
            return Ok(());
        };
        if let Some(f) = self.flights.get_mut(i).and_then(Option::take) {
            self.in_flight -= 1;
            self.acked += 1;
            self.events.push_back(Ev::Acked(f.at.elapsed()));
            self.pump().map_err(client_to_conn)?;
        }
        Ok(())
    }

    /// A PINGREQ every keep-alive; a PINGRESP still missing at the next one ends the
    /// connection (a broker or network that stopped answering).
    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Result<(), ConnError> {
        let Some(ping) = &mut self.ping else {
            return Ok(());
        };
        if ping.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        if self.ping_outstanding {
            return Err(ConnError::Timeout(
                "no PINGRESP within the keep-alive interval",
            ));
        }
        self.ping_outstanding = true;
        self.s.version.ping(&mut self.write);
        ping.as_mut().reset(Instant::now() + self.s.keep_alive);
        // Registers the timer again.
        let _ = ping.as_mut().poll(cx);
        Ok(())
    }

    /// Write what is buffered until it has all left or the socket is full.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), ConnError> {
        let State::Up(stream) = &mut self.state else {
            return Ok(());
        };
        if self.write.is_empty() {
            return Ok(());
        }
        while !self.write.is_empty() {
            match poll_write_buf(Pin::new(&mut *stream), cx, &mut self.write) {
                Poll::Ready(Ok(0)) => return Err(ConnError::Closed),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => return Ok(()),
            }
        }
        match Pin::new(&mut *stream).poll_flush(cx) {
            Poll::Ready(Err(e)) => return Err(e.into()),
            Poll::Ready(Ok(())) | Poll::Pending => {}
        }
        self.qos0_left += std::mem::take(&mut self.qos0_buffered);
        if self.disconnecting {
            let _ = Pin::new(&mut *stream).poll_shutdown(cx);
            self.down();
            self.state = State::Finished;
            self.events.push_back(Ev::SentDisconnect);
        }
        Ok(())
    }
}

fn pkid_of(p: &OutPublish) -> u16 {
    match p {
        OutPublish::V4(p) => p.pkid,
        OutPublish::V5(p) => p.pkid,
    }
}

fn client_to_conn(e: ClientError) -> ConnError {
    match e {
        ClientError::Protocol(p) => ConnError::Protocol(p),
        ClientError::Closed => ConnError::RequestsDone,
    }
}

/// Open the stream, send CONNECT and read CONNACK, all within the connect timeout. Returns the
/// stream, whatever arrived after CONNACK, and CONNACK.
async fn establish(s: Arc<Settings>) -> Result<(Stream, BytesMut, Incoming), ConnError> {
    let work = async {
        let mut stream = net::open(&s.transport, &s.host, s.port).await?;
        let mut out = BytesMut::new();
        s.version.connect(&s, &mut out)?;
        stream.write_all(&out).await?;
        stream.flush().await?;
        let mut read = BytesMut::with_capacity(READ_CHUNK);
        loop {
            if let Some(packet) = s.version.read(&mut read, s.max_packet)? {
                return Ok((stream, read, packet));
            }
            let n = read_some(&mut stream, &mut read).await?;
            if n == 0 {
                return Err(ConnError::Closed);
            }
        }
    };
    match tokio::time::timeout(s.connect_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ConnError::Timeout("no CONNACK within the connect timeout")),
    }
}

async fn read_some<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    poll_fn(|cx| poll_read_buf(Pin::new(&mut *r), cx, buf)).await
}

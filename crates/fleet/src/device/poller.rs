//! What a device does with its connection between sends: it waits for its next due time while
//! driving the connection, measures CONNACK and PUBACK/PUBCOMP latency, publishes its status
//! on every connect, subscribes to its command topic and answers each command, and reconnects
//! with the group's backoff.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use fleetbench_scenario::{CommandTopics, Qos};
use tokio::time::{sleep_until, Instant};

use fleetbench_metrics::flush::Down;

use super::Device;
use crate::client::{ClientError, ConnError, Ev};
use crate::errors;

/// How a device waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// For a message's due time, on the precise timer, until the run ends.
    Schedule,
    /// Until a time, on tokio's timer, until the run ends.
    Plain,
    /// As `Plain`, and back after every event of the connection.
    Event,
    /// As `Event`, and back when the device first connects.
    Connect,
    /// As `Event`, whether or not the run has ended (the last flows of an interrupted run).
    Finish,
}

/// Why a device stopped waiting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The time waited for came, or (`How::Event`, `How::Connect`, `How::Finish`) something
    /// happened on the connection.
    Due,
    /// The run ended (the user's stop, or the broker gone), or the device gave up.
    Ended,
}

impl Device<'_> {
    /// Drive the connection until `at` (see [`How`]). The timer and the run's end are set up
    /// once per wait; the loop only polls the connection (or sits out a backoff).
    pub(crate) async fn wait(&mut self, at: Instant, how: How) -> Wait {
        let ctx = self.ctx;
        let timer = async {
            if how == How::Schedule {
                ctx.timer.sleep_until(at.into_std()).await;
            } else {
                sleep_until(at).await;
            }
        };
        let end = ctx.end.cancelled();
        tokio::pin!(timer, end);
        let watch_end = how != How::Finish;
        loop {
            if self.gave_up || (watch_end && ctx.end.is_cancelled()) {
                return Wait::Ended;
            }
            // A fault's cut still to come: due now, or one more thing to wake for (the branch
            // is off, and nothing is set up, for a device without one).
            let cut_at = self.next_cut();
            if cut_at.is_some_and(|c| Instant::now() >= c) {
                self.cut();
                continue;
            }
            let cut = async {
                if let Some(c) = cut_at {
                    sleep_until(c).await;
                }
            };
            if let Some(retry_at) = self.retry_at {
                // Backing off: nothing happens on the connection until the next attempt.
                tokio::select! {
                    biased;
                    _ = &mut end, if watch_end => return Wait::Ended,
                    _ = &mut timer => return Wait::Due,
                    _ = cut, if cut_at.is_some() => {}
                    _ = sleep_until(retry_at) => {
                        self.retry_at = None;
                        self.attempt_start = Instant::now();
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = &mut end, if watch_end => return Wait::Ended,
                _ = &mut timer => return Wait::Due,
                _ = cut, if cut_at.is_some() => {}
                r = self.conn.poll() => {
                    if self.handle(r, how) {
                        return Wait::Due;
                    }
                }
            }
        }
    }

    /// Take one result of the connection; true when the wait should end there.
    fn handle(&mut self, r: Result<Ev, ConnError>, how: How) -> bool {
        let first = self.connected_at.is_none();
        self.event(r);
        match how {
            How::Event | How::Finish => true,
            How::Connect => first && self.connected_at.is_some(),
            _ => false,
        }
    }

    /// When the next fault cuts the connection, if one is still to come.
    fn next_cut(&self) -> Option<Instant> {
        (self.spec.cuts.get(self.cuts_done)).map(|c| self.w.start + *c)
    }

    /// A fault cuts the connection now, without a DISCONNECT, like a lost network: the device
    /// reconnects by its group's backoff. A cut while the connection is down changes nothing.
    fn cut(&mut self) {
        let due = self.spec.cuts.get(self.cuts_done).copied();
        self.cuts_done += 1;
        if !self.connected {
            return;
        }
        // The broker owes the device's last will for each cut of a live connection.
        self.cuts_made += 1;
        let now = Instant::now();
        self.cut_pending = due.map(|at| (at, now));
        self.conn.clean();
        self.ctx.listening[self.pos as usize].store(false, Ordering::Relaxed);
        self.connected = false;
        self.flush.connected = Some(false);
        self.send_flush(now);
        self.attempts = 1;
        let draw = rand::Rng::random::<f64>(&mut rand::rng());
        self.retry_at = Some(now + self.spec.reconnect.wait(1, draw));
    }

    /// One event of the connection, or its failure.
    pub(crate) fn event(&mut self, r: Result<Ev, ConnError>) {
        match r {
            Ok(Ev::ConnAck { alias_max, .. }) => self.connected(alias_max),
            Ok(Ev::SubAck(_)) => {
                self.ctx.listening[self.pos as usize].store(true, Ordering::Relaxed)
            }
            Ok(Ev::Publish(m)) => self.command(&m.topic, &m.payload),
            Ok(Ev::Acked(after)) => {
                let us = after.as_micros().min(u128::from(u32::MAX)) as u32;
                self.flush.ack_us.push(us);
                self.flush_if_due(Instant::now());
            }
            Ok(Ev::SentDisconnect) => self.gave_up = true,
            Err(e) if e.is_requests_done() => self.gave_up = true,
            Err(e) => self.lost(&e),
        }
    }

    /// CONNACK: connect latency, the status published, the command topic subscribed.
    fn connected(&mut self, alias_max: u16) {
        let spec = self.spec;
        let now = Instant::now();
        // Aliases last one connection.
        self.alias_max = alias_max;
        self.alias_set = false;
        self.flush.connect_us = Some(now.duration_since(self.attempt_start).as_micros() as u64);
        self.flush.connected = Some(true);
        self.connected = true;
        self.attempts = 0;
        let down = (self.cut_pending.take().map(|d| (d, true)))
            .or_else(|| self.lost_since.take().map(|d| (d, false)));
        if let Some(((at, since), planned)) = down {
            self.flush.downs.push(Down {
                at,
                back_after: Some(now.duration_since(since)),
                planned,
            });
        }
        self.connected_at.get_or_insert(now);
        if let Some(s) = &spec.status {
            let payload = Bytes::from(s.payload.clone().into_bytes());
            if let Err(e) = self.publish_extra(&s.topic, s.qos, s.retain, payload) {
                report(self, fleetbench_metrics::ErrorKind::Status, &s.topic, e);
            }
        }
        if let Some(c) = &spec.commands {
            // A clean session: the subscription is renewed on every connect.
            if let Err(e) = self.conn.subscribe(vec![(c.topic.clone(), c.qos)]) {
                let who = &spec.client_id;
                errors::report_error(
                    &self.ctx.flush,
                    fleetbench_metrics::ErrorKind::Subscribe,
                    format_args!("{who}: {e}"),
                );
            }
        }
        // Report the connection at once: the monitor counts connected devices.
        self.send_flush(now);
    }

    /// A status or a reply: it completes like data and is counted apart.
    fn publish_extra(
        &mut self,
        topic: &str,
        qos: Qos,
        retain: bool,
        payload: Bytes,
    ) -> Result<(), ClientError> {
        self.conn.publish(topic, qos, retain, payload, None)?;
        self.extras += 1;
        Ok(())
    }

    /// A message on the command topic: the answer carries the command's own bytes back, so
    /// that its header times the round trip.
    fn command(&mut self, topic: &[u8], payload: &Bytes) {
        let command = |c: &&CommandTopics| topic == c.topic.as_bytes();
        if let Some(c) = self.spec.commands.as_ref().filter(command) {
            if let Err(e) = self.publish_extra(&c.reply, c.qos, false, payload.clone()) {
                report(self, fleetbench_metrics::ErrorKind::Reply, &c.reply, e);
            }
        }
    }

    /// The connection failed: report it and back off before the next attempt; give up when
    /// the run ended or the flows' deadline passed.
    fn lost(&mut self, e: &ConnError) {
        let ctx = self.ctx;
        ctx.listening[self.pos as usize].store(false, Ordering::Relaxed);
        if ctx.end.is_cancelled() || Instant::now() >= self.w.finish_deadline {
            self.gave_up = true;
        }
        if self.connected {
            self.connected = false;
            let now = Instant::now();
            self.lost_since = Some((now.saturating_duration_since(self.w.start), now));
            // At once: the live view and the broker watch count connected devices.
            self.flush.connected = Some(false);
            self.send_flush(Instant::now());
        }
        if self.gave_up {
            return;
        }
        self.attempts += 1;
        let spec = self.spec;
        let wait = errors::back_off(
            &ctx.flush,
            &spec.client_id,
            e,
            &spec.reconnect,
            self.attempts,
        );
        self.retry_at = Some(Instant::now() + wait);
    }

    /// Say goodbye (DISCONNECT) and wait a little for it to leave.
    pub(crate) async fn goodbye(&mut self) {
        if self.connected {
            self.conn.disconnect();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while let Ok(ev) = self.conn.poll().await {
                    if matches!(ev, Ev::SentDisconnect) {
                        break;
                    }
                }
            })
            .await;
        }
        if std::mem::take(&mut self.connected) {
            self.flush.connected = Some(false);
            self.flush.left = true;
        }
        self.send_flush(Instant::now());
    }
}

fn report(d: &Device, kind: fleetbench_metrics::ErrorKind, topic: &str, e: ClientError) {
    errors::report_error(&d.ctx.flush, kind, format_args!("on {topic}: {e}"));
}

//! The writer thread of a cluster node: the loop's publishes, one
//! pipeline of `EVAL`s per turn, and the node's presence hash.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use log::{info, warn};

use super::{
    fields_of, redis_error, Conn, Job, Keys, Shared, DOWN, LOG_MAXLEN, PRESENCE_TTL_SECS,
    PUBLISH_SCRIPT, REPLY_TIMEOUT, RETRY_EVERY,
};
use crate::log::{Draft, Settled};
use crate::redis_url::RedisUrl;
use crate::resp::{self, Reply, StreamId};

pub(super) struct Writer {
    pub(super) url: RedisUrl,
    pub(super) keys: Keys,
    pub(super) shared: Arc<Shared>,
}

impl Writer {
    pub(super) fn run(self, jobs: Receiver<Job>) {
        let mut conn: Option<Conn> = None;
        let mut generation = 0;
        let mut next_try = Instant::now();
        loop {
            let latest = self.shared.generation.load(Ordering::SeqCst);
            if conn.is_some() && generation != latest {
                // The reader lost Redis and found it again since this
                // connection was made: it may lead nowhere now.
                conn = None;
                next_try = Instant::now();
            }
            if conn.is_none() && Instant::now() >= next_try {
                match Conn::open(&self.url, REPLY_TIMEOUT, self.shared.limits) {
                    Ok(c) => {
                        info!("redis: connected (writer)");
                        conn = Some(c);
                        generation = latest;
                        self.shared.set_up(true);
                    }
                    Err(e) => {
                        warn!("redis: cannot connect ({e}); retrying every {RETRY_EVERY:?}");
                        self.shared.set_up(false);
                        next_try = Instant::now() + RETRY_EVERY;
                    }
                }
            }
            let job = match jobs.recv_timeout(RETRY_EVERY) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let latest = self.shared.generation.load(Ordering::SeqCst);
            if conn.is_some() && generation != latest {
                // As above, for a job that came while this thread waited.
                conn = Conn::open(&self.url, REPLY_TIMEOUT, self.shared.limits).ok();
                generation = latest;
            }
            let result = match (&mut conn, &job) {
                (Some(c), Job::Publish(batch)) => self.publish(c, batch),
                (Some(c), Job::Presence(counts)) => self.presence(c, counts),
                (None, Job::Publish(batch)) => {
                    self.shared.push_all(refusals(batch));
                    Err(io::Error::other("not connected"))
                }
                (None, Job::Presence(_)) => Err(io::Error::other("not connected")),
            };
            if let Err(e) = result {
                if conn.is_some() {
                    warn!("redis: connection lost ({e}); publishes are refused until it is back");
                }
                conn = None;
                self.shared.set_up(false);
                // Publishes queued behind the one that failed are answered
                // now, not after a reconnect that may take as long again.
                while let Ok(job) = jobs.try_recv() {
                    if let Job::Publish(batch) = job {
                        self.shared.push_all(refusals(&batch));
                    }
                }
                next_try = Instant::now();
            }
        }
        // The node stops: its streams leave the cluster's counts at once.
        if let Some(c) = &mut conn {
            let _ = c.call(&[b"DEL", &self.keys.presence()]);
        }
    }

    /// One pipeline for the turn's publishes, one reply each.
    fn publish(&self, conn: &mut Conn, batch: &[(u64, Draft)]) -> io::Result<()> {
        let floor = *self.shared.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(batch.len() * (PUBLISH_SCRIPT.len() + 256));
        let (log, last, rooms, dropped) = (
            self.keys.key("log"),
            self.keys.key("last"),
            self.keys.key("rooms"),
            self.keys.key("dropped"),
        );
        let (maxlen, history) = (LOG_MAXLEN.to_string(), self.keys.history.to_string());
        let (floor_ms, floor_seq) = (floor.ms.to_string(), floor.seq.to_string());
        for (_, draft) in batch {
            let fields = fields_of(draft);
            let room_key = self.keys.room(&draft.room);
            let mut args: Vec<&[u8]> = vec![
                b"EVAL",
                PUBLISH_SCRIPT.as_bytes(),
                b"5",
                &log,
                &room_key,
                &last,
                &rooms,
                &dropped,
                maxlen.as_bytes(),
                history.as_bytes(),
                draft.room.as_bytes(),
                floor_ms.as_bytes(),
                floor_seq.as_bytes(),
            ];
            for (name, value) in &fields {
                args.push(name);
                args.push(value);
            }
            resp::encode_command(&args, &mut out);
        }
        // Every ticket gets exactly one verdict, even when the connection
        // fails halfway: what Redis answered stands, the rest is refused.
        let mut verdicts = Vec::with_capacity(batch.len());
        let result = self.read_verdicts(conn, &out, batch, &mut verdicts);
        let answered = verdicts.len();
        verdicts.extend(refusals(&batch[answered..]));
        self.shared.push_all(verdicts);
        result
    }

    fn read_verdicts(
        &self,
        conn: &mut Conn,
        out: &[u8],
        batch: &[(u64, Draft)],
        verdicts: &mut Vec<Settled>,
    ) -> io::Result<()> {
        conn.send(out)?;
        for (ticket, _) in batch {
            let settled = match conn.reply()? {
                Reply::Bulk(Some(id)) => match StreamId::parse(&id).and_then(StreamId::event_id) {
                    Ok(id) => Settled::Accepted {
                        ticket: *ticket,
                        id,
                    },
                    Err(e) => {
                        warn!("redis: publish got an unusable id: {e}");
                        Settled::Refused {
                            ticket: *ticket,
                            reason: DOWN,
                        }
                    }
                },
                other => {
                    warn!("redis: publish refused: {other:?}");
                    Settled::Refused {
                        ticket: *ticket,
                        reason: DOWN,
                    }
                }
            };
            verdicts.push(settled);
        }
        Ok(())
    }

    /// Replaces the node's presence hash, which expires unless refreshed.
    fn presence(&self, conn: &mut Conn, counts: &[(String, usize, usize)]) -> io::Result<()> {
        let key = self.keys.presence();
        let mut out = Vec::new();
        resp::encode_command(&[b"DEL", &key], &mut out);
        let mut replies = 1;
        if !counts.is_empty() {
            let values: Vec<(String, String)> = counts
                .iter()
                .map(|(room, clients, agents)| (room.clone(), format!("{clients} {agents}")))
                .collect();
            let mut args: Vec<&[u8]> = vec![b"HSET", &key];
            for (room, value) in &values {
                args.push(room.as_bytes());
                args.push(value.as_bytes());
            }
            resp::encode_command(&args, &mut out);
            let ttl = PRESENCE_TTL_SECS.to_string();
            resp::encode_command(&[b"EXPIRE", &key, ttl.as_bytes()], &mut out);
            replies += 2;
        }
        conn.send(&out)?;
        for _ in 0..replies {
            if let reply @ Reply::Error(_) = conn.reply()? {
                return Err(redis_error("presence", &reply));
            }
        }
        Ok(())
    }
}

/// A refusal for each publish of `batch` (Redis cannot be reached).
fn refusals(batch: &[(u64, Draft)]) -> Vec<Settled> {
    batch
        .iter()
        .map(|(ticket, _)| Settled::Refused {
            ticket: *ticket,
            reason: DOWN,
        })
        .collect()
}

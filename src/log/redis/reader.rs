//! The reader thread of a cluster node: follows the shared log with
//! `XREAD BLOCK`, sends the loop every event in the log's order, a snapshot
//! of the histories when the node starts or must start over, and the other
//! nodes' presence.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::warn;

use super::{
    event_of, redis_error, Conn, Keys, Shared, BLOCK_MS, IO_TIMEOUT, RAISE_LAST_SCRIPT, RETRY_EVERY,
};
use crate::log::Settled;
use crate::redis_url::RedisUrl;
use crate::resp::{self, Reply, StreamId};

pub(super) struct Reader {
    pub(super) url: RedisUrl,
    pub(super) keys: Keys,
    pub(super) shared: Arc<Shared>,
    /// The epoch of the Redis data this node has read, once known.
    pub(super) epoch: Option<Vec<u8>>,
    /// Other nodes' streams per room, as last reported to the loop.
    pub(super) remote: HashMap<String, (usize, usize)>,
}

impl Reader {
    pub(super) fn run(mut self) {
        let read_timeout = Duration::from_millis(BLOCK_MS) + IO_TIMEOUT;
        while !self.shared.stop.load(Ordering::SeqCst) {
            let mut conn = match Conn::open(&self.url, read_timeout, self.shared.limits) {
                Ok(conn) => conn,
                Err(_) => {
                    std::thread::sleep(RETRY_EVERY);
                    continue;
                }
            };
            if let Err(e) = self.follow(&mut conn) {
                self.shared.reader_up.store(false, Ordering::SeqCst);
                (self.shared.wake)();
                if !self.shared.stop.load(Ordering::SeqCst) {
                    warn!("redis: reader lost its connection ({e}); reconnecting");
                }
                std::thread::sleep(RETRY_EVERY.min(Duration::from_millis(200)));
            }
        }
    }

    fn seen(&self) -> StreamId {
        *self.shared.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_seen(&self, id: StreamId) {
        let mut seen = self.shared.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen = (*seen).max(id);
    }

    /// Catches up (a snapshot when needed), then follows the log.
    fn follow(&mut self, conn: &mut Conn) -> io::Result<()> {
        let epoch_key = self.keys.key("epoch");
        let mut fresh = [0u8; 16];
        getrandom::fill(&mut fresh).map_err(|e| io::Error::other(e.to_string()))?;
        let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        conn.call(&[b"SET", &epoch_key, fresh.as_bytes(), b"NX"])?;
        let epoch = match conn.call(&[b"GET", &epoch_key])? {
            Reply::Bulk(Some(epoch)) => epoch,
            other => return Err(redis_error("GET epoch", &other)),
        };
        let log = self.keys.key("log");
        let seen = self.seen();
        let lost = match &self.epoch {
            // Redis lost its data since this node last read it: ids it
            // handed out may come again for other events.
            Some(known) if *known != epoch => true,
            Some(_) if seen > StreamId { ms: 0, seq: 0 } => {
                // Or it lost only its newest entries (a replica that lagged
                // took over, epoch and all): the log's last id is behind
                // what this node read. Raised back to it, no node hands
                // those ids out again.
                self.trimmed_past(conn, &log, seen)? || self.raised_last(conn, seen)?
            }
            _ => false,
        };
        if self.epoch.is_none() || lost {
            if lost {
                warn!("redis: the log no longer holds what this node last read; clients resync");
            }
            self.snapshot(conn, lost.then_some(seen))?;
        }
        self.epoch = Some(epoch);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.reader_up.store(true, Ordering::SeqCst);
        (self.shared.wake)();
        let mut last_presence = Instant::now() - Duration::from_secs(60);
        while !self.shared.stop.load(Ordering::SeqCst) {
            if last_presence.elapsed() >= Duration::from_millis(BLOCK_MS) {
                self.read_presence(conn)?;
                last_presence = Instant::now();
            }
            let from = self.seen().to_string();
            let mut out = Vec::new();
            resp::xread(
                Some(BLOCK_MS),
                Some(1000),
                &[(&log, from.as_bytes())],
                &mut out,
            );
            conn.send(&out)?;
            let streams = resp::parse_xread(conn.reply()?)
                .map_err(|e| io::Error::other(format!("XREAD: {e}")))?;
            // One lock and one wake-up for the whole reply, not per event.
            let mut batch = Vec::new();
            for (_, entries) in streams {
                if let Some(last) = entries.last() {
                    self.set_seen(last.id);
                }
                batch.extend(
                    entries
                        .iter()
                        .filter_map(event_of)
                        .map(|event| Settled::Committed {
                            ticket: None,
                            event,
                        }),
                );
            }
            self.shared.push_all(batch);
        }
        Ok(())
    }

    /// Whether entries after `seen` were trimmed from the log before this
    /// node could read them (it was away too long).
    fn trimmed_past(&self, conn: &mut Conn, log: &[u8], seen: StreamId) -> io::Result<bool> {
        let mut out = Vec::new();
        resp::xrange(log, b"-", b"+", Some(1), &mut out);
        conn.send(&out)?;
        let first = resp::parse_range(conn.reply()?)
            .map_err(|e| io::Error::other(format!("XRANGE: {e}")))?;
        Ok(first.first().is_some_and(|entry| entry.id > seen))
    }

    /// Sets `P:last` to `seen` if it is behind it (or gone); says whether
    /// it was, that is whether the log lost entries this node had read.
    fn raised_last(&self, conn: &mut Conn, seen: StreamId) -> io::Result<bool> {
        let seen = seen.to_string();
        match conn.call(&[
            b"EVAL",
            RAISE_LAST_SCRIPT.as_bytes(),
            b"1",
            &self.keys.key("last"),
            seen.as_bytes(),
        ])? {
            Reply::Integer(raised) => Ok(raised == 1),
            other => Err(redis_error("raising the last id", &other)),
        }
    }

    /// Every room's history as Redis holds it, for the loop to start from
    /// (or to start over from, with `lost` set to the newest id this node
    /// had seen: every room then reports a gap to clients resuming from it).
    fn snapshot(&mut self, conn: &mut Conn, lost: Option<StreamId>) -> io::Result<()> {
        // The newest id first: what the histories hold beyond it arrives
        // through XREAD from it, so nothing falls between the two.
        let last = match conn.call(&[b"GET", &self.keys.key("last")])? {
            Reply::Bulk(Some(id)) => StreamId::parse(&id).ok(),
            _ => None,
        };
        let rooms = match conn.call(&[b"SMEMBERS", &self.keys.key("rooms")])? {
            Reply::Array(Some(items)) => items
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Bulk(Some(name)) => String::from_utf8(name).ok(),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            other => return Err(redis_error("SMEMBERS", &other)),
        };
        let mut events = Vec::new();
        for room in &rooms {
            let mut out = Vec::new();
            let history = self.keys.history as u64;
            resp::xrevrange(
                &self.keys.room(room),
                b"+",
                b"-",
                Some(history.max(1)),
                &mut out,
            );
            conn.send(&out)?;
            let entries = resp::parse_range(conn.reply()?)
                .map_err(|e| io::Error::other(format!("XREVRANGE: {e}")))?;
            if self.keys.history > 0 {
                let upto = last.unwrap_or(StreamId { ms: 0, seq: 0 });
                events.extend(
                    entries
                        .iter()
                        .filter(|entry| entry.id <= upto)
                        .filter_map(event_of),
                );
            }
        }
        events.sort_by_key(|e| e.id);
        let mut dropped = Vec::new();
        if let Reply::Array(Some(flat)) = conn.call(&[b"HGETALL", &self.keys.key("dropped")])? {
            let mut flat = flat.into_iter();
            while let (Some(Reply::Bulk(Some(room))), Some(Reply::Bulk(Some(id)))) =
                (flat.next(), flat.next())
            {
                let id = StreamId::parse(&id).and_then(StreamId::event_id);
                if let (Ok(room), Ok(id)) = (String::from_utf8(room), id) {
                    dropped.push((room, id));
                }
            }
        }
        let mut last_id = 0;
        if let Some(last) = last {
            self.set_seen(last);
            last_id = last.event_id().unwrap_or(0);
        }
        let lost_up_to = lost.and_then(|id| id.event_id().ok());
        self.shared.push(Settled::Snapshot {
            events,
            dropped,
            last_id,
            lost_up_to,
        });
        Ok(())
    }

    /// Sums the other nodes' presence hashes and tells the loop when the
    /// sums changed.
    fn read_presence(&mut self, conn: &mut Conn) -> io::Result<()> {
        let pattern = format!("{}:presence:*", self.keys.prefix);
        let own = self.keys.presence();
        let mut keys = Vec::new();
        let mut cursor = b"0".to_vec();
        loop {
            let reply = conn.call(&[
                b"SCAN",
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"1000",
            ])?;
            let Reply::Array(Some(mut parts)) = reply else {
                return Err(redis_error("SCAN", &reply));
            };
            let (Some(Reply::Array(Some(found))), Some(Reply::Bulk(Some(next)))) =
                (parts.pop(), parts.pop())
            else {
                return Err(io::Error::other("SCAN: unexpected reply"));
            };
            keys.extend(found.into_iter().filter_map(|k| match k {
                Reply::Bulk(Some(key)) if key != own => Some(key),
                _ => None,
            }));
            if next == b"0" {
                break;
            }
            cursor = next;
        }
        let mut remote: HashMap<String, (usize, usize)> = HashMap::new();
        for key in keys {
            let Reply::Array(Some(flat)) = conn.call(&[b"HGETALL", &key])? else {
                continue;
            };
            let mut flat = flat.into_iter();
            while let (Some(Reply::Bulk(Some(room))), Some(Reply::Bulk(Some(value)))) =
                (flat.next(), flat.next())
            {
                let (Ok(room), Ok(value)) = (String::from_utf8(room), String::from_utf8(value))
                else {
                    continue;
                };
                let mut numbers = value.split(' ').map(str::parse::<usize>);
                if let (Some(Ok(clients)), Some(Ok(agents))) = (numbers.next(), numbers.next()) {
                    let sum = remote.entry(room).or_default();
                    sum.0 += clients;
                    sum.1 += agents;
                }
            }
        }
        if remote != self.remote {
            self.remote = remote.clone();
            self.shared
                .push(Settled::Presence(remote.into_iter().collect()));
        }
        Ok(())
    }
}

//! The event log in Redis (`--redis URL`): one Redis stream is the ordered
//! log of a whole cluster, so every node delivers the same events in the
//! same order with the same ids.
//!
//! Keys (prefix `P`, `--redis-prefix`):
//! - `P:log`: every event, trimmed to about [`LOG_MAXLEN`] entries; nodes
//!   follow it with `XREAD` and deliver only what they read there, their
//!   own publishes included, so the order is the stream's everywhere.
//! - `P:room:R`: the room's last `--history` events, with the same ids;
//!   `P:rooms` lists the rooms, `P:dropped` holds each room's highest id
//!   trimmed from its history (for `gap`).
//! - `P:last`: the newest id issued; `P:epoch`: a random value set once,
//!   so a Redis that lost its data (a failover, a restart without
//!   persistence) is noticed.
//! - `P:presence:NODE`: each node's open streams per room, expiring 10 s
//!   after the node stops refreshing it.
//!
//! One publish is one `EVAL` of [`PUBLISH_SCRIPT`], which picks the id
//! atomically (never lower than any id this node has seen, so ids stay
//! increasing even when Redis lost its tail) and writes the log, the
//! room's history and the marks together. A turn's publishes go out in one
//! pipeline: one round trip per turn.
//!
//! Two helper threads do the blocking I/O so the loop never waits on Redis:
//! the writer (publishes, presence) and the reader (`XREAD BLOCK`, history
//! snapshots, other nodes' presence). They talk to the loop through a
//! mutex-guarded inbox and wake it with the server's `mio::Waker`. The RESP
//! codec they use is pure ([`crate::resp`]).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::info;

use super::{Appended, Body, Draft, EventLog, Role, Settled};

mod reader;
mod writer;

use crate::hub::{Hub, Retained};
use crate::redis_url::RedisUrl;
use crate::resp::{self, Decoder, Limits, Reply, StreamEntry, StreamId};
use reader::Reader;
use writer::Writer;

/// About how many events `P:log` keeps: enough for a node that lost Redis
/// for a while to catch up from where it was.
pub const LOG_MAXLEN: u64 = 100_000;
/// How often a lost connection is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long one Redis call may take before the connection counts as lost.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the writer waits for Redis to answer a turn's publishes (or a
/// new connection's PING): a publisher waits that long at most to learn
/// that a Redis which still accepts connections has stopped answering.
/// Redis answers a pipeline in milliseconds; a second is a stalled server.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one `XREAD` blocks; also how often the reader refreshes presence.
const BLOCK_MS: u64 = 1000;
/// A node's presence key lives this long without a refresh.
const PRESENCE_TTL_SECS: u64 = 10;
/// Why a publish is refused while Redis cannot be reached.
const DOWN: &str = "the cluster's Redis cannot be reached; try again";

/// Sets KEYS[1] (the log's last id, `MS-SEQ`) to ARGV[1] if it is absent
/// or older; returns 1 if it did, 0 otherwise.
pub const RAISE_LAST_SCRIPT: &str = r#"
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local last = redis.call('GET', KEYS[1])
if last then
  local lms, lseq = parse(last)
  local ms, seq = parse(ARGV[1])
  if lms > ms or (lms == ms and lseq >= seq) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"#;

/// Picks the next id and writes one event. KEYS: log, room stream, last
/// id, room set, dropped marks. ARGV: log length, history, room, floor
/// (the newest id the node has seen, as MS and SEQ), then the fields.
pub const PUBLISH_SCRIPT: &str = r#"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fms, fseq = tonumber(ARGV[4]), tonumber(ARGV[5])
local last = redis.call('GET', KEYS[3])
if last then
  local dash = string.find(last, '-', 1, true)
  local lms, lseq = tonumber(string.sub(last, 1, dash - 1)), tonumber(string.sub(last, dash + 1))
  if lms > fms or (lms == fms and lseq > fseq) then fms, fseq = lms, lseq end
end
local seq = 0
if fms >= ms then ms = fms; seq = fseq + 1 end
if seq >= 1000 then ms = ms + 1; seq = 0 end
local id = string.format('%d-%d', ms, seq)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id, unpack(ARGV, 6))
local history = tonumber(ARGV[2])
if history > 0 then
  if redis.call('XLEN', KEYS[2]) >= history then
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
    if #oldest > 0 then redis.call('HSET', KEYS[5], ARGV[3], oldest[1][1]) end
  end
  redis.call('XADD', KEYS[2], 'MAXLEN', history, id, unpack(ARGV, 6))
else
  redis.call('HSET', KEYS[5], ARGV[3], id)
end
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('SET', KEYS[3], id)
return id
"#;

/// What the helper threads hand to the loop.
#[derive(Default)]
struct Inbox {
    settled: Vec<Settled>,
    /// The writer's connection is up (publishes are taken).
    up: bool,
}

/// What the loop and the helper threads share.
struct Shared {
    inbox: Mutex<Inbox>,
    wake: Box<dyn Fn() + Send + Sync>,
    stop: AtomicBool,
    /// The newest id the node has seen (the reader moves it), the floor of
    /// every id the node asks for.
    seen: Mutex<StreamId>,
    /// The reader follows the log (it notices a lost Redis first: its
    /// XREAD is always in flight).
    reader_up: AtomicBool,
    /// Counts the reader's reconnections: a writer connection older than
    /// the latest may lead to a Redis that went away, so it is replaced
    /// before it carries a publish.
    generation: AtomicU64,
    /// What a reply may hold: a stored event's body may be as long as
    /// `--max-body`, which can pass the decoder's default.
    limits: Limits,
}

impl Shared {
    fn push(&self, settled: Settled) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settled
            .push(settled);
        (self.wake)();
    }

    fn push_all(&self, settled: Vec<Settled>) {
        if settled.is_empty() {
            return;
        }
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settled
            .extend(settled);
        (self.wake)();
    }

    fn set_up(&self, up: bool) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        if inbox.up != up {
            inbox.up = up;
            drop(inbox);
            (self.wake)();
        }
    }
}

/// What the loop sends the writer.
enum Job {
    Publish(Vec<(u64, Draft)>),
    Presence(Vec<(String, usize, usize)>),
}

/// The [`EventLog`] of a cluster node; see the module docs.
pub struct RedisLog {
    shared: Arc<Shared>,
    jobs: Sender<Job>,
    /// Appended this turn, sent at [`EventLog::flush`].
    outgoing: Vec<(u64, Draft)>,
    /// Refused at once (Redis down), reported at the next `settled`.
    refused: Vec<Settled>,
    next_ticket: u64,
    /// The newest id seen, mirrored for `last_id`.
    last_id: u64,
    /// The loop has had the first snapshot of the histories.
    synced: bool,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog")
            .field("last_id", &self.last_id)
            .finish_non_exhaustive()
    }
}

/// Where the keys are, and what the node is.
#[derive(Clone)]
struct Keys {
    prefix: String,
    node: String,
    history: usize,
}

impl Keys {
    fn key(&self, name: &str) -> Vec<u8> {
        format!("{}:{name}", self.prefix).into_bytes()
    }

    fn room(&self, room: &str) -> Vec<u8> {
        format!("{}:room:{room}", self.prefix).into_bytes()
    }

    fn presence(&self) -> Vec<u8> {
        format!("{}:presence:{}", self.prefix, self.node).into_bytes()
    }
}

impl RedisLog {
    /// Starts the node's two Redis threads; `wake` wakes the loop. Nothing
    /// blocks here: while Redis cannot be reached the node serves streams
    /// and refuses publishes, and the threads keep trying.
    ///
    /// # Errors
    /// The threads cannot be started, or the OS has no randomness for the
    /// node's name.
    pub fn start(
        url: RedisUrl,
        prefix: &str,
        history: usize,
        max_body: usize,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> io::Result<RedisLog> {
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).map_err(|e| io::Error::other(e.to_string()))?;
        let keys = Keys {
            prefix: prefix.to_string(),
            node: name.iter().map(|b| format!("{b:02x}")).collect(),
            history,
        };
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox::default()),
            wake,
            stop: AtomicBool::new(false),
            seen: Mutex::new(StreamId { ms: 0, seq: 0 }),
            reader_up: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            limits: reply_limits(max_body),
        });
        let (jobs, inbox) = mpsc::channel();
        let writer = Writer {
            url: url.clone(),
            keys: keys.clone(),
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("ssehub-redis-writer".into())
            .spawn(move || writer.run(inbox))?;
        let reader = Reader {
            url,
            keys,
            shared: shared.clone(),
            epoch: None,
            remote: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("ssehub-redis-reader".into())
            .spawn(move || reader.run())?;
        info!("cluster node on redis (prefix '{prefix}')");
        Ok(RedisLog {
            shared,
            jobs,
            outgoing: Vec::new(),
            refused: Vec::new(),
            next_ticket: 0,
            last_id: 0,
            synced: false,
        })
    }

    /// Publishes are taken: the writer is connected and the loop has the
    /// histories (before the first snapshot a node knows no ids or rooms).
    fn up(&self) -> bool {
        self.synced
            && self.shared.reader_up.load(Ordering::SeqCst)
            && self
                .shared
                .inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .up
    }
}

impl Drop for RedisLog {
    fn drop(&mut self) {
        // The writer ends when the channel closes; the reader at its next
        // XREAD time-out.
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

impl EventLog for RedisLog {
    fn append(&mut self, draft: Draft) -> Appended {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        if self.up() {
            self.outgoing.push((ticket, draft));
        } else {
            self.refused.push(Settled::Refused {
                ticket,
                reason: DOWN,
            });
        }
        Appended { ticket, id: None }
    }

    fn flush(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.outgoing);
        if let Err(mpsc::SendError(Job::Publish(batch))) = self.jobs.send(Job::Publish(batch)) {
            for (ticket, _) in batch {
                self.refused.push(Settled::Refused {
                    ticket,
                    reason: DOWN,
                });
            }
        }
    }

    fn settled(&mut self, out: &mut Vec<Settled>) {
        out.append(&mut self.refused);
        let mut inbox = self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner());
        for settled in inbox.settled.drain(..) {
            match &settled {
                Settled::Committed { event, .. } => self.last_id = self.last_id.max(event.id),
                Settled::Snapshot { last_id, .. } => {
                    self.last_id = self.last_id.max(*last_id);
                    self.synced = true;
                }
                _ => {}
            }
            out.push(settled);
        }
    }

    fn has_pending(&self) -> bool {
        !self.outgoing.is_empty() || !self.refused.is_empty()
    }

    fn last_id(&self) -> u64 {
        self.last_id
    }

    fn load(&mut self, _hub: &mut Hub) {
        // The reader sends a snapshot of the histories once connected.
    }

    fn share_presence(&mut self, local: Vec<(String, usize, usize)>) {
        let _ = self.jobs.send(Job::Presence(local));
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn healthy(&self) -> Option<bool> {
        Some(self.up())
    }
}

// ----- connections -----------------------------------------------------------

/// What a node accepts in a reply: at least a stored body of `max_body`
/// bytes (the fields around it are small; 64 KiB covers them), or a node
/// would choke, again and again, on one event its own server accepted.
fn reply_limits(max_body: usize) -> Limits {
    Limits {
        max_bulk: Limits::DEFAULT.max_bulk.max(max_body + (64 << 10)),
        ..Limits::DEFAULT
    }
}

/// One blocking connection to Redis.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    decoder: Decoder,
}

impl Conn {
    fn open(url: &RedisUrl, read_timeout: Duration, limits: Limits) -> io::Result<Conn> {
        let addr = url
            .address()
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("redis host has no address"))?;
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(read_timeout))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
            decoder: Decoder::new(limits),
        };
        let mut hello = Vec::new();
        let commands = url.handshake(&mut hello);
        // A PING last: a bare TCP connect proves nothing (a load balancer
        // with no backend, a Redis at maxclients accept and then close).
        resp::encode_command(&[b"PING"], &mut hello);
        conn.send(&hello)?;
        for _ in 0..commands {
            if let Reply::Error(e) = conn.reply()? {
                return Err(io::Error::other(format!("redis refused the login: {e}")));
            }
        }
        match conn.reply()? {
            Reply::Simple(pong) if pong == "PONG" => Ok(conn),
            other => Err(redis_error("PING", &other)),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn reply(&mut self) -> io::Result<Reply> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.decoder.decode(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::other(format!("redis sent bad RESP: {e}"))),
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = Vec::new();
        resp::encode_command(args, &mut out);
        self.send(&out)?;
        self.reply()
    }
}

fn redis_error(context: &str, reply: &Reply) -> io::Error {
    io::Error::other(format!("{context}: unexpected reply {reply:?}"))
}

/// An event as stream fields.
fn fields_of(draft: &Draft) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut fields = vec![
        (b"room".to_vec(), draft.room.clone().into_bytes()),
        (b"time".to_vec(), draft.time.to_string().into_bytes()),
    ];
    match &draft.body {
        Body::Message { user, text, role } => {
            fields.push((b"user".to_vec(), user.clone().into_bytes()));
            fields.push((b"text".to_vec(), text.clone().into_bytes()));
            if let Some(role) = role {
                fields.push((b"role".to_vec(), role.as_str().as_bytes().to_vec()));
            }
        }
        Body::Event { name, data } => {
            fields.push((b"event".to_vec(), name.clone().into_bytes()));
            fields.push((b"data".to_vec(), data.clone().into_bytes()));
        }
    }
    fields
}

/// An entry back into the draft it was written from; `None` for one that
/// is not an ssehub event.
fn draft_of(entry: &StreamEntry) -> Option<Draft> {
    let field = |name: &[u8]| {
        entry
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let room = field(b"room")?;
    let time = field(b"time")?.parse().ok()?;
    if let (Some(user), Some(text)) = (field(b"user"), field(b"text")) {
        let role = match field(b"role") {
            Some("agent") => Some(Role::Agent),
            Some("customer") => Some(Role::Customer),
            _ => None,
        };
        return Some(Draft::message_as(room, user, text, role, time));
    }
    let (name, data) = (field(b"event")?, field(b"data")?);
    Some(Draft::event(room, name, data, time))
}

/// The event an entry holds, encoded with the id Redis gave it.
fn event_of(entry: &StreamEntry) -> Option<Retained> {
    let id = entry.id.event_id().ok()?;
    Some(draft_of(entry)?.encode(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as long as a raised `--max-body` is read back, not refused
    /// as a corrupt reply (the claim alone is enough for the decoder).
    #[test]
    fn replies_hold_a_body_as_long_as_max_body() {
        let max_body = 100 << 20;
        let head = format!("${max_body}\r\n");
        let too_long = resp::decode_with(head.as_bytes(), Limits::DEFAULT);
        assert!(too_long.is_err(), "the default refuses it: {too_long:?}");
        let taken = resp::decode_with(head.as_bytes(), reply_limits(max_body));
        assert!(matches!(taken, Ok(None)), "waits for the body: {taken:?}");
        assert_eq!(reply_limits(64 << 10), Limits::DEFAULT);
    }

    #[test]
    fn events_round_trip_through_stream_fields() {
        for draft in [
            Draft::message_as("v-1", "Sam", "on it\nsoon", Some(Role::Agent), 5),
            Draft::message_as("lobby", "ann", "hi", None, 6),
            Draft::event("sensors", "reading", "t=21\nh=40", 7),
        ] {
            let entry = StreamEntry {
                id: StreamId {
                    ms: 1_700_000_000_000,
                    seq: 3,
                },
                fields: fields_of(&draft),
            };
            assert_eq!(draft_of(&entry), Some(draft.clone()));
            let event = event_of(&entry).unwrap();
            assert_eq!(event.id, 1_700_000_000_000_003);
            assert_eq!(event.json, draft.encode(1_700_000_000_000_003).json);
        }
        let foreign = StreamEntry {
            id: StreamId { ms: 1, seq: 0 },
            fields: vec![(b"x".to_vec(), b"y".to_vec())],
        };
        assert_eq!(draft_of(&foreign), None, "not an ssehub event");
    }
}

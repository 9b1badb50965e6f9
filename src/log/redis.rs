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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::{Appended, Body, Draft, EventLog, Role, Settled};
use crate::hub::{Hub, Retained};
use crate::redis_url::RedisUrl;
use crate::resp::{self, Decoder, Limits, Reply, StreamEntry, StreamId};

/// About how many events `P:log` keeps: enough for a node that lost Redis
/// for a while to catch up from where it was.
pub const LOG_MAXLEN: u64 = 100_000;
/// How often a lost connection is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long one Redis call may take before the connection counts as lost.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one `XREAD` blocks; also how often the reader refreshes presence.
const BLOCK_MS: u64 = 1000;
/// A node's presence key lives this long without a refresh.
const PRESENCE_TTL_SECS: u64 = 10;
/// Why a publish is refused while Redis cannot be reached.
const DOWN: &str = "the cluster's Redis cannot be reached; try again";

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
        })
    }

    fn up(&self) -> bool {
        self.shared
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
                Settled::Snapshot { last_id, .. } => self.last_id = self.last_id.max(*last_id),
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

    fn healthy(&self) -> Option<bool> {
        Some(self.up())
    }
}

// ----- connections -----------------------------------------------------------

/// One blocking connection to Redis.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    decoder: Decoder,
}

impl Conn {
    fn open(url: &RedisUrl, read_timeout: Duration) -> io::Result<Conn> {
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
            decoder: Decoder::new(Limits::DEFAULT),
        };
        let mut hello = Vec::new();
        let commands = url.handshake(&mut hello);
        if commands > 0 {
            conn.send(&hello)?;
            for _ in 0..commands {
                if let Reply::Error(e) = conn.reply()? {
                    return Err(io::Error::other(format!("redis refused the login: {e}")));
                }
            }
        }
        Ok(conn)
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

// ----- the writer ----------------------------------------------------------

struct Writer {
    url: RedisUrl,
    keys: Keys,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(self, jobs: Receiver<Job>) {
        let mut conn: Option<Conn> = None;
        let mut next_try = Instant::now();
        loop {
            if conn.is_none() && Instant::now() >= next_try {
                match Conn::open(&self.url, IO_TIMEOUT) {
                    Ok(c) => {
                        info!("redis: connected (writer)");
                        conn = Some(c);
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
            let result = match (&mut conn, &job) {
                (Some(c), Job::Publish(batch)) => self.publish(c, batch),
                (Some(c), Job::Presence(counts)) => self.presence(c, counts),
                (None, _) => Err(io::Error::other("not connected")),
            };
            if let Err(e) = result {
                if let Job::Publish(batch) = job {
                    for (ticket, _) in batch {
                        self.shared.push(Settled::Refused {
                            ticket,
                            reason: DOWN,
                        });
                    }
                }
                if conn.is_some() {
                    warn!("redis: connection lost ({e}); publishes are refused until it is back");
                }
                conn = None;
                self.shared.set_up(false);
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
        conn.send(&out)?;
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
            self.shared.push(settled);
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

// ----- the reader ------------------------------------------------------------

struct Reader {
    url: RedisUrl,
    keys: Keys,
    shared: Arc<Shared>,
    /// The epoch of the Redis data this node has read, once known.
    epoch: Option<Vec<u8>>,
    /// Other nodes' streams per room, as last reported to the loop.
    remote: HashMap<String, (usize, usize)>,
}

impl Reader {
    fn run(mut self) {
        let read_timeout = Duration::from_millis(BLOCK_MS) + IO_TIMEOUT;
        while !self.shared.stop.load(Ordering::SeqCst) {
            let mut conn = match Conn::open(&self.url, read_timeout) {
                Ok(conn) => conn,
                Err(_) => {
                    std::thread::sleep(RETRY_EVERY);
                    continue;
                }
            };
            if let Err(e) = self.follow(&mut conn) {
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
            Some(_) => seen > StreamId { ms: 0, seq: 0 } && self.trimmed_past(conn, &log, seen)?,
            None => false,
        };
        if self.epoch.is_none() || lost {
            if lost {
                warn!("redis: the log no longer holds what this node last read; clients resync");
            }
            self.snapshot(conn, lost.then_some(seen))?;
        }
        self.epoch = Some(epoch);
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
            for (_, entries) in streams {
                for entry in entries {
                    self.set_seen(entry.id);
                    if let Some(event) = event_of(&entry) {
                        self.shared.push(Settled::Committed {
                            ticket: None,
                            event,
                        });
                    }
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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

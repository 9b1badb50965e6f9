//! The cluster (`--redis URL`): several nodes acting as one server through
//! one Redis, tested over real sockets against a real `redis-server` of
//! the test's own (`tests/support/redis.rs`; `make deps` installs it).
//!
//! Nodes are in-process servers (`TestServer::with`) or, where a process
//! must die, share a port or fail to start, the `ssehub` binary itself.
//! Every wait has a deadline; nothing sleeps to wait for something.
//!
//! What is checked, by the cluster's own promises:
//! - an event published on any node (`POST /messages`, `POST /publish`, a
//!   `Handle`) reaches every matching stream on every node, same id, same
//!   order; ids are the Redis stream ids `MS-SEQ` read as `MS × 1000 + SEQ`;
//! - a node started later serves the same history, `GET /messages`,
//!   `GET /rooms` and replay; a browser resumes on any node with no gap and
//!   no duplicate (a `gap` event where events were really dropped);
//! - `presence` and `GET /rooms` counts are cluster-wide within 2 s, and a
//!   killed node's streams leave them within 10 s;
//! - while Redis is down publishes are `503` at once, streams keep their
//!   heartbeats, `/healthz` says `"redis":"down"`; once it is back (or a
//!   node cut off from it gets it back) everything flows again, nothing
//!   missed, nothing twice;
//! - `--redis-prefix` isolates clusters sharing one Redis; `--reuse-port`
//!   lets processes share a port; `--journal` with `--redis` is exit 2.
mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use ssehub::redis_url::RedisUrl;
use ssehub::resp::{self, Reply};
use ssehub::Config;
use support::redis::{RedisProxy, RedisServer};
use support::*;

/// The cluster's promise for presence and room counts.
const CLUSTER_WIDE: Duration = Duration::from_secs(2);
/// [`CLUSTER_WIDE`] with a margin for a loaded test machine.
const CLUSTER_WIDE_DEADLINE: Duration = Duration::from_secs(3);
/// A dead node's streams leave the counts within 10 s; the deadline has a
/// margin.
const DEAD_NODE_DEADLINE: Duration = Duration::from_secs(15);
/// A node reconnects to Redis every ≤ 2 s; the deadline has a margin.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(4);
/// "At once": a publish while Redis is down is answered well within this.
const AT_ONCE: Duration = Duration::from_secs(1);
/// How long the binary may take to start or to exit.
const PROCESS_DEADLINE: Duration = Duration::from_secs(20);

// ----- nodes --------------------------------------------------------------

/// A key prefix no other test uses (tests may share a Redis).
fn unique_prefix(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("t-{tag}-{}-{n}", std::process::id())
}

/// An in-process node of the cluster on `redis` with key prefix `prefix`.
#[track_caller]
fn node(redis: RedisUrl, prefix: &str) -> TestServer {
    node_with(redis, prefix, |_| {})
}

/// A node whose config `tune` adjusts further.
#[track_caller]
fn node_with(redis: RedisUrl, prefix: &str, tune: impl FnOnce(&mut Config)) -> TestServer {
    let prefix = prefix.to_string();
    TestServer::with(move |c| {
        c.redis = Some(redis);
        c.redis_prefix = prefix;
        tune(c);
    })
}

/// The built binary (see [`ssehub_command`]), its log piped.
fn ssehub(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = ssehub_command(args, env);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A node that is an `ssehub` process, SIGKILLed (by its PID) when dropped.
struct BinaryNode {
    child: Child,
    addr: SocketAddr,
    /// Its stderr so far, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl BinaryNode {
    /// Starts the binary and waits for its "listening on http://" line.
    #[track_caller]
    fn start(args: &[&str]) -> BinaryNode {
        match BinaryNode::try_start(args) {
            Ok(node) => node,
            Err((code, stderr)) => {
                panic!("ssehub {args:?} did not start (exit {code:?}); stderr:\n{stderr}")
            }
        }
    }

    /// Starts the binary; `Err((exit code, stderr))` if it exits instead
    /// of listening.
    #[track_caller]
    fn try_start(args: &[&str]) -> Result<BinaryNode, (Option<i32>, String)> {
        let mut child = ssehub(args, &[]).spawn().expect("spawn ssehub");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("listening on http://") => {
                    let addr = address_in(&line);
                    return Ok(BinaryNode { child, addr, log });
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process is exiting.
                    let status = wait_exit(&mut child);
                    let stderr = log.lock().unwrap().join("\n");
                    return Err((status, stderr));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ssehub {args:?} printed no 'listening on' line within {PROCESS_DEADLINE:?}; stderr:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            }
        }
    }

    /// SIGKILL: the process dies with no chance to say goodbye.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn stderr(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for BinaryNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (with a deadline) for a child to exit; its exit code.
#[track_caller]
fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ssehub did not exit within {PROCESS_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary to its end; its exit code and stderr.
#[track_caller]
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = ssehub(args, env).spawn().expect("spawn ssehub");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let code = wait_exit(&mut child);
    (code, reader.join().unwrap())
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

// ----- HTTP against any node, by address ------------------------------------

#[track_caller]
fn request(addr: SocketAddr, raw: &str) -> Reply2 {
    let mut client = Client::connect(addr);
    client.send(raw.as_bytes());
    client.read_reply()
}

/// `support::Reply` under a name that does not clash with RESP's.
type Reply2 = support::Reply;

#[track_caller]
fn get(addr: SocketAddr, path: &str) -> Reply2 {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

#[track_caller]
fn post(addr: SocketAddr, path: &str, content_type: &str, body: &str) -> Reply2 {
    request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[track_caller]
fn post_message_reply(addr: SocketAddr, room: &str, user: &str, text: &str) -> Reply2 {
    let body = json!({"room": room, "user": user, "text": text}).to_string();
    post(addr, "/messages", "application/json", &body)
}

/// `POST /messages`; asserts 201 and returns the id.
#[track_caller]
fn post_message(addr: SocketAddr, room: &str, user: &str, text: &str) -> u64 {
    let reply = post_message_reply(addr, room, user, text);
    assert_eq!(reply.status, 201, "POST /messages: {}", reply.text());
    let json = reply.json();
    assert_eq!(json["room"], room, "{json}");
    json["id"].as_u64().expect("id")
}

#[track_caller]
fn publish_reply(addr: SocketAddr, room: &str, event: &str, body: &str) -> Reply2 {
    post(
        addr,
        &format!("/publish?room={room}&event={event}"),
        "text/plain",
        body,
    )
}

/// `POST /publish`; asserts 201 and returns the id.
#[track_caller]
fn publish(addr: SocketAddr, room: &str, event: &str, body: &str) -> u64 {
    let reply = publish_reply(addr, room, event, body);
    assert_eq!(reply.status, 201, "POST /publish: {}", reply.text());
    reply.json()["id"].as_u64().expect("id")
}

/// `/healthz` as JSON (asserting 200).
#[track_caller]
fn health(addr: SocketAddr) -> Value {
    let reply = get(addr, "/healthz");
    assert_eq!(reply.status, 200, "/healthz: {}", reply.text());
    reply.json()
}

/// Whether `/healthz` says `"redis": state`.
#[track_caller]
fn redis_is(addr: SocketAddr, state: &str) -> bool {
    health(addr)["redis"] == state
}

/// Waits until the node has Redis (`"redis":"up"`).
#[track_caller]
fn wait_redis_up(addr: SocketAddr) {
    assert!(
        eventually(RECONNECT_DEADLINE, || redis_is(addr, "up")),
        "{addr}: /healthz never said \"redis\":\"up\": {}",
        health(addr)
    );
}

/// `GET /rooms`'s entry for `room`, if listed.
#[track_caller]
fn room_entry(addr: SocketAddr, room: &str) -> Option<Value> {
    let reply = get(addr, "/rooms");
    assert_eq!(reply.status, 200, "/rooms: {}", reply.text());
    reply
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .find(|r| r["room"] == room)
        .cloned()
}

/// `(clients, agents)` of `room` by `GET /rooms` (0, 0 when unlisted).
#[track_caller]
fn counts(addr: SocketAddr, room: &str) -> (u64, u64) {
    room_entry(addr, room).map_or((0, 0), |r| {
        (
            r["clients"].as_u64().expect("clients"),
            r["agents"].as_u64().expect("agents"),
        )
    })
}

/// `GET /messages…` as JSON (asserting 200).
#[track_caller]
fn messages(addr: SocketAddr, query: &str) -> Value {
    let reply = get(addr, &format!("/messages?{query}"));
    assert_eq!(reply.status, 200, "/messages?{query}: {}", reply.text());
    reply.json()
}

fn item_ids(items: &Value) -> Vec<u64> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|i| i["id"].as_u64().expect("id"))
        .collect()
}

// ----- streams ----------------------------------------------------------------

/// Opens `GET path` on `addr` with extra header lines, reads `retry:` and
/// `hello`; the stream and the hello's data.
#[track_caller]
fn open(addr: SocketAddr, path: &str, headers: &str) -> (Stream, Value) {
    let mut client = Client::connect(addr);
    client.send(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{headers}\r\n")
            .as_bytes(),
    );
    let head = client.read_reply_for(true);
    let mut stream = Stream { client, head };
    let hello = stream.skip_preamble();
    (stream, hello)
}

/// An id-only block (`id: N` and a blank line).
fn is_id_only(block: &SseEvent) -> bool {
    block.id.is_some() && block.event.is_none() && !block.has_data
}

#[track_caller]
fn id_of(block: &SseEvent) -> u64 {
    match block.id.as_deref().map(str::parse) {
        Some(Ok(id)) => id,
        _ => panic!("no numeric id: {block:?}"),
    }
}

/// How long a stream may take to bring the next event that is not a
/// heartbeat (heartbeats alone never satisfy a wait, so a wait that skips
/// them needs a deadline of its own).
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// The next block that is not a heartbeat or `presence`, within
/// [`EVENT_WAIT`].
#[track_caller]
fn next_event(stream: &mut Stream) -> SseEvent {
    let deadline = Instant::now() + EVENT_WAIT;
    let mut skipped = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(block) = stream.next_block_within(left) else {
            panic!("no event within {EVENT_WAIT:?} (closed, or only {skipped} heartbeats/presence)")
        };
        match block.event.as_deref() {
            Some("heartbeat") | Some("presence") => skipped += 1,
            _ => return block,
        }
    }
}

/// The next event with an id and a payload, skipping heartbeats, presence
/// and id-only blocks.
#[track_caller]
fn next_published(stream: &mut Stream) -> SseEvent {
    loop {
        let block = next_event(stream);
        if !is_id_only(&block) {
            assert!(block.id.is_some(), "an event without an id: {block:?}");
            return block;
        }
    }
}

/// The ids of the next `n` published events.
#[track_caller]
fn next_ids(stream: &mut Stream, n: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(id_of(&next_published(stream)));
    }
    ids
}

/// Reads blocks for `within`; the number of heartbeats. Fails if an event
/// with an id comes or the stream closes.
#[track_caller]
fn heartbeats_for(stream: &mut Stream, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut beats = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return beats;
        }
        match stream.client.read_until_within(b"\n\n", left) {
            Some(raw) => {
                let block = parse_block(&String::from_utf8(raw).unwrap());
                match block.event.as_deref() {
                    Some("heartbeat") => beats += 1,
                    Some("presence") => {}
                    _ => panic!("unexpected while waiting for heartbeats: {block:?}"),
                }
            }
            None => {
                // Either the time is up or the peer closed: tell them apart.
                if Instant::now() < deadline {
                    panic!("the stream closed after {beats} heartbeats");
                }
                return beats;
            }
        }
    }
}

/// Waits (up to `within`) for a `presence` event of `room` with these
/// counts, skipping everything else.
#[track_caller]
fn wait_presence(stream: &mut Stream, room: &str, clients: u64, agents: u64, within: Duration) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(block) = stream.next_block_within(left) else {
            panic!(
                "no presence {{room {room}, clients {clients}, agents {agents}}} within {within:?}; presence seen: {seen:?}"
            );
        };
        if block.event.as_deref() == Some("presence") {
            let data: Value = serde_json::from_str(&block.data).expect("presence JSON");
            if data == json!({"room": room, "clients": clients, "agents": agents}) {
                return;
            }
            seen.push(data);
        }
    }
}

// ----- Redis as the tests see it -------------------------------------------------

/// Every key in the Redis.
fn redis_keys(redis: &RedisServer) -> Vec<String> {
    match redis.call(&[b"KEYS", b"*"]) {
        Reply::Array(Some(keys)) => keys
            .into_iter()
            .map(|k| match k {
                Reply::Bulk(Some(k)) => String::from_utf8_lossy(&k).into_owned(),
                other => panic!("a key: {other:?}"),
            })
            .collect(),
        other => panic!("KEYS *: {other:?}"),
    }
}

/// The entry ids (`MS-SEQ`) of every Redis stream key.
fn redis_stream_entry_ids(redis: &RedisServer) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for key in redis_keys(redis) {
        let kind = redis.call(&[b"TYPE", key.as_bytes()]);
        if kind != Reply::Simple("stream".into()) {
            continue;
        }
        let entries = resp::parse_range(redis.call(&[b"XRANGE", key.as_bytes(), b"-", b"+"]))
            .expect("XRANGE reply");
        ids.extend(entries.iter().map(|e| e.id.to_string()));
    }
    ids
}

/// An event id as the Redis stream id it was read from.
fn as_stream_id(id: u64) -> String {
    format!("{}-{}", id / 1000, id % 1000)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ----- delivery ------------------------------------------------------------------

/// Three nodes; events published through each of the three ways on any
/// node reach every matching stream on every node with the same ids in
/// the same order, also when two nodes publish at the same time; a stream
/// of another room gets none of them; `/rooms`, `hello` and `/healthz`
/// agree everywhere.
#[test]
fn events_from_any_node_reach_every_stream_on_every_node_in_one_order() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("fanout");
    let a = node(redis.redis_url(), &prefix);
    let b = node(redis.redis_url(), &prefix);
    let c = node(redis.redis_url(), &prefix);
    for n in [&a, &b, &c] {
        wait_redis_up(n.addr);
    }
    let (mut sa, _) = open(a.addr, "/events?room=r", "");
    let (mut sb, _) = open(b.addr, "/events?room=r&room=s", "");
    let (mut sc, _) = open(c.addr, "/events?room=r", "");
    let (mut other, _) = open(c.addr, "/events?room=elsewhere", "");

    let message = post_message(a.addr, "r", "ann", "hello from a");
    let reading = publish(b.addr, "r", "reading", "temp=21\nhum=40");
    c.handle
        .publish("r", Some("tick"), "from a handle")
        .expect("handle publish");
    let in_s = publish(c.addr, "s", "note", "room s only");
    // Two nodes publishing at once, each its next only after its last 201.
    let (from_a, from_b) = std::thread::scope(|scope| {
        let on_a = scope.spawn(|| {
            (0..10)
                .map(|n| publish(a.addr, "r", "burst", &format!("a{n}")))
                .collect::<Vec<u64>>()
        });
        let on_b = scope.spawn(|| {
            (0..10)
                .map(|n| post_message(b.addr, "r", "bob", &format!("b{n}")))
                .collect::<Vec<u64>>()
        });
        (on_a.join().unwrap(), on_b.join().unwrap())
    });
    for ids in [&from_a, &from_b] {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    // The first three, in full, on a's stream.
    let first = next_published(&mut sa);
    assert_eq!(id_of(&first), message);
    assert_eq!(first.event.as_deref(), Some("message"));
    let data: Value = serde_json::from_str(&first.data).expect("message JSON");
    assert_eq!(data["id"], message);
    assert_eq!(data["room"], "r");
    assert_eq!(data["user"], "ann");
    assert_eq!(data["text"], "hello from a");
    let second = next_published(&mut sa);
    assert_eq!(id_of(&second), reading);
    assert_eq!(second.event.as_deref(), Some("reading"));
    assert_eq!(second.data, "temp=21\nhum=40");
    let third = next_published(&mut sa);
    assert_eq!(third.event.as_deref(), Some("tick"));
    assert_eq!(third.data, "from a handle");
    let tick = id_of(&third);
    assert!(reading < tick, "{reading} {tick}");

    let mut seen_a = vec![message, reading, tick];
    seen_a.extend(next_ids(&mut sa, 20));
    let seen_c = next_ids(&mut sc, 23);
    let seen_b = next_ids(&mut sb, 24);
    assert!(
        seen_a.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {seen_a:?}"
    );
    assert_eq!(seen_c, seen_a, "node c saw another order than node a");
    // One order everywhere: b's stream of two rooms is the merge by id.
    let mut want_b = seen_a.clone();
    want_b.push(in_s);
    want_b.sort_unstable();
    assert_eq!(seen_b, want_b, "node b's two-room stream");
    let all: BTreeSet<u64> = from_a.iter().chain(&from_b).copied().collect();
    assert_eq!(
        seen_a[3..].iter().copied().collect::<BTreeSet<u64>>(),
        all,
        "the burst, as acknowledged"
    );

    // The stream of another room got none of it (its next event is its own).
    let own = publish(b.addr, "elsewhere", "e", "mine");
    assert_eq!(id_of(&next_published(&mut other)), own);

    // Every node knows the same room state and, once it has heard of the
    // newest event, gives its id in every hello.
    let newest = own;
    for n in [&a, &b, &c] {
        assert!(
            eventually(CLUSTER_WIDE_DEADLINE, || room_entry(n.addr, "elsewhere")
                .is_some_and(|r| r["last_id"] == newest)),
            "{}: /rooms never showed id {newest} in room elsewhere",
            n.addr
        );
        let room = room_entry(n.addr, "r").expect("room r listed");
        assert_eq!(room["messages"], 23, "{}: {room}", n.addr);
        assert_eq!(
            room["last_id"],
            *seen_a.last().unwrap(),
            "{}: {room}",
            n.addr
        );
        let (_, hello) = open(n.addr, "/events?room=r", "");
        assert_eq!(hello["last_id"], newest, "{}: {hello}", n.addr);
        let health = health(n.addr);
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["redis"], "up", "{health}");
    }
}

/// Ids are the Redis stream ids `MS-SEQ` read as `MS × 1000 + SEQ`: when a
/// publish is answered `201`, Redis already holds the entry with that id;
/// the milliseconds are the time of the publish; ids stay below 2^53.
#[test]
fn ids_are_redis_stream_ids_and_201_means_redis_has_the_event() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("ids");
    let a = node(redis.redis_url(), &prefix);
    let b = node(redis.redis_url(), &prefix);
    wait_redis_up(a.addr);
    wait_redis_up(b.addr);
    let mut last = 0;
    for n in 0..6 {
        let before = now_ms();
        let id = if n % 2 == 0 {
            post_message(a.addr, "ids", "ann", &format!("m{n}"))
        } else {
            publish(b.addr, "ids", "e", &format!("p{n}"))
        };
        let after = now_ms();
        assert!(id > last, "{id} after {last}");
        assert!(id < 1 << 53, "{id} is not exact in JavaScript");
        let ms = id / 1000;
        assert!(
            before.saturating_sub(1000) <= ms && ms <= after + 1000,
            "id {id}: {ms} ms is not the time of the publish ({before}..{after})"
        );
        let held = redis_stream_entry_ids(&redis);
        assert!(
            held.contains(&as_stream_id(id)),
            "201 for id {id}, but no Redis stream holds entry {}; entries: {held:?}",
            as_stream_id(id)
        );
        last = id;
    }
}

// ----- history, replay, resume ---------------------------------------------------

/// A node started after the events were published serves the same
/// `GET /messages` (with `after` and `limit`), `GET /rooms` and replay
/// (fresh: the last `--history`; `Last-Event-ID` header or query: what
/// follows; a `gap` for what `--history` dropped) as the node that
/// published them, and ends the replay with the cluster's newest id.
#[test]
fn a_node_started_later_serves_the_same_history_and_replay() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("later");
    let history = |c: &mut Config| c.history = 5;
    let a = node_with(redis.redis_url(), &prefix, history);
    wait_redis_up(a.addr);
    let e: Vec<u64> = (0..8)
        .map(|n| {
            if n % 2 == 0 {
                post_message(a.addr, "r", "ann", &format!("m{n}"))
            } else {
                publish(a.addr, "r", "reading", &format!("p{n}\nline 2"))
            }
        })
        .collect();
    let elsewhere = publish(a.addr, "r2", "e", "newest, in another room");

    let b = node_with(redis.redis_url(), &prefix, history);
    wait_redis_up(b.addr);

    let retained = messages(b.addr, "room=r");
    assert_eq!(item_ids(&retained), e[3..], "{retained}");
    let items = retained.as_array().unwrap();
    assert_eq!(items[0]["event"], "reading", "{}", items[0]);
    assert_eq!(items[0]["data"], "p3\nline 2", "{}", items[0]);
    assert_eq!(items[1]["user"], "ann", "{}", items[1]);
    assert_eq!(items[1]["text"], "m4", "{}", items[1]);
    for query in [
        "room=r".to_string(),
        "room=r&limit=2".to_string(),
        format!("room=r&after={}", e[5]),
        format!("room=r&after={}&limit=1", e[4]),
        "room=r2".to_string(),
        "room=nothing-here".to_string(),
    ] {
        assert_eq!(
            messages(b.addr, &query),
            messages(a.addr, &query),
            "/messages?{query}"
        );
    }
    for n in [&a, &b] {
        let room = room_entry(n.addr, "r").expect("room r listed");
        assert_eq!(room["messages"], 5, "{}: {room}", n.addr);
        assert_eq!(room["last_id"], e[7], "{}: {room}", n.addr);
        let room = room_entry(n.addr, "r2").expect("room r2 listed");
        assert_eq!(room["last_id"], elsewhere, "{}: {room}", n.addr);
    }

    // A fresh visitor on b: the last 5, then the id-only block of the
    // newest id (of room r2).
    let (mut fresh, hello) = open(b.addr, "/events?room=r", "");
    assert_eq!(hello["last_id"], elsewhere, "{hello}");
    assert_eq!(next_ids_raw(&mut fresh, 5), e[3..]);
    let tail = next_event(&mut fresh);
    assert!(is_id_only(&tail), "{tail:?}");
    assert_eq!(id_of(&tail), elsewhere);

    // Resuming on b, by header and by query parameter.
    let (mut resumed, _) = open(
        b.addr,
        "/events?room=r",
        &format!("Last-Event-ID: {}\r\n", e[5]),
    );
    assert_eq!(next_ids_raw(&mut resumed, 2), e[6..]);
    assert_eq!(id_of(&next_event(&mut resumed)), elsewhere);
    let (mut by_query, _) = open(b.addr, &format!("/events?room=r&lastEventId={}", e[6]), "");
    assert_eq!(next_ids_raw(&mut by_query, 1), e[7..]);

    // Resuming from before what is retained: a gap first, then the rest.
    let (mut behind, _) = open(
        b.addr,
        "/events?room=r",
        &format!("Last-Event-ID: {}\r\n", e[1]),
    );
    let gap = next_event(&mut behind);
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    assert_eq!(gap.id, None, "{gap:?}");
    let data: Value = serde_json::from_str(&gap.data).expect("gap JSON");
    assert_eq!(
        data,
        json!({"last_event_id": e[1], "oldest_retained": e[3]}),
        "{gap:?}"
    );
    assert_eq!(next_ids_raw(&mut behind, 5), e[3..]);
}

/// `"redis":"up"` means ready: a node that has just said it serves the
/// cluster's history and newest id and delivers its own first publish
/// (several fresh nodes, to catch a start-up race).
#[test]
fn a_node_is_ready_once_healthz_says_redis_up() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("ready");
    let a = node(redis.redis_url(), &prefix);
    wait_redis_up(a.addr);
    // Every id of room r so far, oldest first (all retained: --history 100).
    let mut all: Vec<u64> = (0..3)
        .map(|n| publish(a.addr, "r", "e", &format!("{n}")))
        .collect();
    for round in 0..5 {
        let fresh = node(redis.redis_url(), &prefix);
        wait_redis_up(fresh.addr);
        assert_eq!(
            item_ids(&messages(fresh.addr, "room=r")),
            all,
            "round {round}: GET /messages right after \"redis\":\"up\""
        );
        let (mut resumed, hello) = open(
            fresh.addr,
            "/events?room=r",
            &format!("Last-Event-ID: {}\r\n", all[0]),
        );
        assert_eq!(
            hello["last_id"],
            *all.last().unwrap(),
            "round {round}: {hello}"
        );
        assert_eq!(
            next_ids_raw(&mut resumed, all.len() - 1),
            all[1..],
            "round {round}: replay"
        );
        let (mut own, _) = open(fresh.addr, "/events?room=r", "");
        assert_eq!(
            next_ids_raw(&mut own, all.len()),
            all,
            "round {round}: history"
        );
        let live = publish(fresh.addr, "r", "e", &format!("round {round}"));
        assert_eq!(
            next_ids(&mut own, 1),
            [live],
            "round {round}: the node's own first publish"
        );
        all.push(live);
    }
}

/// The ids of the next `n` events with a payload (heartbeats and presence
/// skipped, but not id-only blocks: a replay has none in its middle).
#[track_caller]
fn next_ids_raw(stream: &mut Stream, n: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let block = next_event(stream);
        assert!(
            !is_id_only(&block),
            "an id-only block in a replay: {block:?}"
        );
        ids.push(id_of(&block));
    }
    ids
}

/// A browser hops from node to node, each time resuming with the last id
/// it got, right after events were published on the other node (before
/// that node could have heard of them by any other way than Redis): every
/// time it gets exactly what it missed, then live events, never a gap,
/// never a duplicate.
#[test]
fn a_browser_resumes_on_any_node_with_no_gap_and_no_duplicate() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("resume");
    let a = node(redis.redis_url(), &prefix);
    let b = node(redis.redis_url(), &prefix);
    wait_redis_up(a.addr);
    wait_redis_up(b.addr);
    let nodes = [&a, &b];

    let (mut stream, _) = open(a.addr, "/events?room=hop", "");
    let first = publish(b.addr, "hop", "e", "first");
    assert_eq!(next_ids(&mut stream, 1), [first]);
    let mut last = first;
    for round in 0..6 {
        drop(stream);
        // Missed while away: one on each node, the newest on the node the
        // browser is not about to use.
        let next = nodes[(round + 1) % 2];
        let other = nodes[round % 2];
        let missed = vec![
            post_message(next.addr, "hop", "ann", &format!("r{round} one")),
            publish(other.addr, "hop", "e", &format!("r{round} two")),
        ];
        let (mut resumed, _) = open(
            next.addr,
            "/events?room=hop",
            &format!("Last-Event-ID: {last}\r\n"),
        );
        let replayed = next_ids_raw(&mut resumed, 2);
        assert_eq!(replayed, missed, "round {round}: replay on {}", next.addr);
        // Then live, from the other node: nothing in between.
        let live = publish(other.addr, "hop", "e", &format!("r{round} live"));
        let block = next_event(&mut resumed);
        assert_eq!(
            (id_of(&block), block.data.as_str()),
            (live, format!("r{round} live").as_str()),
            "round {round}: after the replay on {}",
            next.addr
        );
        last = live;
        stream = resumed;
    }
}

// ----- presence ------------------------------------------------------------------

/// A customer on node a and an agent on node b in one room: both nodes'
/// `GET /rooms` say 2 clients, 1 agent, and a's customer gets that
/// presence, within 2 s; when the agent leaves, the same back to 1 and 0.
#[test]
fn presence_and_room_counts_are_cluster_wide_within_2_s() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("presence");
    let a = node(redis.redis_url(), &prefix);
    let b = node(redis.redis_url(), &prefix);
    wait_redis_up(a.addr);
    wait_redis_up(b.addr);

    let (mut customer, _) = open(a.addr, "/events?room=desk", "");
    assert!(
        eventually(CLUSTER_WIDE_DEADLINE, || counts(a.addr, "desk") == (1, 0)
            && counts(b.addr, "desk") == (1, 0)),
        "one customer on a: a says {:?}, b says {:?}",
        counts(a.addr, "desk"),
        counts(b.addr, "desk")
    );

    let (agent, _) = open(b.addr, "/events?room=desk&role=agent", "");
    let joined = Instant::now();
    assert!(
        eventually(CLUSTER_WIDE_DEADLINE, || counts(a.addr, "desk") == (2, 1)
            && counts(b.addr, "desk") == (2, 1)),
        "customer on a, agent on b, {CLUSTER_WIDE:?} promised: a says {:?}, b says {:?}",
        counts(a.addr, "desk"),
        counts(b.addr, "desk")
    );
    let left = CLUSTER_WIDE_DEADLINE.saturating_sub(joined.elapsed());
    wait_presence(
        &mut customer,
        "desk",
        2,
        1,
        left + Duration::from_millis(100),
    );

    drop(agent);
    assert!(
        eventually(CLUSTER_WIDE_DEADLINE, || counts(a.addr, "desk") == (1, 0)
            && counts(b.addr, "desk") == (1, 0)),
        "the agent left b: a says {:?}, b says {:?}",
        counts(a.addr, "desk"),
        counts(b.addr, "desk")
    );
    wait_presence(&mut customer, "desk", 1, 0, CLUSTER_WIDE_DEADLINE);
}

/// A node that is SIGKILLed cannot say its streams left: they leave the
/// counts of the other nodes within 10 s all the same.
#[test]
fn a_killed_nodes_streams_leave_the_counts_within_10_s() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("killed");
    let url = redis.url();
    let a = node(redis.redis_url(), &prefix);
    wait_redis_up(a.addr);
    let mut doomed = BinaryNode::start(&[
        "--bind",
        "127.0.0.1:0",
        "--redis",
        &url,
        "--redis-prefix",
        &prefix,
        "--log-level",
        "info",
    ]);
    wait_redis_up(doomed.addr);

    let (mut watcher, _) = open(a.addr, "/events?room=wake", "");
    let _on_doomed: Vec<Stream> = (0..2)
        .map(|n| {
            let role = if n == 0 { "&role=agent" } else { "" };
            open(doomed.addr, &format!("/events?room=wake{role}"), "").0
        })
        .collect();
    assert!(
        eventually(CLUSTER_WIDE_DEADLINE, || counts(a.addr, "wake") == (3, 1)),
        "1 stream on a, 2 on the other node: a says {:?}; the other node's log:\n{}",
        counts(a.addr, "wake"),
        doomed.stderr()
    );
    wait_presence(&mut watcher, "wake", 3, 1, CLUSTER_WIDE_DEADLINE);

    doomed.kill();
    let killed = Instant::now();
    assert!(
        eventually(DEAD_NODE_DEADLINE, || counts(a.addr, "wake") == (1, 0)),
        "the killed node's streams still count after {:?}: a says {:?}",
        killed.elapsed(),
        counts(a.addr, "wake")
    );
    // 10 s promised; the deadline above has a margin for a loaded machine.
    eprintln!("a killed node left the counts after {:?}", killed.elapsed());
    wait_presence(&mut watcher, "wake", 1, 0, CLUSTER_WIDE_DEADLINE);
    // And the survivor still works.
    let id = publish(a.addr, "wake", "e", "still here");
    assert_eq!(next_ids(&mut watcher, 1), [id]);
}

// ----- Redis down, a node cut off --------------------------------------------------

/// A Redis that still accepts connections but answers nothing (frozen,
/// as on a stuck disk): no publish hangs. The first one waits at most the
/// writer's reply time-out (1 s), and is refused; then every publish is
/// refused at once; once Redis goes on, publishing works again.
#[test]
fn a_frozen_redis_refuses_publishes_instead_of_hanging_them() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("frozen");
    let a = node(redis.redis_url(), &prefix);
    wait_redis_up(a.addr);
    let first = post_message(a.addr, "r", "ann", "before");

    redis.freeze();
    let asked = Instant::now();
    let reply = post_message_reply(a.addr, "r", "ann", "while frozen");
    let took = asked.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.text());
    // 1 s of time-out and a margin for a busy machine; it used to be
    // 2 s at the least (up to 4 s behind a presence update).
    assert!(
        took < Duration::from_millis(1800),
        "the first 503 took {took:?}"
    );
    let asked = Instant::now();
    let reply = publish_reply(a.addr, "r", "e", "while frozen");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        asked.elapsed() < AT_ONCE,
        "the next 503 took {:?}",
        asked.elapsed()
    );

    redis.thaw();
    assert!(
        eventually(RECONNECT_DEADLINE, || redis_is(a.addr, "up")),
        "not back after Redis went on: {}",
        health(a.addr)
    );
    let after = post_message(a.addr, "r", "ann", "after");
    assert!(after > first, "{after} after {first}");
}

/// Redis stops (SIGTERM) and starts again on the same port with the same
/// data: meanwhile publishes are `503` at once, streams stay open with
/// their heartbeats and `/healthz` says `"redis":"down"` (still `200`);
/// then the nodes reconnect by themselves, publishing works, streams get
/// the new events and nothing twice, and the data survived.
#[test]
fn while_redis_is_down_publishes_get_503_and_streams_keep_their_heartbeats() {
    let mut redis = RedisServer::start();
    let prefix = unique_prefix("down");
    let a = node(redis.redis_url(), &prefix);
    let b = node(redis.redis_url(), &prefix);
    wait_redis_up(a.addr);
    wait_redis_up(b.addr);
    let (mut sa, _) = open(a.addr, "/events?room=r", "");
    let (mut sb, _) = open(b.addr, "/events?room=r", "");
    let before = post_message(a.addr, "r", "ann", "before");
    assert_eq!(next_ids(&mut sa, 1), [before]);
    assert_eq!(next_ids(&mut sb, 1), [before]);

    redis.stop();
    // At once, whether or not the node has noticed yet.
    let asked = Instant::now();
    let reply = post_message_reply(a.addr, "r", "ann", "while down");
    let took = asked.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(took < AT_ONCE, "a 503 took {took:?}");
    assert!(reply.json()["error"].is_string(), "{}", reply.text());

    for n in [&a, &b] {
        assert!(
            eventually(RECONNECT_DEADLINE, || redis_is(n.addr, "down")),
            "{}: /healthz does not say \"redis\":\"down\": {}",
            n.addr,
            health(n.addr)
        );
    }
    for (n, send) in [(&a, 0), (&b, 1), (&a, 1), (&b, 0)] {
        let asked = Instant::now();
        let reply = if send == 0 {
            post_message_reply(n.addr, "r", "ann", "while down")
        } else {
            publish_reply(n.addr, "r", "e", "while down")
        };
        let took = asked.elapsed();
        assert_eq!(reply.status, 503, "{}: {}", n.addr, reply.text());
        assert!(took < AT_ONCE, "{}: a 503 took {took:?}", n.addr);
    }
    // Streams carry on: heartbeats every second, on both nodes.
    let beats_a = heartbeats_for(&mut sa, Duration::from_millis(2500));
    let beats_b = heartbeats_for(&mut sb, Duration::from_millis(500));
    assert!(beats_a >= 2, "{beats_a} heartbeats in 2.5 s on a");
    assert!(
        beats_b >= 1,
        "{beats_b} heartbeats in 0.5 s on b (after 2.5 s)"
    );

    redis.restart();
    let back = Instant::now();
    for n in [&a, &b] {
        assert!(
            eventually(RECONNECT_DEADLINE, || redis_is(n.addr, "up")),
            "{}: not reconnected {:?} after Redis came back: {}",
            n.addr,
            back.elapsed(),
            health(n.addr)
        );
    }
    let after = [
        publish(b.addr, "r", "e", "after, from b"),
        post_message(a.addr, "r", "ann", "after, from a"),
    ];
    assert!(
        before < after[0] && after[0] < after[1],
        "{before} {after:?}"
    );
    assert_eq!(
        next_ids(&mut sa, 2),
        after,
        "a's stream after Redis came back"
    );
    assert_eq!(
        next_ids(&mut sb, 2),
        after,
        "b's stream after Redis came back"
    );

    // What was acknowledged before the stop survived it.
    let c = node(redis.redis_url(), &prefix);
    wait_redis_up(c.addr);
    assert_eq!(
        item_ids(&messages(c.addr, "room=r")),
        [before, after[0], after[1]]
    );
}

/// One node loses Redis (its connections through a proxy are cut) while
/// the other keeps it and goes on publishing: the cut-off node answers
/// `503`, says `"redis":"down"`, keeps its streams; once it reconnects its
/// streams get everything published meanwhile, in order, nothing twice.
#[test]
fn a_node_cut_off_from_redis_catches_up_on_what_others_published() {
    let redis = RedisServer::start();
    let proxy = RedisProxy::start(redis.port);
    let prefix = unique_prefix("cut");
    let a = node(proxy.redis_url(), &prefix);
    let b = node(redis.redis_url(), &prefix);
    wait_redis_up(a.addr);
    wait_redis_up(b.addr);
    let (mut sa, _) = open(a.addr, "/events?room=r", "");
    let (mut sb, _) = open(b.addr, "/events?room=r", "");
    let first = publish(b.addr, "r", "e", "first");
    assert_eq!(next_ids(&mut sa, 1), [first]);
    assert_eq!(next_ids(&mut sb, 1), [first]);

    proxy.cut();
    assert!(
        eventually(RECONNECT_DEADLINE, || redis_is(a.addr, "down")),
        "a lost Redis but says {}",
        health(a.addr)
    );
    assert!(redis_is(b.addr, "up"), "{}", health(b.addr));
    let asked = Instant::now();
    let reply = publish_reply(a.addr, "r", "e", "from the cut-off node");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        asked.elapsed() < AT_ONCE,
        "a 503 took {:?}",
        asked.elapsed()
    );

    let meanwhile: Vec<u64> = (0..3)
        .map(|n| publish(b.addr, "r", "e", &format!("meanwhile {n}")))
        .collect();
    assert_eq!(next_ids(&mut sb, 3), meanwhile);
    assert!(heartbeats_for(&mut sa, Duration::from_millis(1500)) >= 1);

    proxy.restore();
    let restored = Instant::now();
    assert_eq!(
        next_ids(&mut sa, 3),
        meanwhile,
        "a's stream after a got Redis back"
    );
    assert!(
        eventually(RECONNECT_DEADLINE, || redis_is(a.addr, "up")),
        "a not reconnected {:?} after the cut ended: {}",
        restored.elapsed(),
        health(a.addr)
    );
    let last = post_message(a.addr, "r", "ann", "back");
    assert_eq!(next_ids(&mut sa, 1), [last], "nothing twice on a");
    assert_eq!(next_ids(&mut sb, 1), [last], "nothing twice on b");
}

/// A failover to a replica that lagged: Redis keeps its epoch but loses
/// its newest entries, and its last id goes back. A node that had read
/// them notices when it reconnects: its streams start over, a browser
/// resuming from the lost id gets a gap, and the last id is raised back,
/// so no node hands those ids out again.
#[test]
fn redis_losing_only_its_newest_entries_makes_clients_resync() {
    let redis = RedisServer::start();
    let proxy = RedisProxy::start(redis.port);
    let prefix = unique_prefix("tail");
    let a = node(proxy.redis_url(), &prefix);
    wait_redis_up(a.addr);
    let (mut stream, _) = open(a.addr, "/events?room=r", "");
    let ids: Vec<u64> = (0..3)
        .map(|n| post_message(a.addr, "r", "ann", &format!("before {n}")))
        .collect();
    assert_eq!(next_ids(&mut stream, 3), ids);

    proxy.cut();
    assert!(
        eventually(RECONNECT_DEADLINE, || redis_is(a.addr, "down")),
        "{}",
        health(a.addr)
    );
    // The replica had only the first event.
    let stream_id = |id: u64| format!("{}-{}", id / 1000, id % 1000);
    for key in ["log", "room:r"] {
        let key = format!("{prefix}:{key}");
        for lost in &ids[1..] {
            redis.call(&[b"XDEL", key.as_bytes(), stream_id(*lost).as_bytes()]);
        }
    }
    let last_key = format!("{prefix}:last");
    redis.call(&[b"SET", last_key.as_bytes(), stream_id(ids[0]).as_bytes()]);

    proxy.restore();
    assert!(
        stream.client.closes_within(RECONNECT_DEADLINE),
        "the stream went on as if nothing was lost"
    );
    assert!(
        eventually(RECONNECT_DEADLINE, || redis_is(a.addr, "up")),
        "{}",
        health(a.addr)
    );
    assert_eq!(
        redis.call(&[b"GET", last_key.as_bytes()]),
        Reply::Bulk(Some(stream_id(ids[2]).into_bytes())),
        "the last id was raised back to what the node had read"
    );
    let (mut resumed, _) = open(
        a.addr,
        "/events?room=r",
        &format!("Last-Event-ID: {}\r\n", ids[2]),
    );
    let first = next_event(&mut resumed);
    assert_eq!(first.event.as_deref(), Some("gap"), "{first:?}");
    let after = post_message(a.addr, "r", "ann", "after");
    assert!(after > ids[2], "id {after} not above {}", ids[2]);
    assert_eq!(next_ids(&mut resumed, 1), [after]);
}

/// A Redis address that accepts connections and closes them at once (a
/// TCP load balancer with no backend left, a Redis at `maxclients`) is
/// Redis that cannot be reached: `/healthz` says `"redis":"down"` and keeps
/// saying it (a connect that succeeds is not a connection that works),
/// publishes are `503` at once, streams keep their heartbeats; once Redis
/// answers again, everything flows.
#[test]
fn a_redis_address_that_accepts_and_closes_counts_as_down() {
    let redis = RedisServer::start();
    let proxy = RedisProxy::start(redis.port);
    let prefix = unique_prefix("closes");
    let a = node(proxy.redis_url(), &prefix);
    wait_redis_up(a.addr);
    let (mut stream, _) = open(a.addr, "/events?room=r", "");
    let first = publish(a.addr, "r", "e", "first");
    assert_eq!(next_ids(&mut stream, 1), [first]);

    proxy.accept_and_close();
    assert!(
        eventually(RECONNECT_DEADLINE, || redis_is(a.addr, "down")),
        "every connection to Redis is closed at once, yet /healthz says {}",
        health(a.addr)
    );
    // It stays down while nothing works (sampled over a few retry periods).
    let until = Instant::now() + Duration::from_millis(2500);
    let mut samples = 0;
    while Instant::now() < until {
        let health = health(a.addr);
        assert_eq!(
            health["redis"], "down",
            "after {samples} samples saying down, /healthz says {health}"
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..3 {
        let asked = Instant::now();
        let reply = post_message_reply(a.addr, "r", "ann", "nobody hears");
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(
            asked.elapsed() < AT_ONCE,
            "a 503 took {:?}",
            asked.elapsed()
        );
    }
    assert!(heartbeats_for(&mut stream, Duration::from_millis(1500)) >= 1);

    proxy.restore();
    wait_redis_up(a.addr);
    let back = publish(a.addr, "r", "e", "back");
    assert_eq!(next_ids(&mut stream, 1), [back]);
}

// ----- prefixes, ports, flags --------------------------------------------------------

/// Two clusters on one Redis with different `--redis-prefix`: neither sees
/// the other's events, history or streams, and every key is under one of
/// the two prefixes.
#[test]
fn redis_prefix_isolates_clusters_sharing_one_redis() {
    let redis = RedisServer::start();
    let blue = unique_prefix("blue");
    let green = unique_prefix("green");
    let blue_1 = node(redis.redis_url(), &blue);
    let blue_2 = node(redis.redis_url(), &blue);
    let green_1 = node(redis.redis_url(), &green);
    for n in [&blue_1, &blue_2, &green_1] {
        wait_redis_up(n.addr);
    }
    let (mut on_blue, _) = open(blue_1.addr, "/events?room=r", "");
    let (_on_blue_2, _) = open(blue_2.addr, "/events?room=r", "");
    let (mut on_green, _) = open(green_1.addr, "/events?room=r", "");

    // Were the clusters one log, each stream would get the other's first.
    let blue_id = publish(blue_2.addr, "r", "e", "blue");
    let green_id = publish(green_1.addr, "r", "e", "green");
    let blue_again = publish(blue_2.addr, "r", "e", "blue again");
    assert_eq!(next_ids(&mut on_green, 1), [green_id]);
    assert_eq!(next_ids(&mut on_blue, 2), [blue_id, blue_again]);

    assert_eq!(
        item_ids(&messages(green_1.addr, "room=r")),
        [green_id],
        "green's history"
    );
    assert_eq!(
        item_ids(&messages(blue_1.addr, "room=r")),
        [blue_id, blue_again],
        "blue's history"
    );
    // Once blue counts its two streams, green still counts its one.
    assert!(
        eventually(CLUSTER_WIDE_DEADLINE, || counts(blue_1.addr, "r").0 == 2),
        "blue says {:?}",
        counts(blue_1.addr, "r")
    );
    assert_eq!(counts(green_1.addr, "r"), (1, 0));
    assert_eq!(counts(blue_2.addr, "r"), (2, 0));

    let keys = redis_keys(&redis);
    let under = |p: &str| keys.iter().filter(|k| k.starts_with(p)).count();
    assert!(under(&blue) > 0, "no key under {blue}: {keys:?}");
    assert!(under(&green) > 0, "no key under {green}: {keys:?}");
    assert_eq!(
        under(&blue) + under(&green),
        keys.len(),
        "keys outside both prefixes: {keys:?}"
    );
}

/// `--reuse-port`: two processes bind one port (the kernel spreads the
/// connections); without it on either side, the second exits 1 with
/// "address already in use".
#[test]
fn reuse_port_lets_two_processes_share_a_port_and_only_with_the_flag() {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let args = ["--bind", &bind, "--reuse-port", "--log-level", "info"];
    let mut first = BinaryNode::start(&args);
    let mut second = match BinaryNode::try_start(&args) {
        Ok(node) => node,
        Err((code, stderr)) => {
            panic!("a second --reuse-port process on {bind} exited {code:?}:\n{stderr}")
        }
    };
    assert!(first.alive() && second.alive());
    assert_eq!(first.addr, second.addr);
    for _ in 0..10 {
        assert_eq!(health(first.addr)["status"], "ok");
    }
    // Neither one gives way to a process without the flag.
    let (code, stderr) = run_to_exit(&["--bind", &bind], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("address already in use"), "{stderr}");
    // One of them gone, the port is still served by the other.
    first.kill();
    for _ in 0..10 {
        assert_eq!(health(second.addr)["status"], "ok");
    }
    drop(second);

    // A plain process on the port: a second one exits 1, with or without
    // the flag (the first did not share its port).
    let plain = BinaryNode::start(&["--bind", &bind]);
    let (code, stderr) = run_to_exit(&["--bind", &bind], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("address already in use"), "{stderr}");
    let (code, stderr) = run_to_exit(&["--bind", &bind, "--reuse-port"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("address already in use"), "{stderr}");
    drop(plain);
}

/// The cluster as `make cluster` runs it: processes sharing one port with
/// `--reuse-port --redis`; streams and publishes through that port land on
/// any of them, and every stream gets every event in the same order.
#[test]
fn a_cluster_on_one_port_delivers_every_event_to_every_stream() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("oneport");
    let url = redis.url();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let args = [
        "--bind",
        &bind,
        "--reuse-port",
        "--redis",
        &url,
        "--redis-prefix",
        &prefix,
    ];
    let nodes = [BinaryNode::start(&args), BinaryNode::start(&args)];
    let addr = nodes[0].addr;
    // Every connection may land on either process: wait until a run of
    // answers all say Redis is up.
    assert!(
        eventually(RECONNECT_DEADLINE, || (0..10).all(|_| redis_is(addr, "up"))),
        "not every process has Redis: {}\n{}",
        nodes[0].stderr(),
        nodes[1].stderr()
    );
    let mut streams: Vec<Stream> = (0..8)
        .map(|_| open(addr, "/events?room=shared", "").0)
        .collect();
    let ids: Vec<u64> = (0..6)
        .map(|n| publish(addr, "shared", "e", &format!("{n}")))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for (n, stream) in streams.iter_mut().enumerate() {
        assert_eq!(next_ids(stream, 6), ids, "stream {n}");
    }
}

/// `--journal` with `--redis` (flags or variables) is refused: exit 2.
#[test]
fn journal_with_redis_exits_2() {
    let dir = TempDir::new("cluster-journal");
    let journal = dir.path.join("journal.jsonl");
    let journal = journal.to_str().unwrap();
    let (code, stderr) = run_to_exit(
        &["--redis", "redis://127.0.0.1:1", "--journal", journal],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.contains("--journal") && first.contains("--redis"),
        "{first}"
    );
    assert!(stderr.contains("Usage"), "{stderr}");

    let (code, stderr) = run_to_exit(
        &[],
        &[
            ("SSEHUB_REDIS", "redis://127.0.0.1:1"),
            ("SSEHUB_JOURNAL", journal),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.to_ascii_lowercase().contains("journal"), "{stderr}");
    assert!(
        !dir.path.join("journal.jsonl").exists(),
        "the journal was created"
    );
}

/// A failover-style loss: Redis comes back without its data (a replica that
/// had not caught up, a restart without persistence). The node notices (the
/// epoch key changed), its open streams reconnect, a client resuming from an
/// id it saw gets a `gap`, and new ids never reuse old ones.
#[test]
fn redis_losing_its_data_makes_clients_resync_and_never_reuses_an_id() {
    let mut redis = RedisServer::start();
    let prefix = unique_prefix("lost");
    let a = node(redis.redis_url(), &prefix);
    wait_redis_up(a.addr);
    let (mut stream, _) = open(a.addr, "/events?room=r", "");
    let seen: Vec<u64> = (0..3)
        .map(|n| post_message(a.addr, "r", "ann", &format!("before {n}")))
        .collect();
    assert_eq!(next_ids(&mut stream, 3), seen);
    let last_seen = *seen.last().unwrap();

    // The data goes: the append-only files are removed while Redis is down.
    redis.stop();
    for entry in std::fs::read_dir(&redis.dir.path).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    redis.restart();
    assert!(
        eventually(RECONNECT_DEADLINE, || redis_is(a.addr, "up")),
        "not back: {}",
        health(a.addr)
    );
    // The open stream was told to start over: it is closed.
    assert!(
        stream.client.closes_within(RECONNECT_DEADLINE),
        "a stream kept going across the loss"
    );
    // A new event gets an id above everything a browser has seen.
    let after = post_message(a.addr, "r", "ann", "after");
    assert!(
        after > last_seen,
        "id {after} reused or went back (seen {last_seen})"
    );
    // Resuming from the last id seen: a gap first (events may be gone),
    // then the new event, never one of the old ids again.
    let (mut resumed, _) = open(
        a.addr,
        "/events?room=r",
        &format!("Last-Event-ID: {last_seen}\r\n"),
    );
    let first = next_event(&mut resumed);
    assert_eq!(first.event.as_deref(), Some("gap"), "{first:?}");
    let ids = next_ids(&mut resumed, 1);
    assert_eq!(ids, [after]);
}

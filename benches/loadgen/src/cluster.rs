//! `loadgen cluster`: scenario C1, the same load against the nodes of an
//! ssehub cluster (`--redis`) or against one node alone.
//!
//! Stream *i* goes to node *i* mod N, all in one fresh room; message *i* is
//! published (at a fixed rate, pipelined, open loop) to node *i* mod N, or
//! always to the first node with `--publish-to first`. Every delivery is
//! sorted by whether the stream is on the node the message was published
//! to (**same**) or on another (**cross**), with a latency histogram each.
//! Beyond missing and duplicated deliveries it checks that every copy of a
//! message carries the same SSE `id:` — the id the publish was answered
//! with, on every node — and that each stream's ids only grow. CPU time is
//! summed over the nodes (`/proc/PID/stat`, and the scheduler's exact
//! `schedstat`) and taken apart for Redis (`--redis-pid`). One JSON line,
//! like the other scenarios, for `loadgen summarize`.

use crate::close::sched_ns;
use crate::sse::{self, Dechunker, ResponseReader, SseParser};
use crate::stats::{self, BitSet, Histogram, ProcSample};
use crate::{connect_from, now_ns};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The summary table's extra columns for C1 (shown when a run has them).
pub const COLUMNS: &[(&str, &str)] = &[
    ("nodes", "nodes"),
    ("same p50", "same_p50_ms"),
    ("same p99", "same_p99_ms"),
    ("cross p50", "cross_p50_ms"),
    ("cross p99", "cross_p99_ms"),
    ("id diff", "id_mismatch"),
    ("µs/deliv sched", "cpu_us_per_delivery_sched"),
    ("node µs/msg", "node_cpu_us_per_msg_sched"),
    ("redis µs/msg", "redis_cpu_us_per_msg_sched"),
];

/// C1 figures where the table shows the worst run, not the median.
pub const WORST_KEYS: &[&str] = &["id_mismatch", "out_of_order", "no_id"];

const USAGE: &str = "\
usage: loadgen cluster --node 127.0.0.1:PORT[@PID] [--node ADDR[@PID] ...] [options]
  --node ADDR[@PID]   a node (repeat per node); PID for its CPU time from /proc
  --redis-pid PID     the cluster's redis-server, for its CPU time (0: none)
  --scenario NAME     label (default C1)
  --streams N         streams, node i mod N gets stream i (default 1000)
  --messages M        messages to publish (default 2000)
  --rate R            messages per second (default 100)
  --publish-to first|all  message i goes to node i mod N (all, default) or the first
  --pub-conns P       keep-alive publisher connections per publishing node (default 2)
  --idle SECS         hold before publishing (default 1)
  --drain SECS        wait at most this long for deliveries after the last publish (default 5)
  --deadline SECS     hard limit for the run (default 150)";

struct Args {
    nodes: Vec<(SocketAddrV4, u32)>,
    redis_pid: u32,
    scenario: String,
    streams: usize,
    messages: u64,
    rate: f64,
    publish_all: bool,
    pub_conns: usize,
    idle: f64,
    drain: f64,
    deadline: f64,
    room: String,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        nodes: Vec::new(),
        redis_pid: 0,
        scenario: "C1".into(),
        streams: 1000,
        messages: 2000,
        rate: 100.0,
        publish_all: true,
        pub_conns: 2,
        idle: 1.0,
        drain: 5.0,
        deadline: 150.0,
        room: String::new(),
    };
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        if flag == "--help" || flag == "-h" {
            println!("{}", USAGE);
            std::process::exit(0);
        }
        let val = argv
            .get(i + 1)
            .ok_or_else(|| format!("{} needs a value", flag))?;
        fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("bad value {:?} for {}", v, flag))
        }
        match flag {
            "--node" => {
                let (addr, pid) = match val.split_once('@') {
                    Some((a, p)) => (a, num(flag, p)?),
                    None => (val.as_str(), 0),
                };
                match addr.parse::<SocketAddr>() {
                    Ok(SocketAddr::V4(v4)) if v4.ip().is_loopback() => a.nodes.push((v4, pid)),
                    _ => return Err(format!("--node {:?}: not 127.x.y.z:PORT", val)),
                }
            }
            "--redis-pid" => a.redis_pid = num(flag, val)?,
            "--scenario" => a.scenario = val.clone(),
            "--streams" => a.streams = num(flag, val)?,
            "--messages" => a.messages = num(flag, val)?,
            "--rate" => a.rate = num(flag, val)?,
            "--publish-to" => {
                a.publish_all = match val.as_str() {
                    "all" => true,
                    "first" => false,
                    _ => return Err("--publish-to is first or all".into()),
                }
            }
            "--pub-conns" => a.pub_conns = num(flag, val)?,
            "--idle" => a.idle = num(flag, val)?,
            "--drain" => a.drain = num(flag, val)?,
            "--deadline" => a.deadline = num(flag, val)?,
            "--room" => a.room = val.clone(),
            _ => return Err(format!("unknown flag {}", flag)),
        }
        i += 2;
    }
    if a.nodes.is_empty() {
        return Err("at least one --node is required".into());
    }
    if a.streams == 0 || a.pub_conns == 0 || a.messages == 0 {
        return Err("--streams, --pub-conns and --messages must be at least 1".into());
    }
    if !(a.rate > 0.0 && a.rate <= 1e6) {
        return Err("--rate must be in (0, 1e6]".into());
    }
    if !(a.deadline > 0.0 && a.deadline <= 3600.0) {
        return Err("--deadline must be in (0, 3600] seconds".into());
    }
    if a.room.is_empty() {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        a.room = format!("c1-{}-{}", std::process::id(), ms);
    }
    Ok(a)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Head,
    Body,
    Closed,
}

struct Stream {
    sock: Option<TcpStream>,
    node: usize,
    state: State,
    head: Vec<u8>,
    dechunk: Option<Dechunker>,
    sse: SseParser,
    seen: BitSet,
    hello: bool,
    last_id: u64,
}

struct Publisher {
    sock: TcpStream,
    node: usize,
    connected: bool,
    closed: bool,
    out: Vec<u8>,
    out_pos: usize,
    rr: ResponseReader,
    inflight: VecDeque<u64>,
}

#[derive(Default)]
struct Counts {
    hellos: u64,
    connect_errors: u64,
    bad_status: u64,
    closed_by_server: u64,
    deliveries: u64,
    same: u64,
    cross: u64,
    dup: u64,
    bad_markers: u64,
    no_id: u64,
    id_mismatch: u64,
    out_of_order: u64,
    unique_counted: u64,
    last_delivery_ns: u64,
    sent: u64,
    acked: u64,
    pub_errors: u64,
    first_send_ns: u64,
    last_send_ns: u64,
    last_ack_ns: u64,
    per_node_deliveries: Vec<u64>,
}

struct Run {
    a: Args,
    poll: Poll,
    streams: Vec<Stream>,
    pubs: Vec<Publisher>,
    c: Counts,
    same: Histogram,
    cross: Histogram,
    all: Histogram,
    /// The SSE id of message `seq` (from its 201, or its first delivery); 0: unknown.
    ids: Vec<u64>,
    acked: BitSet,
    publishing: bool,
    buf: Vec<u8>,
    deadline: Instant,
    timed_out: bool,
}

const PUB_BASE: usize = 1 << 30;

impl Run {
    fn pub_node(&self, seq: u64) -> usize {
        if self.a.publish_all {
            (seq % self.a.nodes.len() as u64) as usize
        } else {
            0
        }
    }

    fn step(&mut self, events: &mut Events, max_wait: Duration) {
        let now = Instant::now();
        if now >= self.deadline {
            self.timed_out = true;
            return;
        }
        if let Err(e) = self
            .poll
            .poll(events, Some(max_wait.min(self.deadline - now)))
        {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("loadgen cluster: poll: {}", e);
                self.timed_out = true;
            }
            return;
        }
        for e in events.iter() {
            let t = e.token().0;
            let hup = e.is_read_closed() || e.is_error();
            let (r, w) = (e.is_readable() || hup, e.is_writable() || e.is_error());
            if t >= PUB_BASE {
                self.pub_event(t - PUB_BASE, r, w);
            } else if t < self.streams.len() {
                self.stream_event(t, r, w);
            }
        }
    }

    fn close_stream(&mut self, i: usize, by_server: bool) {
        let s = &mut self.streams[i];
        if let Some(mut sock) = s.sock.take() {
            let _ = self.poll.registry().deregister(&mut sock);
        }
        if s.state != State::Closed && by_server {
            self.c.closed_by_server += 1;
        }
        s.state = State::Closed;
    }

    fn stream_event(&mut self, i: usize, readable: bool, writable: bool) {
        if self.streams[i].state == State::Connecting {
            if !readable && !writable {
                return;
            }
            let node = self.a.nodes[self.streams[i].node].0;
            let req = format!(
                "GET /events?room={} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nUser-Agent: ssehub-loadgen\r\n\r\n",
                self.a.room, node
            );
            let Some(sock) = self.streams[i].sock.as_mut() else {
                return;
            };
            match sock.write(req.as_bytes()) {
                Ok(n) if n == req.len() => self.streams[i].state = State::Head,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                _ => {
                    self.c.connect_errors += 1;
                    self.close_stream(i, false);
                    return;
                }
            }
        }
        if !readable {
            return;
        }
        loop {
            let Some(sock) = self.streams[i].sock.as_mut() else {
                return;
            };
            match sock.read(&mut self.buf) {
                Ok(0) => {
                    self.close_stream(i, true);
                    return;
                }
                Ok(n) => {
                    let t = now_ns();
                    if !self.stream_bytes(i, n, t) {
                        self.close_stream(i, false);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close_stream(i, true);
                    return;
                }
            }
        }
    }

    fn stream_bytes(&mut self, i: usize, n: usize, t: u64) -> bool {
        let nodes = self.a.nodes.len() as u64;
        let publish_all = self.a.publish_all;
        let Run {
            streams,
            buf,
            c,
            same,
            cross,
            all,
            ids,
            publishing,
            ..
        } = self;
        let s = &mut streams[i];
        let mut data: &[u8] = &buf[..n];
        let rest: Vec<u8>;
        if s.state == State::Head {
            s.head.extend_from_slice(data);
            let Some(end) = sse::head_end(&s.head) else {
                return s.head.len() <= 64 * 1024;
            };
            match sse::parse_head(&s.head[..end]) {
                Ok(h) if h.status == 200 => {
                    s.dechunk = h.chunked.then(Dechunker::default);
                }
                _ => {
                    c.bad_status += 1;
                    return false;
                }
            }
            s.state = State::Body;
            rest = s.head.split_off(end);
            s.head = Vec::new();
            data = &rest;
        }
        let Stream {
            sse,
            seen,
            hello,
            dechunk,
            node,
            last_id,
            ..
        } = s;
        let node = *node;
        let counting = *publishing;
        let mut on = |e: &sse::Event| match e.kind() {
            b"m" => {
                let mut parts = e.data.split(|&b| b == b' ');
                let seq = parts.next().and_then(sse::parse_u64);
                let sent = parts.next().and_then(sse::parse_u64);
                let (Some(seq), Some(sent)) = (seq, sent) else {
                    c.bad_markers += 1;
                    return;
                };
                c.deliveries += 1;
                c.last_delivery_ns = t;
                c.per_node_deliveries[node] += 1;
                let lat = t.saturating_sub(sent) / 1000;
                all.record(lat);
                let from = if publish_all { seq % nodes } else { 0 };
                if from == node as u64 {
                    c.same += 1;
                    same.record(lat);
                } else {
                    c.cross += 1;
                    cross.record(lat);
                }
                match e.id {
                    None => c.no_id += 1,
                    Some(id) => {
                        if id <= *last_id {
                            c.out_of_order += 1;
                        }
                        *last_id = id;
                        if let Some(slot) = ids.get_mut(seq as usize) {
                            if *slot == 0 {
                                *slot = id;
                            } else if *slot != id {
                                c.id_mismatch += 1;
                            }
                        }
                    }
                }
                if seen.insert(seq) {
                    if counting {
                        c.unique_counted += 1;
                    }
                } else {
                    c.dup += 1;
                }
            }
            b"hello" => {
                if !*hello {
                    *hello = true;
                    c.hellos += 1;
                }
            }
            _ => {
                if let Some(id) = e.id {
                    *last_id = (*last_id).max(id);
                }
            }
        };
        match dechunk {
            Some(d) => d.feed(data, &mut |b: &[u8]| sse.feed(b, &mut on)).is_ok(),
            None => {
                sse.feed(data, &mut on);
                true
            }
        }
    }

    fn pub_event(&mut self, j: usize, readable: bool, writable: bool) {
        if j >= self.pubs.len() || self.pubs[j].closed {
            return;
        }
        let p = &mut self.pubs[j];
        if !p.connected && (readable || writable) {
            if !matches!(p.sock.take_error(), Ok(None)) {
                self.close_pub(j, "connect failed");
                return;
            }
            match p.sock.peer_addr() {
                Ok(_) => {
                    p.connected = true;
                    let _ = p.sock.set_nodelay(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => {
                    self.close_pub(j, "connect failed");
                    return;
                }
            }
        }
        if writable {
            self.flush_pub(j);
        }
        if !readable {
            return;
        }
        loop {
            let p = &mut self.pubs[j];
            match p.sock.read(&mut self.buf) {
                Ok(0) => {
                    self.close_pub(j, "closed by the server");
                    return;
                }
                Ok(n) => p.rr.push(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close_pub(j, "read error");
                    return;
                }
            }
        }
        let t = now_ns();
        loop {
            match self.pubs[j].rr.next() {
                Ok(Some(resp)) => {
                    let seq = self.pubs[j].inflight.pop_front();
                    match seq {
                        Some(seq) if resp.status == 201 => {
                            self.acked.insert(seq);
                            self.c.acked += 1;
                            self.c.last_ack_ns = t;
                            let id = serde_json::from_slice::<Value>(&resp.body)
                                .ok()
                                .and_then(|v| v["id"].as_u64());
                            if let (Some(id), Some(slot)) = (id, self.ids.get_mut(seq as usize)) {
                                if *slot == 0 {
                                    *slot = id;
                                } else if *slot != id {
                                    self.c.id_mismatch += 1;
                                }
                            }
                        }
                        _ => {
                            self.c.pub_errors += 1;
                            if self.c.pub_errors <= 3 {
                                eprintln!(
                                    "loadgen cluster: publish answered {}: {}",
                                    resp.status,
                                    String::from_utf8_lossy(&resp.body)
                                );
                            }
                        }
                    }
                    if resp.close {
                        self.close_pub(j, "Connection: close");
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("loadgen cluster: publish response: {}", e);
                    self.close_pub(j, "bad response");
                    return;
                }
            }
        }
    }

    fn close_pub(&mut self, j: usize, why: &str) {
        let p = &mut self.pubs[j];
        if p.closed {
            return;
        }
        p.closed = true;
        let _ = self.poll.registry().deregister(&mut p.sock);
        if self.publishing || !p.inflight.is_empty() {
            eprintln!(
                "loadgen cluster: publisher {} (node {}) {} ({} unanswered)",
                j,
                p.node,
                why,
                p.inflight.len()
            );
        }
        p.inflight.clear();
    }

    fn flush_pub(&mut self, j: usize) {
        let p = &mut self.pubs[j];
        while p.out_pos < p.out.len() {
            match p.sock.write(&p.out[p.out_pos..]) {
                Ok(0) => break,
                Ok(n) => p.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close_pub(j, "write error");
                    return;
                }
            }
        }
        p.out.clear();
        p.out_pos = 0;
    }

    /// Sends every message that is due; returns the wait until the next.
    fn send_due(&mut self, t0: Instant, next: &mut u64, rr: &mut [usize]) -> Duration {
        loop {
            if *next >= self.a.messages {
                return Duration::from_millis(50);
            }
            let due = t0 + Duration::from_secs_f64(*next as f64 / self.a.rate);
            let now = Instant::now();
            if due > now {
                return due - now;
            }
            let node = self.pub_node(*next);
            let mine: Vec<usize> = (0..self.pubs.len())
                .filter(|&j| self.pubs[j].node == node && !self.pubs[j].closed)
                .collect();
            if mine.is_empty() {
                // That node's publishers are gone: the message cannot be sent.
                self.c.pub_errors += 1;
                *next += 1;
                continue;
            }
            let j = mine[rr[node] % mine.len()];
            rr[node] += 1;
            let seq = *next;
            *next += 1;
            let t = now_ns();
            let body = format!("{} {}", seq, t);
            let req = format!(
                "POST /publish?room={}&event=m HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
                self.a.room,
                self.a.nodes[node].0,
                body.len(),
                body
            );
            let p = &mut self.pubs[j];
            p.out.extend_from_slice(req.as_bytes());
            p.inflight.push_back(seq);
            if self.c.first_send_ns == 0 {
                self.c.first_send_ns = t.max(1);
            }
            self.c.last_send_ns = t;
            self.c.sent += 1;
            self.flush_pub(j);
        }
    }

    fn outstanding(&self) -> usize {
        self.pubs
            .iter()
            .filter(|p| !p.closed)
            .map(|p| p.inflight.len())
            .sum()
    }
}

/// CPU of the nodes and of Redis at one moment.
#[derive(Clone)]
struct Cpu {
    nodes: Vec<Option<ProcSample>>,
    nodes_ns: Vec<Option<u64>>,
    redis: Option<ProcSample>,
    redis_ns: Option<u64>,
    me: Option<ProcSample>,
    machine: Option<stats::CpuTotals>,
}

fn cpu_now(a: &Args) -> Cpu {
    let pick = |pid: u32| if pid == 0 { None } else { stats::sample(pid) };
    Cpu {
        nodes: a.nodes.iter().map(|&(_, pid)| pick(pid)).collect(),
        nodes_ns: a.nodes.iter().map(|&(_, pid)| sched_ns(pid)).collect(),
        redis: pick(a.redis_pid),
        redis_ns: sched_ns(a.redis_pid),
        me: stats::sample(0),
        machine: stats::machine_cpu(),
    }
}

fn delta(a: Option<ProcSample>, b: Option<ProcSample>) -> Option<u64> {
    Some(b?.cpu_us.saturating_sub(a?.cpu_us))
}

fn delta_ns(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(b?.saturating_sub(a?))
}

/// The sum over the nodes, or None when one is unknown.
fn sum(v: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    v.sum()
}

fn ms(us: Option<u64>) -> Value {
    us.map(|v| json!(v as f64 / 1000.0)).unwrap_or(Value::Null)
}

fn per(total: Option<f64>, n: u64, digits: i32) -> Value {
    match total {
        Some(t) if n > 0 => json!(crate::round(t / n as f64, digits)),
        _ => Value::Null,
    }
}

/// `loadgen cluster ...`; the exit status.
pub fn run(argv: &[String]) -> i32 {
    let a = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen cluster: {}\n\n{}", e, USAGE);
            return 2;
        }
    };
    for &(addr, _) in &a.nodes {
        if !crate::wait_ready(addr, 10.0) {
            eprintln!("loadgen cluster: node {} does not accept connections", addr);
            return 1;
        }
    }
    let n_nodes = a.nodes.len();
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen cluster: {}", e);
            return 1;
        }
    };
    let deadline = Instant::now() + Duration::from_secs_f64(a.deadline);
    let mut r = Run {
        streams: Vec::with_capacity(a.streams),
        pubs: Vec::new(),
        c: Counts {
            per_node_deliveries: vec![0; n_nodes],
            ..Counts::default()
        },
        same: Histogram::new(),
        cross: Histogram::new(),
        all: Histogram::new(),
        ids: vec![0; a.messages as usize],
        acked: BitSet::default(),
        publishing: false,
        buf: vec![0; 256 * 1024],
        deadline,
        timed_out: false,
        poll,
        a,
    };
    let mut events = Events::with_capacity(4096);
    let t_run = Instant::now();

    // ---- 1. open the streams, stream i on node i mod N
    let connect_until = Instant::now() + Duration::from_secs(30);
    let mut next_stream = 0;
    while (r.c.hellos as usize) < r.a.streams && !r.timed_out && Instant::now() < connect_until {
        let mut pending = r
            .streams
            .iter()
            .filter(|s| !s.hello && s.state != State::Closed)
            .count();
        while next_stream < r.a.streams && pending < 500 {
            pending += 1;
            let i = next_stream;
            next_stream += 1;
            let node = i % n_nodes;
            let src = Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8);
            let mut s = Stream {
                sock: None,
                node,
                state: State::Closed,
                head: Vec::new(),
                dechunk: None,
                sse: SseParser::new(),
                seen: BitSet::default(),
                hello: false,
                last_id: 0,
            };
            match connect_from(src, r.a.nodes[node].0) {
                Ok(mut sock) => {
                    if r.poll
                        .registry()
                        .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        s.sock = Some(sock);
                        s.state = State::Connecting;
                    } else {
                        r.c.connect_errors += 1;
                    }
                }
                Err(e) => {
                    r.c.connect_errors += 1;
                    if r.c.connect_errors <= 3 {
                        eprintln!("loadgen cluster: connect: {}", e);
                    }
                }
            }
            r.streams.push(s);
        }
        if next_stream >= r.a.streams
            && r.streams
                .iter()
                .all(|s| s.hello || s.state == State::Closed)
        {
            break;
        }
        r.step(&mut events, Duration::from_millis(20));
    }
    let open = r.c.hellos;
    if (open as usize) < r.a.streams {
        eprintln!("loadgen cluster: {} of {} streams open", open, r.a.streams);
    }

    // ---- 2. publishers (on each publishing node), idle hold
    let pub_nodes: Vec<usize> = if r.a.publish_all {
        (0..n_nodes).collect()
    } else {
        vec![0]
    };
    for &node in &pub_nodes {
        for _ in 0..r.a.pub_conns {
            let j = r.pubs.len();
            match TcpStream::connect(SocketAddr::V4(r.a.nodes[node].0)) {
                Ok(mut sock) => {
                    if let Err(e) = r.poll.registry().register(
                        &mut sock,
                        Token(PUB_BASE + j),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        eprintln!("loadgen cluster: register: {}", e);
                        continue;
                    }
                    r.pubs.push(Publisher {
                        sock,
                        node,
                        connected: false,
                        closed: false,
                        out: Vec::new(),
                        out_pos: 0,
                        rr: ResponseReader::default(),
                        inflight: VecDeque::new(),
                    });
                }
                Err(e) => eprintln!("loadgen cluster: publisher connect: {}", e),
            }
        }
    }
    let hold_until = Instant::now() + Duration::from_secs_f64(r.a.idle.max(0.0));
    while !r.timed_out {
        let now = Instant::now();
        if now >= hold_until && r.pubs.iter().all(|p| p.connected || p.closed) {
            break;
        }
        r.step(
            &mut events,
            hold_until
                .saturating_duration_since(now)
                .max(Duration::from_millis(5)),
        );
    }
    let counted: Vec<usize> = (0..r.streams.len())
        .filter(|&i| r.streams[i].hello && r.streams[i].state == State::Body)
        .collect();

    // ---- 3. publish at the rate, alternating nodes
    let c0 = cpu_now(&r.a);
    let t0 = Instant::now();
    let t0_ns = now_ns();
    r.publishing = true;
    let mut next = 0u64;
    let mut rr = vec![0usize; n_nodes];
    while !r.timed_out && next < r.a.messages {
        let wait = r.send_due(t0, &mut next, &mut rr);
        if next >= r.a.messages {
            break;
        }
        r.step(&mut events, wait);
    }
    // ---- 4. drain: every answer, then every counted stream has every acked message
    let drain_until = Instant::now() + Duration::from_secs_f64(r.a.drain);
    let mut drained = true;
    loop {
        if r.timed_out {
            drained = false;
            break;
        }
        let live = counted
            .iter()
            .filter(|&&i| r.streams[i].state == State::Body)
            .count() as u64;
        if r.outstanding() == 0 && r.c.unique_counted >= r.c.acked * live {
            break;
        }
        if Instant::now() >= drain_until {
            drained = false;
            break;
        }
        r.step(&mut events, Duration::from_millis(5));
    }
    let c1 = cpu_now(&r.a);
    r.publishing = false;

    // ---- 5. count
    let mut missing = 0u64;
    let mut streams_missing = 0u64;
    for &i in &counted {
        let m = r.acked.missing_from(&r.streams[i].seen);
        missing += m;
        if m > 0 {
            streams_missing += 1;
        }
    }
    r.streams.clear();
    r.pubs.clear();

    let a = &r.a;
    let c = &r.c;
    let node_us: Vec<Option<u64>> = (0..n_nodes)
        .map(|k| delta(c0.nodes[k], c1.nodes[k]))
        .collect();
    let node_ns: Vec<Option<u64>> = (0..n_nodes)
        .map(|k| delta_ns(c0.nodes_ns[k], c1.nodes_ns[k]))
        .collect();
    let nodes_us = sum(node_us.iter().copied());
    let nodes_ns = sum(node_ns.iter().copied());
    let redis_us = delta(c0.redis, c1.redis);
    let redis_ns = delta_ns(c0.redis_ns, c1.redis_ns);
    let span = c.last_delivery_ns.saturating_sub(t0_ns) as f64 / 1e9;
    let pub_span = c.last_ack_ns.saturating_sub(c.first_send_ns) as f64 / 1e9;
    let wall = t0.elapsed().as_secs_f64();
    let tick_us = 1_000_000 / stats::clock_ticks();
    let (other_pct, irq_pct) = match (c0.machine, c1.machine) {
        (Some(m0), Some(m1)) if m1.all > m0.all => {
            let cpus = crate::num_cpus_online() as f64;
            let wall_us = (m1.all - m0.all) as f64 / cpus * tick_us as f64;
            let busy = (m1.busy - m0.busy).saturating_sub(m1.irq - m0.irq) * tick_us;
            let ours =
                nodes_us.unwrap_or(0) + redis_us.unwrap_or(0) + delta(c0.me, c1.me).unwrap_or(0);
            (
                Some(busy.saturating_sub(ours) as f64 / wall_us * 100.0),
                Some((m1.irq - m0.irq) as f64 * tick_us as f64 / wall_us * 100.0),
            )
        }
        _ => (None, None),
    };
    let q = |h: &Histogram, p: f64| ms(h.quantile(p));
    let report = json!({
        "scenario": a.scenario,
        "mode": "cluster",
        "nodes": n_nodes,
        "publish_to": if a.publish_all { "all" } else { "first" },
        "streams": a.streams,
        "streams_open": open,
        "messages": c.sent,
        "messages_acked": c.acked,
        "rate": a.rate,
        "publish_rate": if c.acked > 1 && pub_span > 0.0 { json!(crate::round((c.acked - 1) as f64 / pub_span, 1)) } else { Value::Null },
        "p50_ms": q(&r.all, 0.50),
        "p99_ms": q(&r.all, 0.99),
        "p999_ms": q(&r.all, 0.999),
        "max_ms": ms((r.all.n > 0).then_some(r.all.max)),
        "same_deliveries": c.same,
        "same_p50_ms": q(&r.same, 0.50),
        "same_p99_ms": q(&r.same, 0.99),
        "same_max_ms": ms((r.same.n > 0).then_some(r.same.max)),
        "cross_deliveries": c.cross,
        "cross_p50_ms": q(&r.cross, 0.50),
        "cross_p99_ms": q(&r.cross, 0.99),
        "cross_max_ms": ms((r.cross.n > 0).then_some(r.cross.max)),
        "missing": missing,
        "streams_missing": streams_missing,
        "dup": c.dup,
        "id_mismatch": c.id_mismatch,
        "no_id": c.no_id,
        "out_of_order": c.out_of_order,
        "deliveries": c.deliveries,
        "deliveries_per_node": c.per_node_deliveries,
        "deliveries_per_s": if span > 0.0 { json!((c.deliveries as f64 / span).round()) } else { Value::Null },
        "drained": drained,
        "drain_ms": if c.last_delivery_ns > c.last_send_ns { json!(crate::round((c.last_delivery_ns - c.last_send_ns) as f64 / 1e6, 1)) } else { Value::Null },
        "server_cpu_ms_publish": nodes_us.map(|u| json!(u / 1000)).unwrap_or(Value::Null),
        "node_cpu_ms": node_us.iter().map(|u| u.map(|u| json!(u / 1000)).unwrap_or(Value::Null)).collect::<Vec<_>>(),
        "node_cpu_ms_sched": node_ns.iter().map(|u| u.map(|u| json!(crate::round(u as f64 / 1e6, 1))).unwrap_or(Value::Null)).collect::<Vec<_>>(),
        "cpu_us_per_delivery": per(nodes_us.map(|u| u as f64), c.deliveries, 3),
        "cpu_us_per_delivery_sched": per(nodes_ns.map(|u| u as f64 / 1000.0), c.deliveries, 3),
        "node_cpu_us_per_msg_sched": per(nodes_ns.map(|u| u as f64 / 1000.0), c.acked, 1),
        "redis_cpu_ms": redis_us.map(|u| json!(u / 1000)).unwrap_or(Value::Null),
        "redis_cpu_ms_sched": redis_ns.map(|u| json!(crate::round(u as f64 / 1e6, 1))).unwrap_or(Value::Null),
        "redis_cpu_us_per_msg": per(redis_us.map(|u| u as f64), c.acked, 1),
        "redis_cpu_us_per_msg_sched": per(redis_ns.map(|u| u as f64 / 1000.0), c.acked, 1),
        "loadgen_cpu_pct": delta(c0.me, c1.me).map(|u| json!(crate::round(u as f64 / 1e4 / wall, 1))).unwrap_or(Value::Null),
        "other_cpu_pct": other_pct.map(|v| json!(crate::round(v, 1))).unwrap_or(Value::Null),
        "irq_cpu_pct": irq_pct.map(|v| json!(crate::round(v, 1))).unwrap_or(Value::Null),
        "connect_errors": c.connect_errors,
        "bad_status": c.bad_status,
        "closed_after_open": c.closed_by_server,
        "bad_markers": c.bad_markers,
        "pub_errors": c.pub_errors,
        "pub_unanswered": c.sent.saturating_sub(c.acked + c.pub_errors),
        "publish_secs": crate::round(wall, 3),
        "elapsed_s": crate::round(t_run.elapsed().as_secs_f64(), 3),
        "cpu_tick_us": tick_us,
        "room": a.room,
        "incomplete": r.timed_out,
    });
    let show = |k: &str| match &report[k] {
        Value::Null => "-".to_string(),
        v => v.to_string(),
    };
    println!("{:-<64}", "");
    for (label, keys) in [
        ("scenario / nodes", &["scenario", "nodes"][..]),
        ("streams open / asked", &["streams_open", "streams"]),
        ("messages sent / acked", &["messages", "messages_acked"]),
        ("publish rate achieved (msg/s)", &["publish_rate"]),
        (
            "deliveries (same node / cross)",
            &["same_deliveries", "cross_deliveries"],
        ),
        (
            "latency p50 / p99 / max, all (ms)",
            &["p50_ms", "p99_ms", "max_ms"],
        ),
        (
            "  same node (ms)",
            &["same_p50_ms", "same_p99_ms", "same_max_ms"],
        ),
        (
            "  across nodes (ms)",
            &["cross_p50_ms", "cross_p99_ms", "cross_max_ms"],
        ),
        ("missing / dup", &["missing", "dup"]),
        (
            "id differs / no id / id not increasing",
            &["id_mismatch", "no_id", "out_of_order"],
        ),
        (
            "nodes' CPU per delivery (µs, stat / sched)",
            &["cpu_us_per_delivery", "cpu_us_per_delivery_sched"],
        ),
        (
            "nodes' CPU per message (µs, sched)",
            &["node_cpu_us_per_msg_sched"],
        ),
        (
            "Redis CPU per message (µs, stat / sched)",
            &["redis_cpu_us_per_msg", "redis_cpu_us_per_msg_sched"],
        ),
        (
            "loadgen / other / irq CPU (% of a core)",
            &["loadgen_cpu_pct", "other_cpu_pct", "irq_cpu_pct"],
        ),
    ] {
        let v: Vec<String> = keys.iter().map(|k| show(k)).collect();
        println!("{:<44} {}", label, v.join(" / "));
    }
    println!("{:-<64}", "");
    println!("{}", report);
    if r.timed_out || open == 0 {
        if r.timed_out {
            eprintln!("loadgen cluster: hit the --deadline; the figures are partial");
        }
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn nodes_with_and_without_pids() {
        let a = args(&[
            "--node",
            "127.0.0.1:4001@17",
            "--node",
            "127.0.0.1:4002",
            "--publish-to",
            "first",
        ])
        .unwrap();
        assert_eq!(a.nodes.len(), 2);
        assert_eq!(a.nodes[0].1, 17);
        assert_eq!(a.nodes[1].1, 0);
        assert!(!a.publish_all);
        assert!(args(&["--node", "10.0.0.1:80"]).is_err(), "loopback only");
        assert!(args(&["--streams", "10"]).is_err(), "a node is required");
        assert!(args(&["--node", "127.0.0.1:1", "--rate", "0"]).is_err());
    }

    #[test]
    fn sums_need_every_part() {
        assert_eq!(sum([Some(1), Some(2)].into_iter()), Some(3));
        assert_eq!(sum([Some(1), None].into_iter()), None);
        assert_eq!(per(Some(10.0), 4, 1), json!(2.5));
        assert_eq!(per(Some(10.0), 0, 1), Value::Null);
    }
}

//! loadgen — a load generator for ssehub (a dev tool; not part of the server).
//!
//! One thread, one mio loop. It opens N event streams spread over several
//! loopback source addresses (127.0.0.2 …, bound before connect, so ephemeral
//! ports never run out), holds them idle, then publishes M messages at a rate
//! R (or as fast as K requests in flight allow) with a marker in each message
//! (`<seq> <send_ns>`, CLOCK_MONOTONIC of this process), so every delivery
//! gives a latency (publish write → subscriber read) and a per-stream bitset
//! counts missing and duplicated deliveries. The server's CPU time and RSS
//! come from /proc/PID before, after connecting, after the idle hold and after
//! publishing. It prints a table and one JSON line. Every run is bounded in
//! time (`--deadline`) and stops by itself; it talks to loopback only.
//!
//! With `--close-all` (scenario S6) it publishes nothing: once every stream is
//! open it closes them all in one burst and measures the server's CPU time
//! from just before the burst until `GET /healthz` reports no open stream.
//!
//! With `--restart-after SECS -- COMMAND…` (scenario S5, the reconnect storm)
//! it publishes, stops the server with SIGTERM after SECS, starts COMMAND (the
//! same server again) once it is gone, and lets every stream reconnect as a
//! browser's `EventSource` would (after its `retry:`, with `Last-Event-ID`);
//! see `storm.rs`.

#![recursion_limit = "512"]

mod close;
mod cluster;
mod sse;
mod stats;
mod storm;
mod summary;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;
use sse::{Dechunker, Event, ResponseReader, SseParser};
use stats::{BitSet, Histogram, ProcSample};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds on the monotonic clock since this process started.
#[inline]
fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

const USAGE: &str = "\
loadgen — load generator for ssehub (loopback only; every run stops by itself)

usage: loadgen --server 127.0.0.1:PORT [options]
       loadgen summarize RESULTS.jsonl [--markdown]   (median table of runs, goals)
       loadgen free-port                              (a free port on 127.0.0.1)
       loadgen cluster --node ADDR[@PID] ... [--help]  (C1: the nodes of a cluster, or one node)
  --server ADDR:PORT     the ssehub to load (must be a 127.x.y.z address)
  --pid PID              the server's process id, for CPU time and RSS from /proc (0: none)
  --scenario NAME        a label for the report (default: custom)
  --streams N            event streams to open (default 1000)
  --sources S            loopback source addresses 127.0.0.2 … 127.0.0.(1+S) (default 8)
  --connect-inflight C   connects in flight while opening (default 1000)
  --connect-timeout SECS give up on streams not open by then (default 30)
  --idle SECS            hold the open streams idle this long before publishing (default 1)
  --messages M           messages to publish (default 0: none; with --inflight, an upper bound)
  --rate R               publish R messages per second (needs --messages)
  --pub-conns P          keep-alive publisher connections in rate mode (default 4, pipelined)
  --inflight K           instead of a rate: K publisher connections, one request in flight each
  --duration SECS        with --inflight: publish for this long (default 10)
  --payload BYTES        pad every message body with this many extra bytes (default 0)
  --drain SECS           after the last publish, wait this long at most for deliveries (default 5)
  --deadline SECS        hard limit for the whole run; past it, report and exit 1 (default 120)
  --close-all            after the idle hold, close every stream in one burst and measure
                         the server's CPU until GET /healthz counts 0 streams (no publishing)
  --close-timeout SECS   stop waiting for those 0 streams after this long (default 30)
  --close-reset          with --close-all: abortive closes (SO_LINGER 0, RST instead of FIN)
  --room NAME            room to use (default: a fresh bench-PID-TIME, so history is empty)
  --rooms K              with --restart-after: K rooms NAME-0 … NAME-(K-1), stream i in room
                         i mod K, message j to room j mod K (default 1: the room NAME)
  --restart-after SECS   the reconnect storm (S5): publish at --rate, after SECS send the
                         server (--pid) SIGTERM, once it is gone start the command after `--`;
                         streams reconnect after their retry: with Last-Event-ID
  --restart-log FILE     the new server's stderr (default: ours)
  --whole-timeout SECS   give up waiting for every stream to be whole again (default 30)
  --after-whole SECS     keep publishing this long after every stream is whole (default 1)
  -- COMMAND ARGS…       with --restart-after: how to start the server again
  --wait-ready SECS      wait until the server accepts connections (default 10)
  --json                 print only the JSON line
  --help
Exit status: 0 when the run completed (even if figures miss goals), 1 when it hit
the deadline or could not open any stream, 2 for bad arguments.";

#[derive(Clone, Debug)]
struct Args {
    server: SocketAddrV4,
    pid: u32,
    scenario: String,
    streams: usize,
    sources: u32,
    connect_inflight: usize,
    connect_timeout: f64,
    idle: f64,
    messages: u64,
    rate: f64,
    pub_conns: usize,
    inflight: usize,
    duration: f64,
    payload: usize,
    drain: f64,
    deadline: f64,
    room: String,
    wait_ready: f64,
    json_only: bool,
    close_all: bool,
    close_timeout: f64,
    close_reset: bool,
    rooms: usize,
    restart_after: f64,
    restart_cmd: Vec<String>,
    restart_log: String,
    whole_timeout: f64,
    after_whole: f64,
}

fn die(msg: &str) -> ! {
    eprintln!("loadgen: {}\n\n{}", msg, USAGE);
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080),
        pid: 0,
        scenario: "custom".into(),
        streams: 1000,
        sources: 8,
        connect_inflight: 1000,
        connect_timeout: 30.0,
        idle: 1.0,
        messages: 0,
        rate: 0.0,
        pub_conns: 4,
        inflight: 0,
        duration: 10.0,
        payload: 0,
        drain: 5.0,
        deadline: 120.0,
        room: String::new(),
        wait_ready: 10.0,
        json_only: false,
        close_all: false,
        close_timeout: 30.0,
        close_reset: false,
        rooms: 1,
        restart_after: 0.0,
        restart_cmd: Vec::new(),
        restart_log: String::new(),
        whole_timeout: 30.0,
        after_whole: 1.0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let mut server_given = false;
    while i < argv.len() {
        let flag = argv[i].as_str();
        if flag == "--help" || flag == "-h" {
            println!("{}", USAGE);
            std::process::exit(0);
        }
        if flag == "--json" {
            a.json_only = true;
            i += 1;
            continue;
        }
        if flag == "--close-all" {
            a.close_all = true;
            i += 1;
            continue;
        }
        if flag == "--close-reset" {
            a.close_reset = true;
            i += 1;
            continue;
        }
        if flag == "--" {
            a.restart_cmd = argv[i + 1..].to_vec();
            break;
        }
        let Some(val) = argv.get(i + 1) else {
            die(&format!("{} needs a value", flag))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: &str) -> T {
            v.parse()
                .unwrap_or_else(|_| die(&format!("bad value {:?} for {}", v, flag)))
        }
        match flag {
            "--server" => {
                let sa: SocketAddr = val
                    .parse()
                    .unwrap_or_else(|_| die(&format!("bad --server {:?}", val)));
                match sa {
                    SocketAddr::V4(v4) if v4.ip().is_loopback() => a.server = v4,
                    _ => die("--server must be an IPv4 loopback address (127.x.y.z:PORT)"),
                }
                server_given = true;
            }
            "--pid" => a.pid = num(flag, val),
            "--scenario" => a.scenario = val.clone(),
            "--streams" => a.streams = num(flag, val),
            "--sources" => a.sources = num(flag, val),
            "--connect-inflight" => a.connect_inflight = num(flag, val),
            "--connect-timeout" => a.connect_timeout = num(flag, val),
            "--idle" => a.idle = num(flag, val),
            "--messages" => a.messages = num(flag, val),
            "--rate" => a.rate = num(flag, val),
            "--pub-conns" => a.pub_conns = num(flag, val),
            "--inflight" => a.inflight = num(flag, val),
            "--duration" => a.duration = num(flag, val),
            "--payload" => a.payload = num(flag, val),
            "--drain" => a.drain = num(flag, val),
            "--deadline" => a.deadline = num(flag, val),
            "--room" => a.room = val.clone(),
            "--wait-ready" => a.wait_ready = num(flag, val),
            "--close-timeout" => a.close_timeout = num(flag, val),
            "--rooms" => a.rooms = num(flag, val),
            "--restart-after" => a.restart_after = num(flag, val),
            "--restart-log" => a.restart_log = val.clone(),
            "--whole-timeout" => a.whole_timeout = num(flag, val),
            "--after-whole" => a.after_whole = num(flag, val),
            _ => die(&format!("unknown flag {}", flag)),
        }
        i += 2;
    }
    if !server_given {
        die("--server is required");
    }
    if a.sources == 0 || a.sources > 250 {
        die("--sources must be 1..=250");
    }
    if a.connect_inflight == 0 || a.pub_conns == 0 {
        die("--connect-inflight and --pub-conns must be at least 1");
    }
    if a.inflight == 0
        && a.messages > 0
        && a.rate.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
    {
        die("--messages needs --rate R (or use --inflight K)");
    }
    if a.deadline <= 0.0 || a.deadline > 86400.0 {
        die("--deadline must be in (0, 86400] seconds");
    }
    if a.close_all && (a.messages > 0 || a.inflight > 0) {
        die("--close-all publishes nothing: drop --messages and --inflight");
    }
    if a.restart_after > 0.0 {
        if a.restart_cmd.is_empty() || a.pid == 0 {
            die("--restart-after needs --pid and the command to start the server again after --");
        }
        if a.messages == 0 || a.inflight > 0 || a.close_all {
            die("--restart-after publishes at a rate: give --messages M --rate R (M an upper bound)");
        }
        if !(a.whole_timeout > 0.0
            && a.whole_timeout <= 600.0
            && (0.0..=600.0).contains(&a.after_whole))
        {
            die("--whole-timeout must be in (0, 600] and --after-whole in [0, 600] seconds");
        }
    } else if !a.restart_cmd.is_empty() {
        die("a command after -- is only for --restart-after");
    }
    if a.rooms == 0 || a.rooms > 1000 || (a.rooms > 1 && a.restart_after <= 0.0) {
        die("--rooms must be 1..=1000, and above 1 only with --restart-after");
    }
    if !(a.close_timeout > 0.0 && a.close_timeout <= 600.0) {
        die("--close-timeout must be in (0, 600] seconds");
    }
    if a.inflight > 0 && !(a.duration > 0.0 && a.duration <= 600.0) {
        die("--duration must be in (0, 600] seconds");
    }
    if a.room.is_empty() {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        a.room = format!("bench-{}-{}", std::process::id(), ms);
    }
    if a.room.is_empty()
        || a.room.len() > 58
        || !a
            .room
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c))
    {
        die("--room must be 1-58 characters of A-Z a-z 0-9 _ - .");
    }
    a
}

fn raise_nofile() -> u64 {
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                #[allow(clippy::unnecessary_cast)]
                return r.rlim_max as u64;
            }
        }
        #[allow(clippy::unnecessary_cast)]
        let cur = r.rlim_cur as u64;
        cur
    }
}

/// A non-blocking TCP connect from `src` (port chosen at connect time).
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
    fn sin(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // From here the std stream owns the fd and closes it on every return.
        let std_stream = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sa = sin(src, 0);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let da = sin(*dst.ip(), dst.port());
        if libc::connect(fd, &da as *const _ as *const libc::sockaddr, len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(std_stream))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SubState {
    Waiting,
    Connecting,
    Head,
    Body,
    Closed,
}

struct Sub {
    sock: Option<TcpStream>,
    state: SubState,
    head: Vec<u8>,
    dechunk: Option<Dechunker>,
    sse: SseParser,
    attempts: u32,
    /// Its room (an index into the room names).
    room: usize,
    /// The reconnection time (ms): the last `retry:` seen, as `EventSource` keeps it.
    retry_ms: u64,
    /// The request of the current connection (with `Last-Event-ID` on a reconnect).
    req: Vec<u8>,
    tr: Track,
}

/// What a stream's events tell, across its connections.
#[derive(Default)]
struct Track {
    /// Sequence numbers (from the data) received.
    seen: BitSet,
    /// Event ids received, minus the id base (S5).
    seen_ids: BitSet,
    /// Had its hello once (the stream opened).
    hello: bool,
    /// The current connection had its hello.
    conn_hello: bool,
    /// Had its hello before publishing started (so it is owed every message).
    counted: bool,
    /// `EventSource`'s last event ID: set by every dispatched block with an
    /// `id:` field (an empty or non-numeric one clears it), kept across connections.
    last_event_id: Option<u64>,
    /// S5: had a hello from the restarted server, and when (ns).
    back: bool,
    back_ns: u64,
    /// S5: that hello's `last_id`; events up to it are the replay.
    replay_upto: u64,
    /// S5: when it first had an id at or above `replay_upto` (ns).
    whole_ns: u64,
    /// When its last reconnection was due (ns): the close + its `retry:`.
    due_ns: u64,
}

struct Pub {
    sock: TcpStream,
    connected: bool,
    closed: bool,
    out: Vec<u8>,
    out_pos: usize,
    rr: ResponseReader,
    inflight: VecDeque<u64>,
}

#[derive(Default, Debug)]
struct Counters {
    connects_started: u64,
    connect_errors: u64,
    connect_retries: u64,
    hellos: u64,
    first_connect_ns: u64,
    last_hello_ns: u64,
    bad_status: u64,
    bad_status_last: u16,
    protocol_errors: u64,
    closed_by_server: u64,
    closed_after_hello: u64,
    busy: u64,
    gaps: u64,
    heartbeats: u64,
    presence: u64,
    id_only: u64,
    other_events: u64,
    bad_markers: u64,
    bytes_read: u64,
    reads: u64,
    deliveries: u64,
    unique: u64,
    dup: u64,
    last_delivery_ns: u64,
    // publisher
    sent: u64,
    acked: u64,
    pub_errors: u64,
    pub_status_last: u16,
    pub_unanswered: u64,
    first_send_ns: u64,
    last_send_ns: u64,
    last_ack_ns: u64,
    /// Unique deliveries held by streams that are still open and counted.
    live_unique: u64,
    live_counted: u64,
    /// Per second of publishing (by send time): deliveries and worst latency (µs).
    timeline: Vec<(u64, u64)>,
    // the reconnect storm (S5)
    /// Hellos on later connections of streams that had opened.
    rehellos: u64,
    /// Streams back on the restarted server, and the last of those hellos.
    backs: u64,
    last_back_ns: u64,
    /// Streams that had the replay up to their hello's `last_id`.
    wholes: u64,
    /// Deliveries of the replay (ids up to the hello's `last_id`), not in the latency.
    replayed: u64,
    /// `m` events whose id was missing or below the id base.
    bad_ids: u64,
    /// Ids received twice by one stream.
    dup_ids: u64,
    /// Reconnections scheduled (a close or a failed connect, then `retry:`).
    reconnects: u64,
    /// Connects that failed while reconnecting (refused while the server was down).
    reconnect_failures: u64,
    /// Streams closed after a second `retry:` (a graceful stop): (count, min, max ms),
    /// while reconnecting (the first stop) and after it (the final stop).
    stop_retry: (u64, u64, u64),
    end_retry: (u64, u64, u64),
    /// Messages due while no publisher connection was up (not sent).
    pub_skipped: u64,
    pub_reconnects: u64,
    pub_closes: u64,
}

struct Runner {
    a: Args,
    poll: Poll,
    events: Events,
    subs: Vec<Sub>,
    pubs: Vec<Pub>,
    to_connect: VecDeque<usize>,
    connecting: usize,
    c: Counters,
    hist: Histogram,
    acked: BitSet,
    /// Acknowledged sequence numbers, and ids minus `id_base`, per room.
    acked_seq: Vec<BitSet>,
    acked_ids: Vec<BitSet>,
    buf: Vec<u8>,
    /// Per room: the stream request's head without its closing blank line.
    requests: Vec<Vec<u8>>,
    room_names: Vec<String>,
    deadline: Instant,
    timed_out: bool,
    /// Whether subscribers' `m` deliveries are recorded (publish phase).
    next_seq: u64,
    publishing: bool,
    pub_rr: usize,
    /// Streams reconnect as `EventSource` does (S5).
    reconnect: bool,
    /// The server has been restarted (S5): a hello now means "back".
    restarted: bool,
    /// Reconnections due: (when, stream).
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Ids above this are the ones published in this run (S5; 0: not tracked).
    id_base: u64,
}

const PUB_BASE: usize = 1 << 30;
const PUB_PIPELINE_CAP: usize = 4096;

impl Runner {
    fn new(a: Args) -> io::Result<Runner> {
        let deadline = Instant::now() + Duration::from_secs_f64(a.deadline);
        let room_names: Vec<String> = if a.rooms <= 1 {
            vec![a.room.clone()]
        } else {
            (0..a.rooms).map(|k| format!("{}-{}", a.room, k)).collect()
        };
        let requests = room_names
            .iter()
            .map(|room| {
                format!(
                    "GET /events?room={} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: ssehub-loadgen\r\n",
                    room, a.server
                )
                .into_bytes()
            })
            .collect();
        let mut subs = Vec::with_capacity(a.streams);
        for i in 0..a.streams {
            subs.push(Sub {
                sock: None,
                state: SubState::Waiting,
                head: Vec::new(),
                dechunk: None,
                sse: SseParser::new(),
                attempts: 0,
                room: i % room_names.len(),
                retry_ms: 2000,
                req: Vec::new(),
                tr: Track::default(),
            });
        }
        Ok(Runner {
            to_connect: (0..a.streams).collect(),
            a,
            poll: Poll::new()?,
            events: Events::with_capacity(8192),
            subs,
            pubs: Vec::new(),
            connecting: 0,
            c: Counters::default(),
            hist: Histogram::new(),
            acked: BitSet::default(),
            acked_seq: vec![BitSet::default(); room_names.len()],
            acked_ids: vec![BitSet::default(); room_names.len()],
            buf: vec![0; 256 * 1024],
            requests,
            room_names,
            deadline,
            timed_out: false,
            next_seq: 0,
            publishing: false,
            pub_rr: 0,
            reconnect: false,
            restarted: false,
            timers: BinaryHeap::new(),
            id_base: 0,
        })
    }

    /// Polls once (at most `max_wait`) and handles what happened.
    fn step(&mut self, max_wait: Duration) {
        let now = Instant::now();
        if now >= self.deadline {
            self.timed_out = true;
            return;
        }
        let wait = max_wait.min(self.deadline - now);
        if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("loadgen: poll: {}", e);
                self.timed_out = true;
            }
            return;
        }
        let toks: Vec<(usize, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                let hup = e.is_read_closed() || e.is_error();
                (
                    e.token().0,
                    e.is_readable() || hup,
                    e.is_writable() || e.is_error(),
                    hup,
                )
            })
            .collect();
        for (t, r, w, hup) in toks {
            if t >= PUB_BASE {
                self.pub_event(t - PUB_BASE, r, w, hup);
            } else if t < self.subs.len() {
                self.sub_event(t, r, w, hup);
            }
        }
    }

    // ---------------------------------------------------------------- streams

    fn start_connects(&mut self, accept_new: bool) {
        if !accept_new {
            return;
        }
        while self.connecting < self.a.connect_inflight {
            let Some(i) = self.to_connect.pop_front() else {
                break;
            };
            let src = Ipv4Addr::new(127, 0, 0, 2 + (i as u32 % self.a.sources) as u8);
            if self.c.first_connect_ns == 0 {
                self.c.first_connect_ns = now_ns().max(1);
            }
            self.c.connects_started += 1;
            let sub = &mut self.subs[i];
            sub.attempts = sub.attempts.saturating_add(1);
            // The request, with the header EventSource adds on a reconnection.
            sub.req.clear();
            sub.req.extend_from_slice(&self.requests[sub.room]);
            if let Some(id) = sub.tr.last_event_id {
                sub.req
                    .extend_from_slice(format!("Last-Event-ID: {}\r\n", id).as_bytes());
            }
            sub.req.extend_from_slice(b"\r\n");
            match connect_from(src, self.a.server) {
                Ok(mut s) => {
                    if let Err(e) = self.poll.registry().register(
                        &mut s,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        eprintln!("loadgen: register: {}", e);
                        self.c.connect_errors += 1;
                        continue;
                    }
                    let sub = &mut self.subs[i];
                    sub.sock = Some(s);
                    sub.state = SubState::Connecting;
                    self.connecting += 1;
                }
                Err(e) => {
                    self.c.connect_errors += 1;
                    if self.c.connect_errors <= 3 {
                        eprintln!("loadgen: connect from {}: {}", src, e);
                    }
                    if self.reconnect && self.subs[i].tr.hello {
                        self.c.reconnect_failures += 1;
                        self.schedule_reconnect(i);
                    } else if self.subs[i].attempts < 3 {
                        self.c.connect_retries += 1;
                        self.to_connect.push_back(i);
                    }
                    // Running out of fds or addresses: stop trying this round.
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::EADDRNOTAVAIL)
                    ) {
                        break;
                    }
                }
            }
        }
    }

    /// Closes stream `i`; `failed_open` when it never got its hello.
    fn close_sub(&mut self, i: usize, why_server: bool) {
        let sub = &mut self.subs[i];
        if sub.state == SubState::Closed || sub.state == SubState::Waiting {
            return;
        }
        if let Some(mut s) = sub.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        let was_open = sub.tr.conn_hello;
        if !was_open {
            self.connecting -= 1;
        }
        sub.state = SubState::Closed;
        sub.tr.conn_hello = false;
        if why_server {
            self.c.closed_by_server += 1;
        }
        if was_open && sub.sse.retries >= 2 {
            // A second `retry:` on one connection: the server's graceful stop.
            let v = sub.sse.retry.unwrap_or(0);
            let r = if self.reconnect {
                &mut self.c.stop_retry
            } else {
                &mut self.c.end_retry
            };
            r.1 = if r.0 == 0 { v } else { r.1.min(v) };
            r.2 = r.2.max(v);
            r.0 += 1;
        }
        if let Some(ms) = sub.sse.retry {
            sub.retry_ms = ms;
        }
        if was_open {
            self.c.closed_after_hello += 1;
            if sub.tr.counted {
                sub.tr.counted = false;
                self.c.live_counted -= 1;
                self.c.live_unique -= sub.tr.seen.count;
            }
        }
        if self.reconnect && sub.tr.hello {
            // EventSource: reconnect after the reconnection time, whatever ended it.
            if !was_open {
                self.c.reconnect_failures += 1;
            }
            sub.head.clear();
            sub.dechunk = None;
            sub.sse = SseParser::new();
            self.schedule_reconnect(i);
        } else if !was_open && sub.attempts < 3 && !self.publishing {
            // Never opened: try again (a reset under a connect burst, a busy reply).
            sub.state = SubState::Waiting;
            sub.head.clear();
            sub.dechunk = None;
            sub.sse = SseParser::new();
            self.c.connect_retries += 1;
            self.to_connect.push_back(i);
        }
    }

    /// Stream `i` connects again after its reconnection time.
    fn schedule_reconnect(&mut self, i: usize) {
        let sub = &mut self.subs[i];
        sub.state = SubState::Waiting;
        sub.tr.due_ns = now_ns() + sub.retry_ms * 1_000_000;
        let at = Instant::now() + Duration::from_millis(sub.retry_ms);
        self.timers.push(Reverse((at, i)));
        self.c.reconnects += 1;
    }

    /// Queues the reconnections that are due.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.subs[i].state == SubState::Waiting {
                self.to_connect.push_back(i);
            }
        }
    }

    /// Streams whose connection is up and past its response head.
    fn streams_in_body(&self) -> usize {
        self.subs
            .iter()
            .filter(|s| s.state == SubState::Body)
            .count()
    }

    fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Whether every stream that opened has every id acknowledged for its room.
    fn every_stream_has_every_ack(&self) -> bool {
        self.subs
            .iter()
            .filter(|s| s.tr.hello)
            .all(|s| self.acked_ids[s.room].missing_from(&s.tr.seen_ids) == 0)
    }

    /// Closes every socket of a stream in one burst, in opening order, as a
    /// plain `close(2)` each (no deregister: closing leaves the epoll set);
    /// with `reset`, an abortive close (`SO_LINGER` 0: RST instead of FIN).
    /// Returns how many of them were open streams (had their hello).
    fn close_every_stream(&mut self, reset: bool) -> u64 {
        let mut closed = 0;
        for sub in self.subs.iter_mut() {
            if let Some(sock) = sub.sock.take() {
                if reset {
                    let lg = libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    };
                    // SAFETY: a valid socket and a linger struct of the right size.
                    unsafe {
                        libc::setsockopt(
                            sock.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_LINGER,
                            &lg as *const _ as *const libc::c_void,
                            std::mem::size_of::<libc::linger>() as libc::socklen_t,
                        );
                    }
                }
                drop(sock);
                if sub.tr.hello && sub.state == SubState::Body {
                    closed += 1;
                }
                sub.state = SubState::Closed;
            }
        }
        closed
    }

    /// `hup`: the peer has closed (or the socket failed); read on to the end
    /// then, since no further edge will come.
    fn sub_event(&mut self, i: usize, readable: bool, writable: bool, hup: bool) {
        if self.subs[i].state == SubState::Connecting {
            if !writable && !readable {
                return;
            }
            // Writing the request tells all: it fails with the connect error,
            // would block while the handshake is still going, or goes out.
            // (Fewer syscalls than getsockopt + getpeername + a reregister.)
            let Sub { sock, req, .. } = &mut self.subs[i];
            match sock.as_mut().unwrap().write(req) {
                Ok(n) if n == req.len() => {}
                Ok(_) => {
                    self.c.protocol_errors += 1;
                    self.close_sub(i, false);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return, // not yet
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
                Err(e) => {
                    self.c.connect_errors += 1;
                    if self.c.connect_errors <= 3 && !self.reconnect {
                        eprintln!("loadgen: connect: {}", e);
                    }
                    self.close_sub(i, false);
                    return;
                }
            }
            self.subs[i].state = SubState::Head;
            // The response may already be here; fall through to read it.
        }
        if !readable {
            return;
        }
        loop {
            let sub = &mut self.subs[i];
            let Some(sock) = sub.sock.as_mut() else {
                return;
            };
            match sock.read(&mut self.buf) {
                Ok(0) => {
                    self.close_sub(i, true);
                    return;
                }
                Ok(n) => {
                    let t = now_ns();
                    self.c.reads += 1;
                    self.c.bytes_read += n as u64;
                    if !self.sub_bytes(i, n, t) {
                        self.c.protocol_errors += 1;
                        self.close_sub(i, false);
                        return;
                    }
                    if n < self.buf.len() && !hup {
                        // A short read on a stream socket drained it (epoll(7)).
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close_sub(i, true);
                    return;
                }
            }
        }
    }

    /// Handles `n` bytes in `self.buf` read by stream `i` at time `t`.
    fn sub_bytes(&mut self, i: usize, n: usize, t: u64) -> bool {
        let Runner {
            subs,
            buf,
            c,
            hist,
            connecting,
            restarted,
            id_base,
            ..
        } = self;
        let sub = &mut subs[i];
        let mut data: &[u8] = &buf[..n];
        let rest: Vec<u8>;
        if sub.state == SubState::Head {
            sub.head.extend_from_slice(data);
            let Some(end) = sse::head_end(&sub.head) else {
                return sub.head.len() <= 64 * 1024;
            };
            let head = match sse::parse_head(&sub.head[..end]) {
                Ok(h) => h,
                Err(e) => {
                    if c.protocol_errors < 3 {
                        eprintln!("loadgen: stream response: {}", e);
                    }
                    return false;
                }
            };
            if head.status != 200 || !head.content_type.starts_with("text/event-stream") {
                c.bad_status += 1;
                c.bad_status_last = head.status;
                return false;
            }
            sub.dechunk = if head.chunked {
                Some(Dechunker::default())
            } else {
                None
            };
            sub.state = SubState::Body;
            // What came after the head is the body's start: fed below.
            rest = sub.head.split_off(end);
            sub.head = Vec::new();
            data = &rest;
        }
        if sub.state != SubState::Body {
            return true;
        }
        let Sub {
            sse, dechunk, tr, ..
        } = sub;
        let ctx = EvCtx {
            t,
            id_base: *id_base,
            restarted: *restarted,
        };
        let mut cb = |e: &Event| on_event(e, &ctx, c, hist, tr, connecting);
        match dechunk {
            Some(d) => d.feed(data, &mut |b: &[u8]| sse.feed(b, &mut cb)).is_ok(),
            None => {
                sse.feed(data, &mut cb);
                true
            }
        }
    }

    // ------------------------------------------------------------- publishers

    fn open_publishers(&mut self, k: usize) -> io::Result<()> {
        for j in 0..k {
            let mut s = TcpStream::connect(SocketAddr::V4(self.a.server))?;
            self.poll.registry().register(
                &mut s,
                Token(PUB_BASE + j),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            self.pubs.push(Pub {
                sock: s,
                connected: false,
                closed: false,
                out: Vec::new(),
                out_pos: 0,
                rr: ResponseReader::default(),
                inflight: VecDeque::new(),
            });
        }
        Ok(())
    }

    fn pub_event(&mut self, j: usize, readable: bool, writable: bool, hup: bool) {
        if j >= self.pubs.len() || self.pubs[j].closed {
            return;
        }
        if !self.pubs[j].connected && (writable || readable) {
            let p = &mut self.pubs[j];
            match p.sock.take_error() {
                Ok(None) => {}
                _ => {
                    self.close_pub(j, "connect failed");
                    return;
                }
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
        if readable {
            // The answers read before an end or an error still count: a
            // server that stops answers what it has, then closes.
            let mut end = None;
            loop {
                let p = &mut self.pubs[j];
                match p.sock.read(&mut self.buf) {
                    Ok(0) => {
                        end = Some("closed by server");
                        break;
                    }
                    Ok(n) => {
                        p.rr.push(&self.buf[..n]);
                        if n < self.buf.len() && !hup {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        end = Some("read error");
                        break;
                    }
                }
            }
            let t = now_ns();
            loop {
                let p = &mut self.pubs[j];
                match p.rr.next() {
                    Ok(Some(resp)) => {
                        let seq = p.inflight.pop_front();
                        if resp.status == 201 {
                            if let Some(seq) = seq {
                                self.acked.insert(seq);
                                let room = (seq % self.room_names.len() as u64) as usize;
                                self.acked_seq[room].insert(seq);
                                if self.id_base > 0 {
                                    match close::json_u64(&resp.body, "id") {
                                        Some(id)
                                            if id > self.id_base
                                                && id - self.id_base < MAX_REL_ID =>
                                        {
                                            self.acked_ids[room].insert(id - self.id_base);
                                        }
                                        _ => self.c.bad_ids += 1,
                                    }
                                }
                                self.c.acked += 1;
                                self.c.last_ack_ns = t;
                            }
                        } else {
                            self.c.pub_errors += 1;
                            self.c.pub_status_last = resp.status;
                            if self.c.pub_errors <= 3 {
                                eprintln!(
                                    "loadgen: publish answered {}: {}",
                                    resp.status,
                                    String::from_utf8_lossy(&resp.body)
                                );
                            }
                        }
                        if resp.close {
                            self.close_pub(j, "Connection: close");
                            return;
                        }
                        if self.a.inflight > 0 && end.is_none() {
                            self.fill_inflight(j);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("loadgen: publish response: {}", e);
                        self.close_pub(j, "bad response");
                        return;
                    }
                }
            }
            if let Some(why) = end {
                self.close_pub(j, why);
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
        let lost = p.inflight.len() as u64;
        p.inflight.clear();
        self.c.pub_unanswered += lost;
        self.c.pub_closes += 1;
        if (self.publishing || lost > 0) && (!self.reconnect || self.c.pub_closes <= 4) {
            eprintln!(
                "loadgen: publisher {} {} ({} requests unanswered)",
                j, why, lost
            );
        }
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
        if p.out_pos >= p.out.len() {
            p.out.clear();
            p.out_pos = 0;
        }
    }

    /// Reconnects the publisher connections that have closed (S5).
    fn reopen_pubs(&mut self) {
        for j in 0..self.pubs.len() {
            if !self.pubs[j].closed {
                continue;
            }
            let Ok(mut s) = TcpStream::connect(SocketAddr::V4(self.a.server)) else {
                continue;
            };
            if self
                .poll
                .registry()
                .register(
                    &mut s,
                    Token(PUB_BASE + j),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            self.c.pub_reconnects += 1;
            self.pubs[j] = Pub {
                sock: s,
                connected: false,
                closed: false,
                out: Vec::new(),
                out_pos: 0,
                rr: ResponseReader::default(),
                inflight: VecDeque::new(),
            };
        }
    }

    /// Sends message `seq` on publisher `j`, time-stamped right before the write.
    fn send(&mut self, j: usize, seq: u64) {
        let room = &self.room_names[(seq % self.room_names.len() as u64) as usize];
        let t = now_ns();
        let mut body = format!("{} {}", seq, t);
        if self.a.payload > 0 {
            body.push(' ');
            body.extend(std::iter::repeat_n('x', self.a.payload));
        }
        let req = format!(
            "POST /publish?room={}&event=m HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
            room,
            self.a.server,
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

    fn fill_inflight(&mut self, j: usize) {
        if !self.publishing || self.pubs[j].closed || !self.pubs[j].connected {
            return;
        }
        if self.a.messages > 0 && self.next_seq >= self.a.messages {
            return;
        }
        if self.pubs[j].inflight.is_empty() {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.send(j, seq);
        }
    }

    /// Rate mode: sends every message whose time has come; returns the wait
    /// until the next one.
    fn send_due(&mut self, t0: Instant) -> Duration {
        let per = 1.0 / self.a.rate;
        loop {
            if self.next_seq >= self.a.messages {
                return Duration::from_millis(50);
            }
            let due = t0 + Duration::from_secs_f64(self.next_seq as f64 * per);
            let now = Instant::now();
            if due > now {
                return due - now;
            }
            // The next open publisher connection with room in its pipeline.
            let n = self.pubs.len();
            let mut chosen = None;
            for k in 0..n {
                let j = (self.pub_rr + k) % n;
                let p = &self.pubs[j];
                if !p.closed && p.connected && p.inflight.len() < PUB_PIPELINE_CAP {
                    chosen = Some(j);
                    break;
                }
            }
            let Some(j) = chosen else {
                if self.reconnect {
                    // An open loop: a message due while no connection is up is not sent.
                    self.next_seq += 1;
                    self.c.pub_skipped += 1;
                    continue;
                }
                return Duration::from_millis(1);
            };
            self.pub_rr = (j + 1) % n;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.send(j, seq);
        }
    }

    fn outstanding(&self) -> usize {
        self.pubs
            .iter()
            .filter(|p| !p.closed)
            .map(|p| p.inflight.len())
            .sum()
    }

    fn open_pubs(&self) -> usize {
        self.pubs
            .iter()
            .filter(|p| !p.closed && p.connected)
            .count()
    }
}

/// Ids (minus the id base) past this are taken for garbage.
const MAX_REL_ID: u64 = 1 << 26;

/// What every event of one read shares.
struct EvCtx {
    /// When the read happened (ns).
    t: u64,
    id_base: u64,
    restarted: bool,
}

/// What a subscriber does with one event.
#[inline]
fn on_event(
    e: &Event,
    x: &EvCtx,
    c: &mut Counters,
    hist: &mut Histogram,
    tr: &mut Track,
    connecting: &mut usize,
) {
    let t = x.t;
    if e.has_id {
        // WHATWG: a dispatched block's id field sets the last event ID.
        tr.last_event_id = e.id;
        if let Some(id) = e.id {
            if tr.back && tr.whole_ns == 0 && id >= tr.replay_upto {
                tr.whole_ns = t;
                c.wholes += 1;
            }
        }
    }
    match e.kind() {
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
            let replayed = tr.back && e.id.is_some_and(|id| id <= tr.replay_upto);
            if replayed {
                // Waited for the reconnection: not a delivery latency.
                c.replayed += 1;
            } else {
                let lat = t.saturating_sub(sent) / 1000;
                hist.record(lat);
                let sec = (sent.saturating_sub(c.first_send_ns) / 1_000_000_000) as usize;
                if sec < 3600 {
                    if c.timeline.len() <= sec {
                        c.timeline.resize(sec + 1, (0, 0));
                    }
                    let slot = &mut c.timeline[sec];
                    slot.0 += 1;
                    slot.1 = slot.1.max(lat);
                }
            }
            if tr.seen.insert(seq) {
                c.unique += 1;
                if tr.counted {
                    c.live_unique += 1;
                }
            } else {
                c.dup += 1;
            }
            if x.id_base > 0 {
                match e.id {
                    Some(id) if id > x.id_base && id - x.id_base < MAX_REL_ID => {
                        if !tr.seen_ids.insert(id - x.id_base) {
                            c.dup_ids += 1;
                        }
                    }
                    _ => c.bad_ids += 1,
                }
            }
        }
        b"hello" => {
            if !tr.conn_hello {
                tr.conn_hello = true;
                *connecting -= 1;
                if !tr.hello {
                    tr.hello = true;
                    c.hellos += 1;
                    c.last_hello_ns = t;
                } else {
                    c.rehellos += 1;
                }
                if x.restarted && !tr.back {
                    tr.back = true;
                    tr.back_ns = t;
                    c.backs += 1;
                    c.last_back_ns = t;
                    // Everything up to the newest id when the stream opened
                    // comes as replay (or is already here).
                    tr.replay_upto = close::json_u64(e.data, "last_id").unwrap_or(0);
                    if tr.last_event_id.unwrap_or(0) >= tr.replay_upto {
                        tr.whole_ns = t;
                        c.wholes += 1;
                    }
                }
            } else {
                c.other_events += 1;
            }
        }
        b"heartbeat" => c.heartbeats += 1,
        b"presence" => c.presence += 1,
        b"busy" => c.busy += 1,
        b"gap" => c.gaps += 1,
        b"message" if e.data_lines == 0 && e.has_id => c.id_only += 1,
        _ => c.other_events += 1,
    }
}

fn num_cpus_online() -> u64 {
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as u64
    } else {
        1
    }
}

fn sample(pid: u32) -> Option<ProcSample> {
    if pid == 0 {
        None
    } else {
        stats::sample(pid)
    }
}

fn wait_ready(server: SocketAddrV4, secs: f64) -> bool {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if std::net::TcpStream::connect_timeout(&SocketAddr::V4(server), Duration::from_millis(500))
            .is_ok()
        {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ms(us: Option<u64>) -> serde_json::Value {
    match us {
        Some(v) => json!(v as f64 / 1000.0),
        None => serde_json::Value::Null,
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

/// `loadgen free-port`: prints a TCP port on 127.0.0.1 that is free right now.
fn free_port() -> i32 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => {
            println!("{}", a.port());
            0
        }
        Err(e) => {
            eprintln!("loadgen free-port: {}", e);
            1
        }
    }
}

fn main() {
    START.get_or_init(Instant::now);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(|s| s.as_str()) {
        Some("summarize") => std::process::exit(summary::run(&argv[1..])),
        Some("free-port") => std::process::exit(free_port()),
        Some("cluster") => std::process::exit(cluster::run(&argv[1..])),
        _ => {}
    }
    let a = parse_args();
    let nofile = raise_nofile();
    if (a.streams + a.pub_conns.max(a.inflight) + 64) as u64 > nofile {
        eprintln!(
            "loadgen: warning: {} streams need more open files than the limit {} allows",
            a.streams, nofile
        );
    }
    if a.wait_ready > 0.0 && !wait_ready(a.server, a.wait_ready) {
        eprintln!("loadgen: server {} does not accept connections", a.server);
        std::process::exit(1);
    }
    let mut r = match Runner::new(a.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {}", e);
            std::process::exit(1);
        }
    };
    let pid = a.pid;
    let t_run = Instant::now();
    let s_before = sample(pid);
    let listen_before = stats::listen_counters();
    let self_before = stats::sample(0);

    // ---- 1. open the streams
    let connect_until = Instant::now() + Duration::from_secs_f64(a.connect_timeout);
    loop {
        r.start_connects(true);
        if r.c.hellos as usize >= a.streams || r.timed_out {
            break;
        }
        if r.to_connect.is_empty() && r.connecting == 0 {
            break; // every stream is open or has failed for good
        }
        if Instant::now() >= connect_until {
            eprintln!(
                "loadgen: connect timeout: {} of {} streams open",
                r.c.hellos, a.streams
            );
            break;
        }
        r.step(Duration::from_millis(20));
    }
    let connect_secs = if r.c.hellos > 0 {
        (r.c.last_hello_ns.saturating_sub(r.c.first_connect_ns)) as f64 / 1e9
    } else {
        0.0
    };
    let s_connected = sample(pid);
    let self_connected = stats::sample(0);
    let listen_after = stats::listen_counters();
    let server_fds = if pid == 0 {
        None
    } else {
        stats::sample_with(pid, true).map(|s| s.fds)
    };
    // Give up on the streams that did not open: close them.
    r.to_connect.clear();
    for i in 0..r.subs.len() {
        if !r.subs[i].tr.hello
            && r.subs[i].state != SubState::Closed
            && r.subs[i].state != SubState::Waiting
        {
            r.publishing = true; // no retry
            r.close_sub(i, false);
            r.publishing = false;
        }
    }
    let open_streams = r.c.hellos;
    if open_streams == 0 {
        eprintln!("loadgen: no stream opened");
    }

    // ---- 2. publishers, then the idle hold
    let pub_k = if a.inflight > 0 {
        a.inflight
    } else if a.messages > 0 {
        a.pub_conns
    } else {
        0
    };
    if pub_k > 0 && open_streams > 0 {
        if let Err(e) = r.open_publishers(pub_k) {
            eprintln!("loadgen: publisher connect: {}", e);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while r.open_pubs() < pub_k && Instant::now() < until && !r.timed_out {
            r.step(Duration::from_millis(10));
        }
    }
    let hb_before = r.c.heartbeats;
    let s_idle_start = sample(pid);
    let m_idle_start = stats::machine_cpu();
    let self_idle_start = stats::sample(0);
    let t_idle_start = Instant::now();
    let idle_until = t_idle_start + Duration::from_secs_f64(a.idle.max(0.0));
    while open_streams > 0 && !r.timed_out {
        let now = Instant::now();
        if now >= idle_until {
            break;
        }
        r.step(idle_until - now);
    }
    let idle_secs = t_idle_start.elapsed().as_secs_f64();
    let s_idle_end = sample(pid);
    let m_idle_end = stats::machine_cpu();
    let self_idle_end = stats::sample(0);
    let hb_idle = r.c.heartbeats - hb_before;

    // ---- 3. publish
    let storm_mode = a.restart_after > 0.0;
    for s in r.subs.iter_mut() {
        if s.tr.hello && s.state == SubState::Body && !storm_mode {
            s.tr.counted = true;
            r.c.live_counted += 1;
        }
    }
    let s_pub_start = sample(pid);
    let self_pub_start = stats::sample(0);
    let m_pub_start = stats::machine_cpu();
    let t_pub_start = Instant::now();
    let t_pub_start_ns = now_ns();
    let mut s_pub_end = None;
    let mut self_pub_end = None;
    let mut m_pub_end = None;
    let mut drained = true;
    let mut publish_secs = 0.0;
    if pub_k > 0 && r.open_pubs() > 0 && !storm_mode {
        r.publishing = true;
        if a.inflight > 0 {
            let stop = t_pub_start + Duration::from_secs_f64(a.duration);
            for j in 0..r.pubs.len() {
                r.fill_inflight(j);
            }
            while !r.timed_out && Instant::now() < stop && r.open_pubs() > 0 {
                if a.messages > 0 && r.next_seq >= a.messages && r.outstanding() == 0 {
                    break;
                }
                r.step(
                    stop.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(100)),
                );
            }
        } else {
            while !r.timed_out && r.next_seq < a.messages && r.open_pubs() > 0 {
                let wait = r.send_due(t_pub_start);
                if r.next_seq >= a.messages {
                    break;
                }
                r.step(wait);
            }
        }
        r.publishing = false; // no new requests from here on
        publish_secs = t_pub_start.elapsed().as_secs_f64();
        // ---- 4. drain: every answer, then every delivery, or the drain time-out
        let drain_until = Instant::now() + Duration::from_secs_f64(a.drain);
        loop {
            if r.timed_out {
                drained = false;
                break;
            }
            let answers_in = r.outstanding() == 0;
            let all_in = r.c.live_unique >= r.c.acked * r.c.live_counted;
            if answers_in && all_in {
                break;
            }
            if Instant::now() >= drain_until {
                drained = false;
                break;
            }
            r.step(Duration::from_millis(5));
        }
        s_pub_end = sample(pid);
        self_pub_end = stats::sample(0);
        m_pub_end = stats::machine_cpu();
        r.c.pub_unanswered += r.outstanding() as u64;
    }
    // ---- 4a. the reconnect storm (--restart-after)
    let mut sr = storm::StormRun::default();
    if storm_mode && open_streams > 0 && !r.timed_out {
        if r.open_pubs() == 0 {
            eprintln!("loadgen: no publisher connection is open");
        } else {
            sr = storm::run(&mut r, &a, open_streams);
            if let Some(why) = &sr.failed {
                eprintln!("loadgen: the reconnect storm failed: {}", why);
            }
            r.c.pub_unanswered += r.outstanding() as u64;
        }
    }
    let streams_open_at_end = r
        .subs
        .iter()
        .filter(|s| s.tr.hello && s.state == SubState::Body)
        .count();

    // ---- 4b. close every stream in one burst (--close-all)
    let mut cl = CloseRun::default();
    if a.close_all && open_streams > 0 && !r.timed_out {
        cl = mass_close(&mut r, &a);
    }
    let t_end_ns = now_ns();
    let s_after = sample(pid);
    let self_after = stats::sample(0);

    // ---- 5. count
    let mut missing = 0u64;
    let mut expected = 0u64;
    let mut streams_missing = 0u64;
    for s in r.subs.iter() {
        if s.tr.hello {
            let acked = &r.acked_seq[s.room];
            let m = acked.missing_from(&s.tr.seen);
            missing += m;
            expected += acked.count;
            if m > 0 {
                streams_missing += 1;
            }
        }
    }
    let storm_report = if sr.ran {
        Some(storm::figures(&r, &sr))
    } else {
        None
    };
    // Drop every connection before reporting (the server sees them close).
    r.subs.clear();
    r.pubs.clear();

    let cpu = |a: &Option<ProcSample>, b: &Option<ProcSample>| -> Option<u64> {
        match (a, b) {
            (Some(a), Some(b)) => Some(b.cpu_us.saturating_sub(a.cpu_us)),
            _ => None,
        }
    };
    let rss = |s: &Option<ProcSample>| s.map(|s| s.rss_kb);
    let bytes_per_stream = match (s_before, s_connected) {
        (Some(b), Some(c)) if open_streams > 0 => {
            Some((c.rss_kb as f64 - b.rss_kb as f64) * 1024.0 / open_streams as f64)
        }
        _ => None,
    };
    let conn_per_s = if connect_secs > 0.0 {
        Some(open_streams as f64 / connect_secs)
    } else {
        None
    };
    let hb_cpu_pct =
        cpu(&s_idle_start, &s_idle_end).map(|us| us as f64 / 1e6 / idle_secs.max(1e-9) * 100.0);
    let pub_cpu_us = cpu(&s_pub_start, &s_pub_end);
    let deliveries = r.c.deliveries;
    let cpu_per_delivery = pub_cpu_us.and_then(|us| {
        if deliveries > 0 {
            Some(us as f64 / deliveries as f64)
        } else {
            None
        }
    });
    let deliver_span = r.c.last_delivery_ns.saturating_sub(t_pub_start_ns) as f64 / 1e9;
    let deliveries_per_s = if deliveries > 0 && deliver_span > 0.0 {
        Some(deliveries as f64 / deliver_span)
    } else {
        None
    };
    let pub_span = r.c.last_ack_ns.saturating_sub(r.c.first_send_ns) as f64 / 1e9;
    let publish_rate = if r.c.acked > 1 && pub_span > 0.0 {
        Some((r.c.acked - 1) as f64 / pub_span)
    } else {
        None
    };
    let drain_ms = if r.c.last_delivery_ns > r.c.last_send_ns && deliveries > 0 {
        Some((r.c.last_delivery_ns - r.c.last_send_ns) as f64 / 1e6)
    } else {
        None
    };
    let self_cpu_pct = match (self_pub_start, self_pub_end) {
        (Some(a), Some(b)) => {
            let span =
                r.c.last_delivery_ns
                    .max(r.c.last_ack_ns)
                    .saturating_sub(t_pub_start_ns) as f64
                    / 1e9;
            if span > 0.0 {
                Some(b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1e6 / span * 100.0)
            } else {
                None
            }
        }
        _ => None,
    };
    // What the rest of the machine did meanwhile (other processes, interrupts):
    // % of one core, over the close burst (--close-all), else the publish phase
    // (or the idle hold when nothing was published). A noisy neighbour shows
    // here, not in the server's figures.
    let tick_us = 1_000_000 / stats::clock_ticks();
    let (m0, m1, s0, s1, l0, l1) = if cl.m1.is_some() {
        (cl.m0, cl.m1, cl.s0, cl.s1, cl.self0, cl.self1)
    } else if sr.m1.is_some() {
        (sr.m0, sr.m1, sr.s0, sr.s1, sr.self0, sr.self1)
    } else if m_pub_end.is_some() {
        (
            m_pub_start,
            m_pub_end,
            s_pub_start,
            s_pub_end,
            self_pub_start,
            self_pub_end,
        )
    } else {
        (
            m_idle_start,
            m_idle_end,
            s_idle_start,
            s_idle_end,
            self_idle_start,
            self_idle_end,
        )
    };
    let (other_cpu_pct, steal_pct, irq_pct) = match (m0, m1) {
        (Some(a), Some(b)) if b.all > a.all => {
            let wall_ticks = (b.all - a.all) as f64 / num_cpus_online() as f64;
            // Interrupt time is mostly our own loopback traffic: reported apart.
            let busy_us = ((b.busy - a.busy).saturating_sub(b.irq - a.irq)) * tick_us;
            let ours = cpu(&s0, &s1).unwrap_or(0)
                + l1.map(|x| x.cpu_us)
                    .unwrap_or(0)
                    .saturating_sub(l0.map(|x| x.cpu_us).unwrap_or(0));
            let other = busy_us.saturating_sub(ours) as f64 / (wall_ticks * tick_us as f64) * 100.0;
            let steal = (b.steal - a.steal) as f64 / wall_ticks * 100.0;
            let irq = (b.irq - a.irq) as f64 / wall_ticks * 100.0;
            (Some(other), Some(steal), Some(irq))
        }
        _ => (None, None, None),
    };
    let incomplete = r.timed_out
        || (a.close_all && open_streams > 0 && !cl.complete)
        || (storm_mode && (!sr.ran || sr.failed.is_some()));
    let opt = |v: Option<f64>, d: i32| {
        v.map(|x| json!(round(x, d)))
            .unwrap_or(serde_json::Value::Null)
    };
    let mode = if a.close_all {
        "close"
    } else if a.inflight > 0 {
        "inflight"
    } else if a.messages > 0 {
        "rate"
    } else {
        "idle"
    };
    let report = json!({
        "scenario": a.scenario,
        "mode": mode,
        "streams": a.streams,
        "streams_open": open_streams,
        "streams_open_at_end": streams_open_at_end,
        "sources": a.sources,
        "messages": r.c.sent,
        "messages_acked": r.c.acked,
        "rate": if a.inflight > 0 { serde_json::Value::Null } else { json!(a.rate) },
        "inflight": a.inflight,
        "payload": a.payload,
        "publish_rate": opt(publish_rate, 1),
        "publish_secs": round(publish_secs, 3),
        "p50_ms": ms(r.hist.quantile(0.50)),
        "p90_ms": ms(r.hist.quantile(0.90)),
        "p99_ms": ms(r.hist.quantile(0.99)),
        "p999_ms": ms(r.hist.quantile(0.999)),
        "max_ms": ms(if r.hist.n > 0 { Some(r.hist.max) } else { None }),
        "mean_ms": opt(r.hist.mean().map(|m| m / 1000.0), 3),
        "missing": missing,
        "streams_missing": streams_missing,
        "expected": expected,
        "dup": r.c.dup,
        "deliveries": deliveries,
        "deliveries_per_s": opt(deliveries_per_s, 0),
        "drain_ms": opt(drain_ms, 1),
        "drained": drained,
        "cpu_us_per_delivery": opt(cpu_per_delivery, 3),
        "server_cpu_ms_publish": pub_cpu_us.map(|u| json!(u / 1000)).unwrap_or(serde_json::Value::Null),
        "rss_kb_before": rss(&s_before),
        "rss_kb_connected": rss(&s_connected),
        "rss_kb_idle": rss(&s_idle_end),
        "rss_kb_after": rss(&s_after),
        "hwm_kb_after": s_after.map(|s| s.hwm_kb),
        "server_threads": s_after.or(s_before).map(|s| s.threads),
        "server_fds_connected": server_fds,
        "listen_overflows": match (listen_before, listen_after) { (Some(a), Some(b)) => json!(b.0.saturating_sub(a.0)), _ => serde_json::Value::Null },
        "syn_retrans": match (listen_before, listen_after) { (Some(a), Some(b)) => json!(b.2.saturating_sub(a.2)), _ => serde_json::Value::Null },
        "bytes_per_stream": opt(bytes_per_stream, 0),
        "conn_per_s": opt(conn_per_s, 0),
        "connect_secs": round(connect_secs, 3),
        "server_us_per_connection": match cpu(&s_before, &s_connected) {
            Some(us) if open_streams > 0 => json!(round(us as f64 / open_streams as f64, 2)),
            _ => serde_json::Value::Null,
        },
        "connect_server_cpu_pct": match cpu(&s_before, &s_connected) { Some(us) if connect_secs > 0.0 => json!(round(us as f64 / 1e4 / connect_secs, 1)), _ => serde_json::Value::Null },
        "connect_loadgen_cpu_pct": match (self_before, self_connected) { (Some(a), Some(b)) if connect_secs > 0.0 => json!(round(b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1e4 / connect_secs, 1)), _ => serde_json::Value::Null },
        "idle_secs": round(idle_secs, 3),
        "heartbeat_cpu_pct": opt(hb_cpu_pct, 2),
        "heartbeats_idle": hb_idle,
        "heartbeats": r.c.heartbeats,
        "presence": r.c.presence,
        "id_only": r.c.id_only,
        "other_events": r.c.other_events,
        "bad_markers": r.c.bad_markers,
        "busy": r.c.busy,
        "gaps": r.c.gaps,
        "connect_errors": r.c.connect_errors,
        "connect_retries": r.c.connect_retries,
        "bad_status": r.c.bad_status,
        "protocol_errors": r.c.protocol_errors,
        "closed_by_server": r.c.closed_by_server,
        "closed_after_open": r.c.closed_after_hello,
        "pub_errors": r.c.pub_errors,
        "pub_unanswered": r.c.pub_unanswered,
        "loadgen_cpu_pct": opt(self_cpu_pct, 1),
        "loadgen_cpu_ms": match (self_before, self_after) { (Some(a), Some(b)) => json!(b.cpu_us.saturating_sub(a.cpu_us) / 1000), _ => serde_json::Value::Null },
        "other_cpu_pct": opt(other_cpu_pct, 1),
        "steal_pct": opt(steal_pct, 1),
        "irq_cpu_pct": opt(irq_pct, 1),
        "reads": r.c.reads,
        "bytes_read": r.c.bytes_read,
        "elapsed_s": round(t_run.elapsed().as_secs_f64(), 3),
        "cpu_tick_us": 1_000_000 / stats::clock_ticks(),
        "timeline_max_ms": r.c.timeline.iter().map(|&(_, m)| json!(round(m as f64 / 1000.0, 1))).collect::<Vec<_>>(),
        "timeline_deliveries": r.c.timeline.iter().map(|&(n, _)| json!(n)).collect::<Vec<_>>(),
        "room": a.room,
        "incomplete": incomplete,
    });
    let mut report = report;
    if let Some(fig) = storm_report {
        let o = report.as_object_mut().unwrap();
        // Losses by id (the per-stream check of S5); by sequence number as well.
        let (m, d) = (o["missing"].clone(), o["dup"].clone());
        o.insert("missing_seq".into(), m);
        o.insert("dup_seq".into(), d);
        let fig: Vec<(String, serde_json::Value)> = fig
            .into_iter()
            .map(|(k, v)| match k.as_str() {
                "lost" => ("missing".into(), v),
                "dup_ids" => ("dup".into(), v),
                _ => (k, v),
            })
            .collect();
        for (k, v) in fig {
            o.insert(k, v);
        }
        o.insert("mode".into(), json!("storm"));
        o.insert("rooms".into(), json!(a.rooms));
    }
    if a.close_all {
        let o = report.as_object_mut().unwrap();
        let close_cpu_us = cpu(&cl.s0, &cl.s1);
        // User space vs kernel: the hub's own work is user time; the sockets'
        // close is system time. Tick-sampled by the kernel, in 10 ms units.
        let (close_user_ms, close_sys_ms) = match (cl.s0, cl.s1) {
            (Some(x), Some(y)) => (
                json!(y.utime_us.saturating_sub(x.utime_us) as f64 / 1000.0),
                json!(y.stime_us.saturating_sub(x.stime_us) as f64 / 1000.0),
            ),
            _ => (serde_json::Value::Null, serde_json::Value::Null),
        };
        let close_sched_us = match (cl.ns0, cl.ns1) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / 1000.0),
            _ => None,
        };
        let per = |us: Option<f64>| match us {
            Some(us) if cl.closed > 0 => json!(round(us / cl.closed as f64, 3)),
            _ => serde_json::Value::Null,
        };
        let tail_us = match (cl.s1, cl.s_tail) {
            (Some(x), Some(y)) => Some(y.cpu_us.saturating_sub(x.cpu_us)),
            _ => None,
        };
        let tail_sched_us = match (cl.ns1, cl.ns_tail) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / 1000.0),
            _ => None,
        };
        let loadgen_close_pct = match (cl.self0, cl.self1) {
            (Some(x), Some(y)) if cl.wall_ms > 0.0 => json!(round(
                y.cpu_us.saturating_sub(x.cpu_us) as f64 / 10.0 / cl.wall_ms,
                1
            )),
            _ => serde_json::Value::Null,
        };
        for (k, v) in [
            ("streams_closed", json!(cl.closed)),
            ("server_streams_before_close", json!(cl.server_before)),
            ("server_streams_after_close", json!(cl.server_after)),
            ("close_complete", json!(cl.complete)),
            ("close_reset", json!(a.close_reset)),
            ("close_burst_ms", json!(round(cl.burst_ms, 2))),
            ("close_wall_ms", json!(round(cl.wall_ms, 2))),
            (
                "close_server_cpu_ms",
                close_cpu_us
                    .map(|u| json!(u as f64 / 1000.0))
                    .unwrap_or(serde_json::Value::Null),
            ),
            ("close_server_user_ms", close_user_ms),
            ("close_server_sys_ms", close_sys_ms),
            (
                "close_cpu_us_per_stream",
                per(close_cpu_us.map(|u| u as f64)),
            ),
            (
                "close_server_cpu_ms_sched",
                opt(close_sched_us.map(|u| u / 1000.0), 3),
            ),
            ("close_cpu_us_per_stream_sched", per(close_sched_us)),
            (
                "close_tail_cpu_ms",
                tail_us
                    .map(|u| json!(u as f64 / 1000.0))
                    .unwrap_or(serde_json::Value::Null),
            ),
            (
                "close_tail_cpu_ms_sched",
                opt(tail_sched_us.map(|u| u / 1000.0), 3),
            ),
            ("close_tail_ms", json!(CLOSE_TAIL_MS)),
            ("close_polls", json!(cl.polls)),
            ("close_loadgen_cpu_pct", loadgen_close_pct),
            ("rss_kb_closed", json!(cl.s1.map(|s| s.rss_kb))),
        ] {
            o.insert(k.to_string(), v);
        }
    }
    let _ = t_end_ns;

    if !a.json_only {
        print_table(&report);
    }
    println!("{}", report);
    if incomplete {
        eprintln!(
            "loadgen: hit the --deadline of {} s; the figures above are partial",
            a.deadline
        );
        std::process::exit(1);
    }
    if open_streams == 0 {
        std::process::exit(1);
    }
}

/// How long the server's CPU is watched after it reports 0 streams (ms).
const CLOSE_TAIL_MS: u64 = 300;

/// What the close burst measured.
#[derive(Default)]
struct CloseRun {
    closed: u64,
    server_before: Option<u64>,
    server_after: Option<u64>,
    complete: bool,
    burst_ms: f64,
    wall_ms: f64,
    polls: u64,
    s0: Option<ProcSample>,
    s1: Option<ProcSample>,
    s_tail: Option<ProcSample>,
    ns0: Option<u64>,
    ns1: Option<u64>,
    ns_tail: Option<u64>,
    self0: Option<ProcSample>,
    self1: Option<ProcSample>,
    m0: Option<stats::CpuTotals>,
    m1: Option<stats::CpuTotals>,
}

/// S6: every open stream closes at once; the server's CPU time from just
/// before the burst until its `/healthz` says `"streams":0`.
fn mass_close(r: &mut Runner, a: &Args) -> CloseRun {
    let mut cl = CloseRun::default();
    // The probe connects (and is answered once) before the burst, so the
    // window holds no accept of it.
    let mut probe = close::HealthProbe::new(a.server);
    match probe.streams() {
        Ok(n) => cl.server_before = Some(n),
        Err(e) => {
            eprintln!("loadgen: /healthz before the close burst: {}", e);
            return cl;
        }
    }
    // Read what is pending, so that few sockets hold unread bytes (a close
    // with unread bytes sends RST instead of FIN).
    r.step(Duration::ZERO);
    cl.m0 = stats::machine_cpu();
    cl.self0 = stats::sample(0);
    cl.s0 = sample(a.pid);
    cl.ns0 = close::sched_ns(a.pid);
    let t0 = Instant::now();
    cl.closed = r.close_every_stream(a.close_reset);
    cl.burst_ms = t0.elapsed().as_secs_f64() * 1e3;
    let until = t0 + Duration::from_secs_f64(a.close_timeout);
    let mut errors = 0;
    loop {
        match probe.streams() {
            Ok(n) => {
                cl.server_after = Some(n);
                if n == 0 {
                    cl.complete = true;
                    break;
                }
            }
            Err(e) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("loadgen: /healthz while closing: {}", e);
                }
            }
        }
        if Instant::now() >= until || Instant::now() >= r.deadline {
            eprintln!(
                "loadgen: the server still had {:?} open streams {} s after the close burst",
                cl.server_after, a.close_timeout
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cl.wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    cl.s1 = sample(a.pid);
    cl.ns1 = close::sched_ns(a.pid);
    cl.self1 = stats::sample(0);
    cl.m1 = stats::machine_cpu();
    cl.polls = probe.polls;
    drop(probe);
    std::thread::sleep(Duration::from_millis(CLOSE_TAIL_MS));
    cl.s_tail = sample(a.pid);
    cl.ns_tail = close::sched_ns(a.pid);
    cl
}

fn print_table(r: &serde_json::Value) {
    let rows: &[(&str, &str, &str)] = &[
        ("scenario", "scenario", ""),
        ("streams open / asked", "streams_open", "streams"),
        ("connections/s while opening", "conn_per_s", ""),
        (
            "server RSS before / connected / after (kB)",
            "rss_kb_before",
            "rss_kb_connected",
        ),
        ("server memory per stream (bytes)", "bytes_per_stream", ""),
        ("idle hold (s)", "idle_secs", ""),
        ("heartbeat CPU (% of a core)", "heartbeat_cpu_pct", ""),
        ("heartbeats received while idle", "heartbeats_idle", ""),
        ("messages sent / acked", "messages", "messages_acked"),
        ("publish rate achieved (msg/s)", "publish_rate", ""),
        ("deliveries", "deliveries", ""),
        ("deliveries/s", "deliveries_per_s", ""),
        ("latency p50 / p99 (ms)", "p50_ms", "p99_ms"),
        ("latency p99.9 / max (ms)", "p999_ms", "max_ms"),
        ("missing / duplicated", "missing", "dup"),
        ("server CPU per delivery (µs)", "cpu_us_per_delivery", ""),
        (
            "server CPU while publishing (ms)",
            "server_cpu_ms_publish",
            "",
        ),
        ("last delivery after last publish (ms)", "drain_ms", ""),
        ("loadgen CPU while publishing (%)", "loadgen_cpu_pct", ""),
        (
            "other processes' CPU meanwhile (% of a core)",
            "other_cpu_pct",
            "",
        ),
        (
            "connect errors / closed by server",
            "connect_errors",
            "closed_by_server",
        ),
        (
            "accept queue overflows / SYN resends",
            "listen_overflows",
            "syn_retrans",
        ),
        (
            "server CPU while opening (% of a core)",
            "connect_server_cpu_pct",
            "",
        ),
        (
            "server CPU per connection opened (µs)",
            "server_us_per_connection",
            "",
        ),
        (
            "loadgen CPU while opening (% of a core)",
            "connect_loadgen_cpu_pct",
            "",
        ),
        (
            "publish errors / unanswered",
            "pub_errors",
            "pub_unanswered",
        ),
        (
            "streams closed / server's count before",
            "streams_closed",
            "server_streams_before_close",
        ),
        ("loadgen's close burst (ms)", "close_burst_ms", ""),
        ("until the server had 0 streams (ms)", "close_wall_ms", ""),
        (
            "server CPU for the closes (ms, stat / sched)",
            "close_server_cpu_ms",
            "close_server_cpu_ms_sched",
        ),
        (
            "  of which user / system (ms, stat)",
            "close_server_user_ms",
            "close_server_sys_ms",
        ),
        (
            "server CPU per close (µs, stat / sched)",
            "close_cpu_us_per_stream",
            "close_cpu_us_per_stream_sched",
        ),
        (
            "server CPU in the 300 ms after (ms, stat / sched)",
            "close_tail_cpu_ms",
            "close_tail_cpu_ms_sched",
        ),
        ("/healthz polls while closing", "close_polls", ""),
        ("SIGTERM until the server was gone (ms)", "stop_ms", ""),
        (
            "streams given a retry: at the stop / min ms",
            "stop_streams_retry",
            "stop_retry_min_ms",
        ),
        ("  max retry: (ms)", "stop_retry_max_ms", ""),
        (
            "reconnections / failed connects",
            "reconnections",
            "reconnect_failures",
        ),
        (
            "after the restart: first back / all back (ms)",
            "first_back_ms",
            "back_all_ms",
        ),
        (
            "after the restart: all whole / p50 (ms)",
            "whole_all_ms",
            "whole_p50_ms",
        ),
        ("streams not back / not whole", "not_back", "not_whole"),
        (
            "whole after its own retry: p99 / max (ms)",
            "late_p99_ms",
            "late_max_ms",
        ),
        ("lost / duplicated ids (per stream)", "missing", "dup"),
        (
            "acked ids received / unacked ids received",
            "messages_acked",
            "unacked_received",
        ),
        (
            "replayed deliveries / in the window",
            "replayed",
            "window_replayed",
        ),
        (
            "new server CPU until all whole (ms, stat / sched)",
            "restart_cpu_ms",
            "restart_cpu_ms_sched",
        ),
        (
            "  per reconnection (µs, stat / sched)",
            "restart_us_per_reconnect",
            "restart_us_per_reconnect_sched",
        ),
        (
            "  live deliveries meanwhile / loadgen CPU %",
            "window_live_deliveries",
            "window_loadgen_cpu_pct",
        ),
        (
            "  accept queue overflows / SYN resends",
            "window_listen_overflows",
            "window_syn_retrans",
        ),
        (
            "new server peak RSS / at the end (kB)",
            "restart_peak_rss_kb",
            "restart_rss_kb_end",
        ),
        (
            "publishes skipped (down) / reconnects",
            "pub_skipped",
            "pub_reconnects",
        ),
        (
            "new server: exit status / stop (ms)",
            "new_server_exit",
            "new_server_stop_ms",
        ),
    ];
    let fmt = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!("{:-<64}", "");
    for (label, k1, k2) in rows {
        if r.get(*k1).is_none() {
            continue; // a figure of another mode
        }
        let mut v = fmt(&r[*k1]);
        if !k2.is_empty() {
            v = format!("{} / {}", v, fmt(&r[*k2]));
        }
        if *k1 == "rss_kb_before" {
            v = format!("{} / {}", v, fmt(&r["rss_kb_after"]));
        }
        println!("{:<44} {}", label, v);
    }
    println!("{:-<64}", "");
}

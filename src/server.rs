//! THE event loop: one `mio::Poll`, the listener, the connections by
//! token, the hub and the timers. The only module that touches mio's
//! registry, and the one place where the hub's recipients meet the
//! connections.
//!
//! One turn: poll (timeout from the nearest deadline) → accept, read,
//! parse, route, act (a broadcast only appends to buffers) → timers →
//! flush pending connections (a bounded slice per turn) → reap the
//! connections marked for closing.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::Config;
use crate::conn::{self, Conn, ReadOutcome, State, StreamState};
use crate::handle::{Command, Handle, Shared};
use crate::hooks::{Authorizer, Decision, RequestInfo, RequestKind, StreamHook, StreamNotice};
use crate::hub::{json_string, Hub, Published, Retained};
use crate::journal::{self, Journal};
use crate::metrics::{Gauges, Metrics};
use crate::request::{self, parse_head, BodyFraming, Head, HttpError, Limits, Method, Parsed};
use crate::response::{self, Framing, Response};
use crate::router::{self, Action};
use crate::sse;
use crate::static_files::{Lookup, StaticFiles};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// `retry:` sent first on every stream, in milliseconds.
const STREAM_RETRY_MS: u64 = 2000;
/// Streams flushed per loop turn before polling again, so a publish is
/// answered promptly even while thousands of streams are written. While a
/// pass over all streams takes several turns, events pile up per stream
/// and each write carries more of them: the cost per delivery falls as the
/// load rises.
const FLUSH_SLICE: usize = 256;
/// Answers waiting on an ordinary connection before its reading pauses.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// How long a closing connection is drained before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
/// How long a graceful shutdown waits for streams to take their bytes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often time-outs are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// Pause before accepting again when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes a stream's client may send (it should send none) before it is dropped.
const STREAM_READ_BUDGET: usize = 64 * 1024;
/// Bytes drained per readiness event from a lingering connection.
const LINGER_READ_BUDGET: usize = 1 << 20;

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open event streams.
    pub streams: usize,
    /// Open connections of every kind, streams included.
    pub connections: usize,
    /// Events published since start.
    pub events_published: u64,
    /// Events queued to streams since start (replays included).
    pub events_delivered: u64,
    /// Streams cut because their client did not read.
    pub slow_consumers_dropped: u64,
    /// Newest id of the sequence.
    pub last_id: u64,
}

/// A publish waiting for the journal's `fsync`.
struct Held {
    /// The prepared event, delivered once durable.
    event: Retained,
    /// The answer owed to an HTTP publisher, if it came over HTTP.
    reply: Option<HeldReply>,
}

/// The `201` owed to a publisher, with what framing it needs.
struct HeldReply {
    token: usize,
    response: Response,
    keep_alive: bool,
    minor_version: u8,
    cors_origin: Option<String>,
}

/// An SSE server: the whole event loop and its state.
pub struct Server {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    /// The listener is registered with the poll (false while accepting is
    /// paused or after shutdown began).
    listening: bool,
    /// Connections by token index; `None` slots are free.
    conns: Vec<Option<Conn>>,
    /// Free slots of `conns`, reused last-freed first.
    free: Vec<usize>,
    hub: Hub,
    config: Config,
    statics: StaticFiles,
    metrics: Metrics,
    /// Open event streams.
    streams: usize,
    /// Open connections.
    open: usize,
    /// Streams with broadcast bytes appended since their last flush,
    /// flushed oldest first, a slice per turn.
    flush_queue: VecDeque<usize>,
    /// Connections with an answer waiting (responses, stream preambles),
    /// flushed every turn before the streams.
    reply_queue: Vec<usize>,
    /// Connections to drop at the end of this turn.
    doomed: Vec<usize>,
    /// Events of this turn, as (token, readable, writable) copied out of `events`.
    ready: Vec<(Token, bool, bool)>,
    /// Read scratch space shared by all connections.
    scratch: Vec<u8>,
    shared: Arc<Shared>,
    started: Instant,
    /// The time of this turn.
    now: Instant,
    next_heartbeat: Option<Instant>,
    next_presence: Instant,
    next_sweep: Instant,
    /// Accepting is paused until then (out of file descriptors).
    accept_resume: Option<Instant>,
    /// Out of file descriptors since this many refused accepts; logged once
    /// when it starts and once when accepting works again.
    accept_starved: u64,
    /// Shutdown began; everything is closed by then.
    shutdown_deadline: Option<Instant>,
    /// Cheap randomness for the busy answer's retry.
    rng: u64,
    /// The journal, with `--journal`.
    journal: Option<Journal>,
    /// Publishes of this turn waiting for the journal.
    held: Vec<Held>,
    /// The host's stream open/close hook.
    stream_hook: Option<StreamHook>,
    /// The host's authoriser for subscriptions and publishes.
    authorizer: Option<Authorizer>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The accept queue ssehub asks for; the kernel caps it at
/// `net.core.somaxconn` (4096 on current Linux).
const LISTEN_BACKLOG: i32 = 4096;

/// Raises the listener's accept queue from std's 128 to [`LISTEN_BACKLOG`].
///
/// With 128, a burst of a thousand browsers reconnecting at once (a restart,
/// a Wi-Fi hiccup) overflows the queue and each dropped connect waits a 1 s
/// SYN retransmit. std has no backlog option, so this calls `listen(2)`
/// again on the bound socket, which Linux and the BSDs accept as "change the
/// backlog". It is declared here rather than pulled from the `libc` crate for
/// this one call. Failure only leaves the old queue, so it is logged and
/// ignored.
#[cfg(unix)]
#[allow(unsafe_code)]
fn raise_backlog(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn listen(fd: std::os::raw::c_int, backlog: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // SAFETY: the fd is a valid, bound, listening socket owned by
    // `listener` for the duration of the call; listen(2) reads nothing else.
    if unsafe { listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        debug!(
            "cannot raise the accept queue to {LISTEN_BACKLOG}: {}",
            io::Error::last_os_error()
        );
    }
}

#[cfg(not(unix))]
fn raise_backlog(_listener: &std::net::TcpListener) {}

impl Server {
    /// Binds `config.bind` and builds a server on it.
    ///
    /// # Errors
    /// Binding fails (address in use, no permission), or the page folder
    /// given by `config.www` cannot be opened.
    pub fn bind(config: Config) -> io::Result<Server> {
        let listener = std::net::TcpListener::bind(config.bind)?;
        Server::from_listener(listener, config)
    }

    /// Builds a server on an already-bound listener (tests bind port 0).
    ///
    /// The listener's accept queue is raised to 4096 connections (capped by
    /// the kernel's `somaxconn`), as [`Server::bind`] does.
    ///
    /// # Errors
    /// The poll cannot be created, or the page folder given by
    /// `config.www` cannot be opened.
    pub fn from_listener(listener: std::net::TcpListener, config: Config) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        raise_backlog(&listener);
        let mut listener = TcpListener::from_std(listener);
        let statics = match &config.www {
            Some(dir) => StaticFiles::from_dir(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("--www {}: {e}", dir.display())))?,
            None => StaticFiles::embedded(),
        };
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            waker,
            open: AtomicBool::new(true),
        });
        let now = Instant::now();
        // Without a journal, ids continue from the start time, so a browser
        // resuming after a restart never holds an id ahead of the server's.
        let first_id = unix_ms() * 1000;
        let mut hub = Hub::new(config.history, first_id - 1);
        let journal = match &config.journal {
            Some(path) => {
                let (journal, loaded) = Journal::open(path)?;
                if loaded.last_id > 0 {
                    // With a journal the sequence continues the journal.
                    hub = Hub::new(config.history, loaded.last_id);
                }
                let restored = loaded.events.len();
                journal::replay_into(&loaded, &mut hub);
                info!(
                    "journal {}: {restored} events restored, ids continue after {}",
                    path.display(),
                    hub.last_id()
                );
                Some(journal)
            }
            None => None,
        };
        let heartbeat = config.heartbeat;
        Ok(Server {
            poll,
            events: Events::with_capacity(1024),
            listener,
            listening: true,
            conns: Vec::new(),
            free: Vec::new(),
            hub,
            statics,
            metrics: Metrics::default(),
            streams: 0,
            open: 0,
            flush_queue: VecDeque::new(),
            reply_queue: Vec::new(),
            doomed: Vec::new(),
            ready: Vec::new(),
            scratch: vec![0; 16 * 1024],
            shared,
            started: now,
            now,
            next_heartbeat: (!heartbeat.is_zero()).then(|| now + heartbeat),
            next_presence: now,
            next_sweep: now + SWEEP_EVERY,
            accept_resume: None,
            accept_starved: 0,
            shutdown_deadline: None,
            rng: first_id | 1,
            stream_hook: None,
            authorizer: None,
            journal,
            held: Vec::new(),
            config,
        })
    }

    /// The address the server listens on.
    ///
    /// # Errors
    /// The socket's address cannot be read.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle for publishing and shutting down from other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Calls `hook` on the loop's thread whenever a stream opens or closes.
    ///
    /// # Examples
    /// ```
    /// let mut server = ssehub::Server::bind(ssehub::Config {
    ///     bind: "127.0.0.1:0".parse().unwrap(),
    ///     ..Default::default()
    /// })
    /// .unwrap();
    /// server.on_stream(|notice| {
    ///     let verb = if notice.opened { "opened" } else { "closed" };
    ///     println!("{} {verb} a stream on {:?}", notice.peer, notice.rooms);
    /// });
    /// ```
    pub fn on_stream(&mut self, hook: impl FnMut(&StreamNotice) + 'static) {
        self.stream_hook = Some(Box::new(hook));
    }

    /// Lets `authorize` decide on every subscription (`GET /events`) and
    /// publish (`POST /messages`, `POST /publish`) after the contract's own
    /// checks (validation, `--publish-token`) have passed.
    ///
    /// # Examples
    /// ```
    /// use ssehub::hooks::{Decision, RequestKind};
    /// let mut server = ssehub::Server::bind(ssehub::Config {
    ///     bind: "127.0.0.1:0".parse().unwrap(),
    ///     ..Default::default()
    /// })
    /// .unwrap();
    /// server.authorize(|request| match (request.kind, request.header("x-api-key")) {
    ///     (RequestKind::Subscribe, _) => Decision::Allow,
    ///     (_, Some("secret")) => Decision::Allow,
    ///     _ => Decision::Deny { status: 403, message: "publishing needs x-api-key".into() },
    /// });
    /// ```
    pub fn authorize(&mut self, authorize: impl FnMut(&RequestInfo<'_>) -> Decision + 'static) {
        self.authorizer = Some(Box::new(authorize));
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        Stats {
            streams: self.streams,
            connections: self.open,
            events_published: self.metrics.events_published,
            events_delivered: self.metrics.events_delivered,
            slow_consumers_dropped: self.metrics.slow_consumers_dropped,
            last_id: self.hub.last_id(),
        }
    }

    /// Runs the loop until a shutdown (from a [`Handle`]) completes.
    ///
    /// # Errors
    /// The poll itself fails (not a client's error: those only close that client).
    pub fn run(&mut self) -> io::Result<()> {
        while !self.is_finished() {
            self.poll_once(None)?;
        }
        Ok(())
    }

    /// Whether a shutdown has completed: every connection is gone.
    pub fn is_finished(&self) -> bool {
        self.shutdown_deadline.is_some() && self.open == 0
    }

    /// Publishes from the loop's own thread; returns the new event's id.
    ///
    /// # Errors
    /// [`crate::HandleError::InvalidRoom`] or
    /// [`crate::HandleError::InvalidEvent`] for bad names.
    pub fn publish(
        &mut self,
        room: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, crate::HandleError> {
        if !crate::hub::valid_room(room) {
            return Err(crate::HandleError::InvalidRoom);
        }
        if let Some(name) = event {
            sse::check_event_name(name).map_err(crate::HandleError::InvalidEvent)?;
        }
        let data = sse::normalize_line_ends(data);
        let event = self
            .hub
            .prepare_event(room, event.unwrap_or("message"), &data, unix_ms());
        let id = event.id;
        self.publish_or_hold(event, None);
        Ok(id)
    }

    /// Publishes a checked [`Event`](crate::Event) from the loop's own
    /// thread; returns the id it was given (an id set on `event` is not used).
    ///
    /// # Errors
    /// [`crate::HandleError::InvalidRoom`] for a bad room.
    pub fn publish_event(
        &mut self,
        room: &str,
        event: &crate::Event,
    ) -> Result<u64, crate::HandleError> {
        self.publish(room, event.name(), event.data())
    }

    /// Begins a graceful shutdown: no new connections; streams get their
    /// pending bytes (for a bounded time), then everything closes.
    pub fn shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        info!("shutting down: flushing {} streams", self.streams);
        self.shared.close();
        self.shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
        if self.listening {
            let _ = self.poll.registry().deregister(&mut self.listener);
            self.listening = false;
        }
        for token in 0..self.conns.len() {
            if let Some(conn) = self.conns[token].as_mut() {
                // Streams keep their state so that reaping unsubscribes
                // them; every connection closes once its bytes are out.
                if conn.out.is_empty() {
                    self.mark_doomed(token, "shutdown");
                }
            }
        }
    }

    /// One turn of the loop: waits at most `timeout` (`None`: until the
    /// next timer) for readiness, handles it, runs due timers, flushes.
    ///
    /// A zero timeout never blocks.
    ///
    /// # Errors
    /// The poll itself fails.
    pub fn poll_once(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let wait = self.next_wait();
        let wait = match (timeout, wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match self.poll.poll(&mut self.events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        self.now = Instant::now();
        self.ready.clear();
        for event in self.events.iter() {
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            let writable = event.is_writable() || event.is_error();
            self.ready.push((event.token(), readable, writable));
        }
        for at in 0..self.ready.len() {
            let (token, readable, writable) = self.ready[at];
            match token {
                LISTENER => self.accept_all(),
                WAKER => self.run_commands(),
                Token(t) => self.conn_ready(t, readable, writable),
            }
        }
        self.run_timers();
        self.commit_journal();
        self.flush_slice();
        self.reap();
        Ok(())
    }

    /// How long the poll may sleep: until the nearest timer, or not at all
    /// while flushes are pending.
    fn next_wait(&self) -> Option<Duration> {
        if !self.flush_queue.is_empty() || !self.reply_queue.is_empty() || !self.held.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.next_sweep;
        if let Some(t) = self.next_heartbeat {
            next = next.min(t);
        }
        if self.hub.presence_pending() {
            next = next.min(self.next_presence);
        }
        if let Some(t) = self.accept_resume {
            next = next.min(t);
        }
        if let Some(t) = self.shutdown_deadline {
            next = next.min(t);
        }
        Some(next.saturating_duration_since(Instant::now()))
    }

    // ----- accepting -------------------------------------------------

    fn accept_all(&mut self) {
        if self.accept_resume.is_some() || self.shutdown_deadline.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((mut socket, peer)) => {
                    if self.accept_starved > 0 {
                        info!(
                            "accepting again after {} pauses for want of file descriptors",
                            self.accept_starved
                        );
                        self.accept_starved = 0;
                    }
                    let _ = socket.set_nodelay(true);
                    let token = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut socket, Token(token), Interest::READABLE)
                    {
                        warn!("cannot register connection from {peer}: {e}");
                        self.free.push(token);
                        continue;
                    }
                    self.conns[token] = Some(Conn::new(
                        socket,
                        peer,
                        self.now + self.config.header_timeout,
                    ));
                    self.open += 1;
                    self.metrics.connections_accepted += 1;
                    debug!("{peer} connected (token {token})");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(23) | Some(24)) => {
                    // EMFILE/ENFILE: the pending connection stays queued in the
                    // kernel; retry after a pause rather than spin on it.
                    if self.accept_starved == 0 {
                        warn!(
                            "out of file descriptors with {} connections open ({e}); \
                             pausing accept, retrying every {} ms",
                            self.open,
                            ACCEPT_BACKOFF.as_millis()
                        );
                    }
                    self.accept_starved += 1;
                    self.accept_resume = Some(self.now + ACCEPT_BACKOFF);
                    break;
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    break;
                }
            }
        }
    }

    // ----- commands from handles ---------------------------------------

    fn run_commands(&mut self) {
        for command in self.shared.take() {
            match command {
                Command::Publish { room, event, data } => {
                    let event = self.hub.prepare_event(
                        &room,
                        event.as_deref().unwrap_or("message"),
                        &data,
                        unix_ms(),
                    );
                    self.publish_or_hold(event, None);
                }
                Command::Shutdown => self.shutdown(),
            }
        }
    }

    // ----- readiness of one connection --------------------------------

    fn conn_ready(&mut self, token: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get(token).and_then(Option::as_ref) else {
            return; // a connection closed earlier; mio promises nothing else
        };
        if conn.doomed {
            return;
        }
        if writable && conn.wants_write {
            self.flush(token);
        }
        if readable {
            self.read_ready(token);
        }
    }

    fn read_ready(&mut self, token: usize) {
        let Some(conn) = self.conns[token].as_mut() else {
            return;
        };
        if conn.doomed {
            return;
        }
        match &conn.state {
            State::Http(_) => self.drive(token),
            State::Stream(_) => match conn::drain_reads(&mut conn.socket, STREAM_READ_BUDGET) {
                Ok(ReadOutcome::WouldBlock) => {}
                Ok(ReadOutcome::Eof) => self.mark_doomed(token, "client closed"),
                Ok(_) => self.mark_doomed(token, "client sent data on a stream"),
                Err(_) => self.mark_doomed(token, "read error"),
            },
            // The last answer is still going out; what the client sends now
            // is read (and dropped) once it has gone.
            State::Closing => {}
            // Each new arrival raises a new edge, so stopping at the budget
            // loses nothing; the linger deadline bounds the whole drain.
            State::Lingering => match conn::drain_reads(&mut conn.socket, LINGER_READ_BUDGET) {
                Ok(ReadOutcome::WouldBlock) | Ok(ReadOutcome::Data(_)) => {}
                Ok(ReadOutcome::Eof) | Err(_) => self.mark_doomed(token, "closed"),
            },
        }
    }

    /// Reads and answers requests on an ordinary connection until the
    /// socket would block, the connection changes state, or too many
    /// answers wait to be written.
    fn drive(&mut self, token: usize) {
        loop {
            if !self.process_buffered(token) {
                return;
            }
            let read_limit = self.config.max_head + self.config.max_body + 1024;
            let Some(conn) = self.conns[token].as_mut() else {
                return;
            };
            let State::Http(http) = &mut conn.state else {
                return;
            };
            if conn.out.len() > OUT_HIGH_WATER {
                http.read_paused = true;
                return;
            }
            let was_empty = http.read_buf.is_empty() && http.body_of.is_none();
            match conn::read_into(
                &mut conn.socket,
                &mut self.scratch,
                &mut http.read_buf,
                read_limit,
            ) {
                Ok(ReadOutcome::Data(0)) => {
                    // The buffer is full and nothing in it could be used.
                    self.fail(token, HttpError::HeadersTooLarge, None);
                    return;
                }
                Ok(ReadOutcome::Data(_)) => {
                    if was_empty {
                        // The first byte of a request starts its header clock.
                        conn.deadline = Some(self.now + self.config.header_timeout);
                    }
                }
                Ok(ReadOutcome::WouldBlock) => return,
                Ok(ReadOutcome::Eof) => {
                    // Half-close: answers already queued still go out.
                    if conn.out.is_empty() {
                        self.mark_doomed(token, "client closed");
                    } else {
                        conn.state = State::Closing;
                    }
                    return;
                }
                Err(_) => {
                    self.mark_doomed(token, "read error");
                    return;
                }
            }
        }
    }

    /// Answers every complete request in the read buffer. Returns false
    /// when the connection stopped being an ordinary one.
    fn process_buffered(&mut self, token: usize) -> bool {
        let limits = Limits {
            max_head: self.config.max_head,
            max_body: self.config.max_body,
        };
        loop {
            let Some(conn) = self.conns[token].as_mut() else {
                return false;
            };
            if conn.doomed {
                return false;
            }
            let State::Http(http) = &mut conn.state else {
                return false;
            };
            if conn.out.len() > OUT_HIGH_WATER {
                return true;
            }
            if http.awaiting_journal {
                return false;
            }
            let (head, body) = if let Some(head) = http.body_of.take() {
                match head.body {
                    BodyFraming::Length(n) if http.read_buf.len() >= n => {
                        let body: Vec<u8> = http.read_buf.drain(..n).collect();
                        (head, body)
                    }
                    BodyFraming::Chunked => {
                        let decoder = http.chunked.get_or_insert_with(Default::default);
                        match decoder.feed(&http.read_buf, limits.max_body) {
                            Ok((used, done)) => {
                                http.read_buf.drain(..used);
                                if !done {
                                    http.body_of = Some(head);
                                    return true;
                                }
                                let body = http
                                    .chunked
                                    .take()
                                    .map(|d| d.into_body())
                                    .unwrap_or_default();
                                (head, body)
                            }
                            Err(e) => {
                                let origin = head.origin.clone();
                                self.fail(token, e, origin.as_deref());
                                return false;
                            }
                        }
                    }
                    _ => {
                        http.body_of = Some(head);
                        return true;
                    }
                }
            } else {
                if http.read_buf.is_empty() {
                    return true;
                }
                match parse_head(&http.read_buf, limits) {
                    Ok(Parsed::Partial) => return true,
                    Ok(Parsed::Complete(head, used)) => {
                        http.read_buf.drain(..used);
                        if head.body == BodyFraming::None {
                            (head, Vec::new())
                        } else {
                            if head.expect_continue {
                                response::write_continue(conn.out.tail());
                                self.queue_flush(token);
                            }
                            let conn = self.conns[token].as_mut().expect("still open");
                            conn.deadline = Some(self.now + self.config.idle_timeout);
                            if let State::Http(http) = &mut conn.state {
                                http.body_of = Some(head);
                            }
                            continue;
                        }
                    }
                    Err(e) => {
                        // A head refused for its body or Expect is complete:
                        // its Origin still earns CORS headers on the error.
                        let origin = request::origin_of(&http.read_buf);
                        self.fail(token, e, origin.as_deref());
                        return false;
                    }
                }
            };
            self.handle_request(token, head, body);
        }
    }

    /// Answers a request that can never be accepted, and closes.
    fn fail(&mut self, token: usize, error: HttpError, origin: Option<&str>) {
        let response = Response::error(error.status(), error.message());
        let cors = origin.and_then(|o| self.allowed_origin(o));
        let framing = Framing {
            head_only: false,
            keep_alive: false,
            minor_version: 1,
            cors_origin: cors.as_deref(),
        };
        self.log_request(token, None, error.status(), "");
        self.respond(token, &response, framing);
    }

    // ----- requests ----------------------------------------------------

    fn cors_origin(&self, head: &Head) -> Option<String> {
        self.allowed_origin(head.origin.as_deref()?)
    }

    /// The value of `Access-Control-Allow-Origin` for `origin`, if allowed.
    fn allowed_origin(&self, origin: &str) -> Option<String> {
        let allowed = &self.config.cors_origins;
        if allowed.iter().any(|o| o == "*") {
            Some("*".to_string())
        } else if allowed.iter().any(|o| o == origin) {
            Some(origin.to_string())
        } else {
            None
        }
    }

    fn handle_request(&mut self, token: usize, head: Head, body: Vec<u8>) {
        let mut action = router::route(&head, &body, self.config.publish_token.as_deref());
        if let Some(denied) = self.ask_authorizer(token, &head, &action) {
            action = Action::Reject(denied);
        }
        let cors = self.cors_origin(&head);
        let framing = Framing {
            head_only: head.method == Method::Head,
            keep_alive: head.keep_alive && self.shutdown_deadline.is_none(),
            minor_version: head.minor_version,
            cors_origin: cors.as_deref(),
        };
        let response = match action {
            Action::Subscribe { rooms, last_id, agent } => {
                self.open_stream(token, &head, &rooms, last_id, agent, cors.as_deref());
                return;
            }
            Action::Preflight => {
                self.log_request(token, Some(&head), 204, "");
                let conn = self.conns[token].as_mut().expect("open");
                response::write_preflight(framing, conn.out.tail());
                self.after_response(token, framing.keep_alive, 204);
                return;
            }
            Action::Static => match self.statics.lookup(&head.path) {
                Lookup::Found { body, content_type } => Response {
                    status: 200,
                    content_type,
                    body: body.into_owned(),
                    extra_headers: Vec::new(),
                },
                Lookup::NotFound => Response::error(404, "not found"),
                Lookup::BadPath => Response::error(400, "bad path"),
            },
            Action::PostMessage { room, user, text } => {
                let time = unix_ms();
                let event = self.hub.prepare_message(&room, &user, &text, time);
                let id = event.id;
                let created = Response::json(
                    201,
                    format!("{{\"id\":{id},\"room\":{},\"time\":{time}}}", json_string(&room)),
                );
                match self.publish_or_hold(event, Some((token, &created, framing))) {
                    true => return self.log_request(token, Some(&head), 201, " (awaiting journal)"),
                    false => created,
                }
            }
            Action::Publish { room, event, data } => {
                let event = self.hub.prepare_event(&room, &event, &data, unix_ms());
                let created = Response::json(201, format!("{{\"id\":{}}}", event.id));
                match self.publish_or_hold(event, Some((token, &created, framing))) {
                    true => return self.log_request(token, Some(&head), 201, " (awaiting journal)"),
                    false => created,
                }
            }
            Action::History { room, after, limit } => {
                Response::json(200, self.hub.history_json(&room, after, limit))
            }
            Action::Rooms => Response::json(200, self.hub.rooms_json()),
            Action::Health => Response::json(
                200,
                format!(
                    "{{\"status\":\"ok\",\"version\":\"{}\",\"uptime_s\":{},\"streams\":{},\"connections\":{},\"last_id\":{}}}",
                    env!("CARGO_PKG_VERSION"),
                    self.started.elapsed().as_secs(),
                    self.streams,
                    self.open,
                    self.hub.last_id()
                ),
            ),
            Action::Metrics => {
                let (rooms, retained) = self.hub.sizes();
                let text = self.metrics.render(Gauges {
                    streams: self.streams,
                    connections: self.open,
                    rooms,
                    retained,
                    last_id: self.hub.last_id(),
                    uptime_secs: self.started.elapsed().as_secs(),
                });
                Response {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: text.into_bytes(),
                    extra_headers: Vec::new(),
                }
            }
            Action::Reject(response) => response,
        };
        self.log_request(token, Some(&head), response.status, "");
        self.respond(token, &response, framing);
    }

    /// The host's verdict on a subscription or publish, if it refuses.
    fn ask_authorizer(&mut self, token: usize, head: &Head, action: &Action) -> Option<Response> {
        let authorize = self.authorizer.as_mut()?;
        let (kind, rooms) = match action {
            Action::Subscribe { rooms, .. } => (RequestKind::Subscribe, rooms.clone()),
            Action::PostMessage { room, .. } => (RequestKind::PostMessage, vec![room.clone()]),
            Action::Publish { room, .. } => (RequestKind::Publish, vec![room.clone()]),
            _ => return None,
        };
        let peer = self.conns[token].as_ref()?.peer;
        let info = RequestInfo {
            kind,
            path: &head.path,
            query: &head.query,
            headers: &head.headers,
            rooms: &rooms,
            peer,
        };
        match authorize(&info) {
            Decision::Allow => None,
            Decision::Deny { status, message } => {
                let status = if (400..600).contains(&status) {
                    status
                } else {
                    403
                };
                Some(Response::error(status, &message))
            }
        }
    }

    fn notify_stream(&mut self, opened: bool, stream: &StreamState, peer: SocketAddr) {
        if let Some(hook) = self.stream_hook.as_mut() {
            hook(&StreamNotice {
                opened,
                rooms: stream.rooms.iter().map(|r| r.to_string()).collect(),
                agent: stream.agent,
                peer,
            });
        }
    }

    /// Appends a response and settles what the connection does next.
    fn respond(&mut self, token: usize, response: &Response, framing: Framing<'_>) {
        let Some(conn) = self.conns[token].as_mut() else {
            return;
        };
        response::write_response(response, framing, conn.out.tail());
        self.after_response(token, framing.keep_alive, response.status);
    }

    fn after_response(&mut self, token: usize, keep_alive: bool, status: u16) {
        self.metrics.count_response(status);
        let Some(conn) = self.conns[token].as_mut() else {
            return;
        };
        if !keep_alive {
            conn.state = State::Closing;
        } else if let State::Http(http) = &conn.state {
            let waiting = !http.read_buf.is_empty();
            conn.deadline = Some(
                self.now
                    + if waiting {
                        self.config.header_timeout
                    } else {
                        self.config.idle_timeout
                    },
            );
        }
        self.queue_flush(token);
    }

    fn log_request(&self, token: usize, head: Option<&Head>, status: u16, note: &str) {
        if !log::log_enabled!(log::Level::Info) {
            return;
        }
        let peer = self.conns[token].as_ref().map(|c| c.peer);
        let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
        match head {
            Some(head) => {
                let method = match head.method {
                    Method::Get => "GET",
                    Method::Head => "HEAD",
                    Method::Post => "POST",
                    Method::Options => "OPTIONS",
                    Method::Other => "-",
                };
                let query = if head.query.is_empty() { "" } else { "?" };
                info!(
                    "{peer} \"{method} {}{query}{} HTTP/1.{}\" {status}{note}",
                    head.path, head.query, head.minor_version
                );
            }
            None => info!("{peer} (unparsable request) {status}{note}"),
        }
    }

    fn open_stream(
        &mut self,
        token: usize,
        head: &Head,
        rooms: &[String],
        last_id: Option<u64>,
        agent: bool,
        cors: Option<&str>,
    ) {
        let head_only = head.method == Method::Head;
        let full = self.streams >= self.config.max_clients;
        let retry_ms = if full { self.busy_retry_ms() } else { 0 };
        let rooms: Box<[Rc<str>]> = rooms.iter().map(|r| self.hub.room_name(r)).collect();
        let Some(conn) = self.conns[token].as_mut() else {
            return;
        };
        let out = conn.out.tail();
        response::write_stream_head(head.minor_version, cors, out);
        if head_only {
            conn.state = State::Closing;
            self.log_request(token, Some(head), 200, " (head of stream)");
            self.metrics.count_response(200);
            self.queue_flush(token);
            return;
        }
        if full {
            // A browser's EventSource gives up for good on an error status,
            // so a full house answers 200 with a retry and closes.
            sse::encode_retry(retry_ms, out);
            let data = format!("{{\"retry_ms\":{retry_ms}}}");
            sse::encode_parts(None, Some("busy"), &data, out);
            conn.state = State::Closing;
            self.metrics.busy_answers += 1;
            self.metrics.count_response(200);
            self.log_request(token, Some(head), 200, " busy (full house)");
            self.queue_flush(token);
            return;
        }
        sse::encode_retry(STREAM_RETRY_MS, out);
        let room_list: Vec<String> = rooms.iter().map(|r| json_string(r)).collect();
        let hello = format!(
            "{{\"rooms\":[{}],\"role\":\"{}\",\"heartbeat_ms\":{},\"last_id\":{}}}",
            room_list.join(","),
            if agent { "agent" } else { "customer" },
            self.config.heartbeat.as_millis(),
            self.hub.last_id()
        );
        sse::encode_parts(None, Some("hello"), &hello, out);
        let replayed = self.hub.replay(&rooms, last_id, out);
        self.metrics.events_delivered += replayed as u64;
        self.hub.subscribe(token, &rooms, agent);
        let stream = StreamState {
            rooms,
            agent,
            replay_allowance: conn.out.len(),
        };
        if self.stream_hook.is_some() {
            let peer = conn.peer;
            self.notify_stream(true, &stream, peer);
        }
        let conn = self.conns[token].as_mut().expect("still open");
        conn.state = State::Stream(stream);
        conn.deadline = None;
        self.streams += 1;
        self.metrics.streams_opened += 1;
        self.metrics.count_response(200);
        self.log_request(token, Some(head), 200, " stream");
        self.queue_flush(token);
    }

    fn busy_retry_ms(&mut self) -> u64 {
        // xorshift64: randomised so that a crowd does not come back at once.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        2000 + self.rng % 3000
    }

    // ----- publishing -----------------------------------------------------

    /// Delivers a prepared event now, or, with a journal, holds it (and the
    /// answer to its publisher) until the turn's one `fsync` has made it
    /// durable. Returns true when held.
    fn publish_or_hold(
        &mut self,
        event: Retained,
        reply: Option<(usize, &Response, Framing<'_>)>,
    ) -> bool {
        let Some(journal) = self.journal.as_mut() else {
            let published = self.hub.commit(event);
            self.deliver(published);
            return false;
        };
        journal.append(&event.json);
        let reply = reply.map(|(token, response, framing)| {
            if let Some(State::Http(http)) = self.conns[token].as_mut().map(|c| &mut c.state) {
                // Later pipelined requests wait, so answers stay in order.
                http.awaiting_journal = true;
            }
            HeldReply {
                token,
                response: response.clone(),
                keep_alive: framing.keep_alive,
                minor_version: framing.minor_version,
                cors_origin: framing.cors_origin.map(str::to_string),
            }
        });
        self.held.push(Held { event, reply });
        true
    }

    /// Writes the turn's journal lines with one `fsync`, then delivers the
    /// held events and answers their publishers (503 if the write failed).
    fn commit_journal(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let result = journal.commit();
        if let Err(e) = &result {
            error!(
                "journal write failed, {} publishes refused with 503: {e}",
                self.held.len()
            );
        }
        for held in std::mem::take(&mut self.held) {
            let response = match &result {
                Ok(()) => {
                    let published = self.hub.commit(held.event);
                    self.deliver(published);
                    None
                }
                Err(_) => Some(Response::error(
                    503,
                    "could not write the journal; try again",
                )),
            };
            let Some(reply) = held.reply else {
                continue;
            };
            let Some(conn) = self.conns[reply.token].as_mut() else {
                continue;
            };
            if let State::Http(http) = &mut conn.state {
                http.awaiting_journal = false;
            }
            if conn.doomed {
                continue;
            }
            let framing = Framing {
                head_only: false,
                keep_alive: reply.keep_alive,
                minor_version: reply.minor_version,
                cors_origin: reply.cors_origin.as_deref(),
            };
            self.respond(
                reply.token,
                response.as_ref().unwrap_or(&reply.response),
                framing,
            );
            // Requests that arrived meanwhile are answered now.
            self.drive(reply.token);
        }
        if result.is_ok() {
            self.compact_journal();
        }
    }

    fn compact_journal(&mut self) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let (_, retained) = self.hub.sizes();
        if !journal.needs_compaction(retained) {
            return;
        }
        let events = self.hub.all_retained();
        let dropped = self.hub.dropped_marks();
        if let Err(e) = journal.compact(
            self.hub.last_id(),
            &dropped,
            events.iter().map(|e| &*e.json),
        ) {
            error!("journal compaction failed (appending goes on): {e}");
        }
    }

    // ----- broadcasting -------------------------------------------------

    /// Appends a published event to every subscriber of its room; returns its id.
    fn deliver(&mut self, published: Published) -> u64 {
        let event = published.event;
        self.metrics.events_published += 1;
        let subscribers = self.hub.subscribers(&event.room);
        let cap = self.config.stream_buffer;
        for &token in subscribers {
            if let Some(conn) = self.conns[token].as_mut() {
                append(
                    conn,
                    token,
                    &event.frame,
                    cap,
                    &mut self.flush_queue,
                    &mut self.doomed,
                    &mut self.metrics,
                );
            }
        }
        self.metrics.events_delivered += subscribers.len() as u64;
        event.id
    }

    // ----- timers --------------------------------------------------------

    fn run_timers(&mut self) {
        let now = self.now;
        if let Some(due) = self.next_heartbeat {
            if now >= due {
                self.heartbeat();
                // Skip missed beats rather than sending a burst after a stall.
                let period = self.config.heartbeat;
                let mut next = due + period;
                if next <= now {
                    next = now + period;
                }
                self.next_heartbeat = Some(next);
            }
        }
        if now >= self.next_presence && self.hub.presence_pending() {
            self.presence();
            let period = if self.config.heartbeat.is_zero() {
                Duration::from_secs(1)
            } else {
                self.config.heartbeat
            };
            self.next_presence = now + period;
        }
        if now >= self.next_sweep {
            self.sweep();
            self.next_sweep = now + SWEEP_EVERY;
        }
        if self.accept_resume.is_some_and(|t| now >= t) {
            self.accept_resume = None;
            self.accept_all();
        }
        if self.shutdown_deadline.is_some_and(|t| now >= t) {
            for token in 0..self.conns.len() {
                if self.conns[token].is_some() {
                    self.mark_doomed(token, "shutdown deadline");
                }
            }
        }
    }

    fn heartbeat(&mut self) {
        if self.streams == 0 {
            return;
        }
        let mut frame = Vec::with_capacity(48);
        sse::encode_parts(
            None,
            Some("heartbeat"),
            &format!("{{\"time\":{}}}", unix_ms()),
            &mut frame,
        );
        let cap = self.config.stream_buffer;
        for (token, slot) in self.conns.iter_mut().enumerate() {
            if let Some(conn) = slot {
                if conn.is_stream() && !conn.doomed {
                    append(
                        conn,
                        token,
                        &frame,
                        cap,
                        &mut self.flush_queue,
                        &mut self.doomed,
                        &mut self.metrics,
                    );
                    self.metrics.heartbeats_sent += 1;
                }
            }
        }
    }

    fn presence(&mut self) {
        let cap = self.config.stream_buffer;
        for (room, frame) in self.hub.take_presence() {
            for &token in self.hub.subscribers(&room) {
                if let Some(conn) = self.conns[token].as_mut() {
                    append(
                        conn,
                        token,
                        &frame,
                        cap,
                        &mut self.flush_queue,
                        &mut self.doomed,
                        &mut self.metrics,
                    );
                }
            }
        }
    }

    /// Closes connections whose header, idle or linger time ran out.
    fn sweep(&mut self) {
        let now = self.now;
        for token in 0..self.conns.len() {
            let Some(conn) = self.conns[token].as_ref() else {
                continue;
            };
            if conn.doomed || conn.deadline.is_none_or(|d| now < d) {
                continue;
            }
            let request_started = match &conn.state {
                State::Http(http) => !http.read_buf.is_empty() || http.body_of.is_some(),
                _ => false,
            };
            if request_started {
                debug!("{} request timed out", conn.peer);
                let response = Response::error(408, "request timed out");
                let framing = Framing {
                    head_only: false,
                    keep_alive: false,
                    minor_version: 1,
                    cors_origin: None,
                };
                self.respond(token, &response, framing);
                // It had its chance; do not linger on it.
                if let Some(conn) = self.conns[token].as_mut() {
                    conn.deadline = Some(now + LINGER);
                }
            } else {
                self.mark_doomed(token, "timed out");
            }
        }
    }

    // ----- writing and closing --------------------------------------------

    fn queue_flush(&mut self, token: usize) {
        if let Some(conn) = self.conns[token].as_mut() {
            if !conn.queued && !conn.wants_write {
                conn.queued = true;
                self.reply_queue.push(token);
            }
        }
    }

    /// Flushes every waiting answer, then a slice of the streams.
    fn flush_slice(&mut self) {
        let mut replies = std::mem::take(&mut self.reply_queue);
        for &token in &replies {
            self.flush_queued(token);
        }
        replies.clear();
        // Flushing an answer may have produced new ones (pipelined
        // requests resumed); keep them for the next turn.
        replies.append(&mut self.reply_queue);
        self.reply_queue = replies;
        for _ in 0..FLUSH_SLICE {
            let Some(token) = self.flush_queue.pop_front() else {
                break;
            };
            self.flush_queued(token);
        }
    }

    fn flush_queued(&mut self, token: usize) {
        let Some(conn) = self.conns[token].as_mut() else {
            return;
        };
        if !conn.queued {
            return;
        }
        conn.queued = false;
        self.flush(token);
    }

    /// Writes what the socket takes; asks for `WRITABLE` only while bytes remain.
    fn flush(&mut self, token: usize) {
        let Some(conn) = self.conns[token].as_mut() else {
            return;
        };
        if conn.doomed {
            return;
        }
        let flushed = match conn.out.write_to(&mut conn.socket) {
            Ok(flushed) => flushed,
            Err(_) => {
                self.mark_doomed(token, "write error");
                return;
            }
        };
        self.metrics.bytes_written += flushed.written as u64;
        if !flushed.drained {
            if !conn.wants_write {
                conn.wants_write = true;
                let _ = self.poll.registry().reregister(
                    &mut conn.socket,
                    Token(token),
                    Interest::READABLE | Interest::WRITABLE,
                );
            }
            return;
        }
        if conn.wants_write {
            conn.wants_write = false;
            let _ =
                self.poll
                    .registry()
                    .reregister(&mut conn.socket, Token(token), Interest::READABLE);
        }
        if let State::Stream(stream) = &mut conn.state {
            stream.replay_allowance = 0;
        }
        if self.shutdown_deadline.is_some() {
            self.mark_doomed(token, "shutdown");
            return;
        }
        match &mut conn.state {
            State::Closing => {
                // Shut our side, then drain theirs briefly, so the client
                // reads the answer instead of a reset.
                let _ = conn.socket.shutdown(Shutdown::Write);
                conn.state = State::Lingering;
                conn.deadline = Some(self.now + LINGER);
                self.read_ready(token);
            }
            State::Http(http) if http.read_paused => {
                http.read_paused = false;
                self.drive(token);
            }
            _ => {}
        }
    }

    fn mark_doomed(&mut self, token: usize, reason: &str) {
        if let Some(conn) = self.conns[token].as_mut() {
            if !conn.doomed {
                conn.doomed = true;
                debug!("{} closing: {reason}", conn.peer);
                self.doomed.push(token);
            }
        }
    }

    /// Drops the connections marked this turn, in one place, so no token is
    /// reused while events for it may still be in the batch.
    fn reap(&mut self) {
        while let Some(token) = self.doomed.pop() {
            let Some(conn) = self.conns[token].take() else {
                continue;
            };
            if let State::Stream(stream) = &conn.state {
                self.hub.unsubscribe(token, &stream.rooms, stream.agent);
                self.streams -= 1;
                self.notify_stream(false, stream, conn.peer);
            }
            // No deregister: closing the socket (dropping `conn`) takes it
            // out of the epoll set, and this turn's events are all handled,
            // so the token is free to reuse. It saves a syscall per close.
            drop(conn);
            self.open -= 1;
            self.free.push(token);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Appends a frame to one stream's buffer and queues it for the flush; a
/// stream over its cap is doomed as a slow consumer.
fn append(
    conn: &mut Conn,
    token: usize,
    frame: &[u8],
    cap: usize,
    flush_queue: &mut VecDeque<usize>,
    doomed: &mut Vec<usize>,
    metrics: &mut Metrics,
) {
    if conn.doomed {
        return;
    }
    conn.out.push(frame);
    let allowance = match &conn.state {
        State::Stream(stream) => stream.replay_allowance,
        _ => 0,
    };
    if conn.out.len() > cap + allowance {
        conn.doomed = true;
        metrics.slow_consumers_dropped += 1;
        info!(
            "{} cut as a slow consumer ({} bytes waiting)",
            conn.peer,
            conn.out.len()
        );
        doomed.push(token);
        return;
    }
    if !conn.queued && !conn.wants_write {
        conn.queued = true;
        flush_queue.push_back(token);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::fs;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;

    /// Reads from `socket` until `needle` has arrived (or fails after 5 s);
    /// returns everything read.
    fn read_until(socket: &mut TcpStream, seen: &mut String, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        while !seen.contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in {seen:?}");
            socket
                .set_read_timeout(Some(deadline - Instant::now()))
                .unwrap();
            let n = socket.read(&mut buf).expect("read");
            assert!(n > 0, "closed before {needle:?}: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    fn post(addr: std::net::SocketAddr, text: &str) -> String {
        let body = format!("{{\"room\":\"j\",\"user\":\"ann\",\"text\":\"{text}\"}}");
        let mut socket = TcpStream::connect(addr).unwrap();
        write!(
            socket,
            "POST /messages HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reply = String::new();
        socket.read_to_string(&mut reply).unwrap();
        reply
    }

    /// A journal that cannot be written refuses that turn's publishes with
    /// 503 and broadcasts none of them; the next publish is journaled,
    /// answered 201 and delivered.
    #[test]
    fn a_failed_journal_write_is_a_503_and_nothing_is_broadcast() {
        let dir = std::env::temp_dir().join(format!("ssehub-503-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let path = dir.join("journal.jsonl");
        let _ = fs::remove_file(&path);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config {
            bind: addr,
            journal: Some(path.clone()),
            ..Config::default()
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut server = Server::from_listener(listener, config).unwrap();
            server.journal.as_mut().unwrap().fail_next_commit();
            tx.send(server.handle()).unwrap();
            server.run().unwrap();
        });
        let handle = rx.recv().unwrap();

        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /events?room=j HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut seen = String::new();
        read_until(&mut stream, &mut seen, "event: hello\n");

        let refused = post(addr, "lost");
        assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
        assert!(refused.contains("journal"), "{refused}");
        let accepted = post(addr, "kept");
        assert!(accepted.starts_with("HTTP/1.1 201 "), "{accepted}");
        read_until(&mut stream, &mut seen, "kept");
        assert!(
            !seen.contains("lost"),
            "a refused publish was broadcast: {seen}"
        );

        handle.shutdown().unwrap();
        thread.join().unwrap();
        let journal = fs::read_to_string(&path).unwrap();
        assert!(
            journal.contains("kept") && !journal.contains("lost"),
            "{journal}"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}

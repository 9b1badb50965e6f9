//! THE event loop: one `mio::Poll`, the listener, the waker and the order
//! of a turn. The only module that touches mio's registry, and the one
//! place where the hub's recipients meet the connections.
//!
//! One turn:
//! 1. poll, with a timeout from the nearest deadline;
//! 2. accept, read, frame (`http`), answer (`app`) — a publish is only
//!    appended to the event log;
//! 3. settle the log: one write for the turn's publishes, then committed
//!    events are broadcast (appended to buffers, no I/O) and held answers
//!    released;
//! 4. due timers: heartbeat, presence, time-outs;
//! 5. flush: every waiting answer, then a slice of the streams;
//! 6. resume reading on connections that waited for the flush or the log;
//! 7. reap the connections marked closing.
//!
//! Nothing calls back into an earlier step: flushing never reads, and the
//! log's verdict never drives a connection; both put the connection on the
//! resume list instead.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::app::{unix_ms, App, Asker};
use crate::config::Config;
use crate::conn::{Close, Conn, State};
use crate::conns::Conns;
use crate::handle::{Command, Handle, Shared};
use crate::hooks::{Decision, RequestInfo, StreamNotice};
use crate::log::{Draft, EventLog, JournalLog, MemoryLog, RedisLog};
use crate::sse;
use crate::static_files::StaticFiles;
use crate::timers::Timers;

mod read;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Streams flushed per loop turn before polling again, so a publish is
/// answered promptly even while thousands of streams are written. While a
/// pass over all streams takes several turns, events pile up per stream
/// and each write carries more of them: the cost per delivery falls as the
/// load rises.
const FLUSH_SLICE: usize = 256;
/// Streams waiting for a flush below which every flush goes out at once.
const BATCH_FROM: usize = 2000;
/// Streams waiting at which the flush delay reaches its maximum.
const BATCH_FULL: usize = 10_000;
/// Answers waiting on an ordinary connection before its reading pauses.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// How long a closing connection is drained before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
/// How long a cluster node waits for Redis at start before it accepts
/// connections anyway.
const READY_WAIT: Duration = Duration::from_secs(2);
/// Pause before accepting again when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes a stream's client may send in one readiness event (it should send
/// none) before it is dropped.
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

/// Whether the loop goes on after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Serving (or still shutting down): call [`Server::poll_once`] again.
    Running,
    /// A shutdown has completed: every connection is closed.
    Stopped,
}

/// An SSE server: the whole event loop and its state.
///
/// It is `Send`: build it (and plug in its hooks) on one thread, run it on
/// another. It is not `Sync`: one thread drives it; other threads reach it
/// through a [`Handle`].
///
/// Dropping a server that was not shut down closes every connection at
/// once, streams included, without flushing what was queued to them; the
/// browsers reconnect (to whatever listens next) with their `Last-Event-ID`.
/// Handles then answer [`crate::HandleError::Closed`].
pub struct Server {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    /// The listener is registered with the poll (false before the event
    /// log is ready and after shutdown began).
    listening: bool,
    /// When to start accepting even if the event log is not ready yet.
    listen_by: Instant,
    /// The connections and their queues.
    conns: Conns,
    /// Everything that answers: hub, log, access, page, metrics.
    app: App,
    /// The deadlines.
    timers: Timers,
    /// Events of this turn, as (token, readable, writable) copied out of `events`.
    ready: Vec<(Token, bool, bool)>,
    /// Read scratch space shared by all connections.
    scratch: Vec<u8>,
    shared: Arc<Shared>,
    /// The time of this turn.
    now: Instant,
    /// Out of file descriptors since this many refused accepts; logged once
    /// when it starts and once when accepting works again.
    accept_starved: u64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
/// The accept queue ssehub asks for; the kernel caps it at
/// `net.core.somaxconn` (4096 on current Linux). std's 128 is too short for
/// a burst of a thousand browsers reconnecting at once (a restart, a Wi-Fi
/// hiccup): each connect dropped from a full queue waits a 1 s SYN
/// retransmit.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds `config.bind` as the server wants its listener: an accept queue
/// of 4096, and `SO_REUSEPORT` when `config.reuse_port` is set, so several
/// processes share the port and the kernel spreads connections among them.
///
/// # Errors
/// The socket cannot be created, configured or bound (address in use, no
/// permission).
pub fn listen(config: &Config) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = config.bind;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does for its listeners: a restart need not wait out TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if config.reuse_port {
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        #[cfg(not(unix))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--reuse-port needs SO_REUSEPORT (Linux, the BSDs)",
        ));
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Raises an already-bound listener's accept queue to [`LISTEN_BACKLOG`]:
/// calling `listen(2)` again on a listening socket changes its backlog on
/// Linux and the BSDs. Failure only leaves the old queue, so it is logged.
fn raise_backlog(listener: &std::net::TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).listen(LISTEN_BACKLOG) {
        debug!("cannot raise the accept queue to {LISTEN_BACKLOG}: {e}");
    }
}

impl Server {
    /// Binds `config.bind` and builds a server on it.
    ///
    /// # Errors
    /// Binding fails (address in use, no permission), or the page folder
    /// given by `config.www` cannot be opened.
    pub fn bind(config: Config) -> io::Result<Server> {
        let listener = listen(&config)?;
        Server::from_listener(listener, config)
    }

    /// Builds a server on an already-bound listener (tests bind port 0).
    ///
    /// The listener's accept queue is raised to 4096 connections (capped by
    /// the kernel's `somaxconn`), as [`Server::bind`] does.
    ///
    /// # Errors
    /// The poll cannot be created, the page folder given by `config.www`
    /// cannot be opened, or the journal given by `config.journal` cannot be
    /// opened.
    pub fn from_listener(listener: std::net::TcpListener, config: Config) -> io::Result<Server> {
        Server::with_log(listener, config, |config, shared| {
            // Without a journal, ids continue from the start time, so a
            // browser resuming after a restart never holds an id ahead of
            // the server's.
            let first_id = unix_ms() * 1000;
            Ok(match (&config.redis, &config.journal) {
                (Some(url), _) => {
                    let shared = shared.clone();
                    let wake = Box::new(move || {
                        let _ = shared.waker.wake();
                    });
                    let prefix = &config.redis_prefix;
                    Box::new(RedisLog::start(
                        url.clone(),
                        prefix,
                        config.history,
                        config.max_body,
                        wake,
                    )?)
                }
                (None, Some(path)) => Box::new(JournalLog::open(path, first_id)?),
                (None, None) => Box::new(MemoryLog::new(first_id)),
            })
        })
    }

    /// Builds the server around the event log `open_log` makes; the log may
    /// keep the shared handle state to wake the loop from its own threads.
    fn with_log(
        listener: std::net::TcpListener,
        config: Config,
        open_log: impl FnOnce(&Config, &Arc<Shared>) -> io::Result<Box<dyn EventLog>>,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        raise_backlog(&listener);
        let listener = TcpListener::from_std(listener);
        let statics = match &config.www {
            Some(dir) => StaticFiles::from_dir(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("--www {}: {e}", dir.display())))?,
            None => StaticFiles::embedded(),
        };
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            waker,
            open: AtomicBool::new(true),
            stats: Mutex::new(Stats::default()),
        });
        // Port 0 becomes the port actually bound.
        let mut config = config;
        config.bind = listener.local_addr()?;
        let log = open_log(&config, &shared)?;
        let now = Instant::now();
        let mut server = Server {
            poll,
            events: Events::with_capacity(1024),
            listener,
            listening: false,
            listen_by: now + READY_WAIT,
            conns: Conns::default(),
            timers: Timers::new(now, config.heartbeat),
            app: App::new(config, statics, log),
            ready: Vec::new(),
            scratch: vec![0; 16 * 1024],
            shared,
            now,
            accept_starved: 0,
        };
        server.listen_when_ready()?;
        Ok(server)
    }

    /// Starts accepting once the event log is ready (a cluster node has
    /// the histories), or once [`READY_WAIT`] has passed without it: until
    /// then connections wait in the kernel's accept queue rather than meet
    /// a node that knows no history yet.
    fn listen_when_ready(&mut self) -> io::Result<()> {
        if self.listening || self.timers.shutting_down() {
            return Ok(());
        }
        let ready = self.app.log_ready();
        if !ready && Instant::now() < self.listen_by {
            return Ok(());
        }
        if !ready {
            warn!("the cluster's Redis is not ready; serving streams without history meanwhile");
        }
        self.poll
            .registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)?;
        self.listening = true;
        Ok(())
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
    pub fn on_stream(&mut self, hook: impl FnMut(&StreamNotice) + Send + 'static) {
        self.app.stream_hook = Some(Box::new(hook));
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
    pub fn authorize(
        &mut self,
        authorize: impl FnMut(&RequestInfo<'_>) -> Decision + Send + 'static,
    ) {
        self.app.access.set_authorizer(Box::new(authorize));
    }

    /// The configuration the server runs with; `bind` is the address
    /// actually bound (a port 0 asked for is the real port here).
    pub fn config(&self) -> &Config {
        &self.app.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        Stats {
            streams: self.conns.streams,
            connections: self.conns.open,
            events_published: self.app.metrics.events_published,
            events_delivered: self.app.metrics.events_delivered,
            slow_consumers_dropped: self.conns.slow_consumers(),
            last_id: self.app.hub.last_id(),
        }
    }

    /// Runs the loop until a shutdown (from a [`Handle`]) completes.
    ///
    /// # Errors
    /// The poll itself fails (not a client's error: those only close that client).
    pub fn run(&mut self) -> io::Result<()> {
        while self.poll_once(None)? == Status::Running {}
        Ok(())
    }

    /// Whether a shutdown has completed: every connection is gone.
    pub fn is_finished(&self) -> bool {
        self.timers.shutting_down() && self.conns.open == 0
    }

    /// Publishes from the loop's own thread; returns the new event's id.
    /// Without a journal it is retained and queued to its streams at once;
    /// with one, at the next turn's commit. In a cluster (`redis`) Redis
    /// assigns the id later, and this returns 0; the event is delivered
    /// once Redis has it (while Redis is down it is dropped, with a log
    /// line).
    ///
    /// # Errors
    /// [`crate::HandleError::InvalidRoom`] or
    /// [`crate::HandleError::InvalidEvent`] for bad names;
    /// [`crate::HandleError::Closed`] once a shutdown has begun (nobody
    /// would receive it).
    pub fn publish(
        &mut self,
        room: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, crate::HandleError> {
        if self.timers.shutting_down() {
            return Err(crate::HandleError::Closed);
        }
        if !crate::hub::valid_room(room) {
            return Err(crate::HandleError::InvalidRoom);
        }
        if let Some(name) = event {
            sse::check_event_name(name).map_err(crate::HandleError::InvalidEvent)?;
        }
        let data = sse::normalize_line_ends(data);
        let draft = Draft::event(room, event.unwrap_or("message"), &data, unix_ms());
        let id = self.app.publish(draft);
        self.settle(false);
        // The memory log and the journal know the id at once; Redis later (0).
        Ok(id.unwrap_or_default())
    }

    /// Publishes a checked [`Event`](crate::Event) from the loop's own
    /// thread; returns the id it was given (an id set on `event` is not used).
    ///
    /// # Errors
    /// As [`Server::publish`].
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
        if self.timers.shutting_down() {
            return;
        }
        info!("shutting down: flushing {} streams", self.conns.streams);
        self.shared.close();
        self.timers
            .begin_shutdown(Instant::now() + self.app.config.shutdown_grace);
        if self.listening {
            let _ = self.poll.registry().deregister(&mut self.listener);
            self.listening = false;
        }
        let cap = self.app.config.stream_buffer;
        let mut retry = Vec::new();
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.live(token) else {
                continue;
            };
            if conn.is_stream() {
                // Each browser comes back after its own delay, so a restart
                // is not met by every client in the same second. The stream
                // closes once this is flushed.
                retry.clear();
                sse::encode_retry(self.app.restart_retry_ms(), &mut retry);
                self.conns.append(token, &retry, cap);
            } else if conn.out.is_empty() && !awaiting_log(conn) {
                // (A publish waiting for the log is answered first: it may
                // well be stored, and its publisher must hear so.)
                // Streams keep their state so that reaping unsubscribes them;
                // every other connection closes once its bytes are out.
                self.conns.mark_closing(token, Close::Shutdown);
            }
        }
    }

    /// One turn of the loop: waits at most `timeout` (`None`: until the
    /// next timer) for readiness, handles it, runs due timers, flushes.
    /// Returns whether the server goes on ([`Status::Stopped`] once a
    /// shutdown has completed).
    ///
    /// A zero timeout never blocks.
    ///
    /// # Errors
    /// The poll itself fails.
    pub fn poll_once(&mut self, timeout: Option<Duration>) -> io::Result<Status> {
        let wait = self.next_wait();
        let wait = timeout.map_or(wait, |t| t.min(wait));
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        self.now = Instant::now();
        self.conns.now = Some(self.now);
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
        self.settle(true);
        self.listen_when_ready()?;
        self.run_timers();
        self.flush_all();
        self.resume();
        self.reap();
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = self.stats();
        Ok(if self.is_finished() {
            Status::Stopped
        } else {
            Status::Running
        })
    }

    /// How long a host loop may wait before the next [`poll_once`]
    /// (zero while work is pending). With the server's poll nested in the
    /// host's own (see the [`AsRawFd`](std::os::fd::AsRawFd) impl), the host
    /// polls with at most this timeout.
    ///
    /// [`poll_once`]: Server::poll_once
    pub fn timeout(&self) -> Duration {
        self.next_wait()
    }

    /// How long the poll may sleep: until the nearest timer, or not at all
    /// while flushes, resumes or the log's verdicts are pending.
    fn next_wait(&self) -> Duration {
        if self.conns.flush_pending() || self.app.log_pending() {
            return Duration::ZERO;
        }
        let mut next = self.timers.next(self.app.hub.presence_pending());
        if let Some(due) = self.conns.streams_due_at(self.flush_delay()) {
            next = next.min(due);
        }
        if !self.listening && !self.timers.shutting_down() {
            next = next.min(self.listen_by);
        }
        next.saturating_duration_since(Instant::now())
    }

    // ----- accepting and commands -------------------------------------

    fn accept_all(&mut self) {
        if self.timers.accept_paused() || self.timers.shutting_down() {
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
                    let token = self.conns.vacant();
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut socket, Token(token), Interest::READABLE)
                    {
                        warn!("cannot register connection from {peer}: {e}");
                        self.conns.give_back(token);
                        continue;
                    }
                    let deadline = self.now + self.app.config.header_timeout;
                    self.conns.fill(token, Conn::new(socket, peer, deadline));
                    self.app.metrics.connections_accepted += 1;
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
                            self.conns.open,
                            ACCEPT_BACKOFF.as_millis()
                        );
                    }
                    self.accept_starved += 1;
                    self.timers.pause_accept(self.now + ACCEPT_BACKOFF);
                    break;
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    break;
                }
            }
        }
    }

    fn run_commands(&mut self) {
        for command in self.shared.take() {
            match command {
                Command::Publish { room, event, data } => {
                    let name = event.as_deref().unwrap_or("message");
                    self.app
                        .publish(Draft::event(&room, name, &data, unix_ms()));
                }
                Command::Shutdown => self.shutdown(),
            }
        }
    }

    // ----- the log's verdicts and broadcasting --------------------------

    /// Takes the log's verdicts (after one flush when `flush`): committed
    /// events go to every subscriber of their room, held answers are
    /// appended and their connections resume after this turn's flush.
    fn settle(&mut self, flush: bool) {
        let mut released = Vec::new();
        self.app.settle(flush, &mut released);
        if self.app.take_resync() {
            // The node started over from the log's histories: every open
            // stream reconnects and resumes with its Last-Event-ID against
            // them (a gap where events are gone), rather than miss some.
            for token in self.conns.tokens() {
                if self.conns.get(token).is_some_and(Conn::is_stream) {
                    self.conns.mark_closing(token, Close::Resync);
                }
            }
        }
        let cap = self.app.config.stream_buffer;
        let mut delivered = 0;
        for event in self.app.take_committed() {
            let hub = &self.app.hub;
            let someone_has_it = hub.anyone_ahead_of(event.id);
            for &token in hub.subscribers(&event.room) {
                if someone_has_it && hub.already_sent(token, event.id) {
                    continue;
                }
                if self.conns.append(token, &event.frame, cap) {
                    delivered += 1;
                }
            }
        }
        self.app.forget_ahead(self.now);
        self.app.metrics.events_delivered += delivered;
        for answer in released {
            let Some(conn) = self.conns.live(answer.token) else {
                continue;
            };
            if let State::Http(http) = &mut conn.state {
                http.awaiting_log = false;
            }
            conn.out.push(&answer.bytes);
            self.answered(answer.token, answer.keep_alive);
            // Requests that arrived meanwhile are answered after the flush.
            self.conns.resume_later(answer.token);
        }
    }

    // ----- timers -----------------------------------------------------------

    fn run_timers(&mut self) {
        let due = self.timers.due(self.now, self.app.hub.presence_pending());
        let cap = self.app.config.stream_buffer;
        if due.heartbeat && self.conns.streams > 0 {
            let frame = self.app.heartbeat_frame();
            let sent = self.conns.append_to_streams(&frame, cap);
            self.app.metrics.heartbeats_sent += sent as u64;
        }
        if due.presence {
            for (room, frame) in self.app.hub.take_presence() {
                for &token in self.app.hub.subscribers(&room) {
                    self.conns.append(token, &frame, cap);
                }
            }
        }
        if due.sweep {
            self.sweep();
            self.app.share_presence();
        }
        if due.accept {
            self.accept_all();
        }
        if due.shutdown {
            for token in self.conns.tokens() {
                self.conns.mark_closing(token, Close::Shutdown);
            }
        }
    }

    /// Closes connections whose header, idle or linger time ran out; one
    /// whose request had begun is answered 408 first.
    fn sweep(&mut self) {
        let now = self.now;
        let now_secs = unix_ms() / 1000;
        // The memory buffers kept through a broadcast goes back after it.
        let calm = self.conns.streams_waiting() < BATCH_FROM;
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.live(token) else {
                continue;
            };
            if calm {
                conn.out.release();
            }
            if let State::Stream(stream) = &conn.state {
                if stream.expires.is_some_and(|at| now_secs >= at.get()) {
                    self.conns.mark_closing(token, Close::TokenExpired);
                }
                continue;
            }
            if conn.deadline.is_none_or(|d| now < d) {
                continue;
            }
            let in_request = matches!(&conn.state, State::Http(http) if http.framer.in_request());
            if !in_request {
                let reason = match conn.state {
                    State::Lingering => Close::Finished,
                    _ => Close::TimedOut,
                };
                self.conns.mark_closing(token, reason);
                continue;
            }
            let who = Asker {
                token,
                peer: conn.peer,
            };
            self.app.time_out(who, conn.out.tail());
            self.answered(token, false);
            // It had its chance; do not linger on it.
            if let Some(conn) = self.conns.live(token) {
                conn.deadline = Some(now + LINGER);
            }
        }
    }

    // ----- writing, resuming, closing -----------------------------------

    /// How long a stream's new bytes may wait before they are written.
    /// Zero while few streams wait (an idle server's first event goes out
    /// at once); under a broadcast to thousands of streams, up to
    /// `Config::max_flush_delay`, so that several events share one `write`
    /// — most of a delivery's cost is the system call, not the bytes.
    fn flush_delay(&self) -> Duration {
        let waiting = self.conns.streams_waiting();
        if waiting < BATCH_FROM || self.timers.shutting_down() {
            return Duration::ZERO;
        }
        let most = self.app.config.max_flush_delay;
        most.mul_f64((waiting as f64 / BATCH_FULL as f64).min(1.0))
    }

    /// Flushes every waiting answer, then a slice of the streams.
    fn flush_all(&mut self) {
        let delay = self.flush_delay();
        for token in self.conns.take_replies() {
            self.flush_queued(token);
        }
        for _ in 0..FLUSH_SLICE {
            let Some(token) = self.conns.next_stream_due(delay) else {
                break;
            };
            self.flush_queued(token);
        }
    }

    fn flush_queued(&mut self, token: usize) {
        let Some(conn) = self.conns.live(token) else {
            return;
        };
        if conn.queued {
            conn.queued = false;
            self.flush(token);
        }
    }

    /// Writes what the socket takes; asks for `WRITABLE` only while bytes
    /// remain. Never reads: a connection that may read again goes on the
    /// resume list.
    fn flush(&mut self, token: usize) {
        let calm = self.conns.streams_waiting() < BATCH_FROM;
        let Some(conn) = self.conns.live(token) else {
            return;
        };
        let flushed = match conn.out.write_to(&mut conn.socket) {
            Ok(flushed) => flushed,
            Err(e) => return self.conns.mark_closing(token, Close::of_error(&e)),
        };
        self.app.metrics.bytes_written += flushed.written as u64;
        if conn.wants_write == flushed.drained {
            // The interest must change: WRITABLE while bytes remain, not after.
            let interest = if flushed.drained {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if let Err(e) =
                self.poll
                    .registry()
                    .reregister(&mut conn.socket, Token(token), interest)
            {
                warn!(
                    "{}: cannot change its poll interest ({e}); closing it",
                    conn.peer
                );
                return self.conns.mark_closing(token, Close::IoError);
            }
            conn.wants_write = !flushed.drained;
        }
        if !flushed.drained {
            return;
        }
        if calm {
            // Not under a broadcast: no next write is near.
            conn.out.release();
        }
        if let State::Stream(stream) = &mut conn.state {
            stream.replay_allowance = 0;
        }
        if self.timers.shutting_down() {
            return self.conns.mark_closing(token, Close::Shutdown);
        }
        match &mut conn.state {
            State::Finishing => {
                // Shut our side, then drain theirs briefly, so the client
                // reads the answer instead of a reset.
                let _ = conn.socket.shutdown(Shutdown::Write);
                conn.state = State::Lingering;
                conn.deadline = Some(self.now + LINGER);
                self.conns.resume_later(token);
            }
            State::Http(http) if http.read_paused => {
                http.read_paused = false;
                self.conns.resume_later(token);
            }
            _ => {}
        }
    }

    /// Reads again on the connections that waited for the flush or the log.
    fn resume(&mut self) {
        for token in self.conns.take_resume() {
            self.read_ready(token);
        }
    }

    /// Drops the connections marked this turn, in one place, after every
    /// event of the turn was handled, so no token is reused too early.
    fn reap(&mut self) {
        while let Some((token, conn)) = self.conns.take_closing() {
            let who = Asker {
                token,
                peer: conn.peer,
            };
            match &conn.state {
                State::Stream(_) => {
                    self.conns.streams -= 1;
                    self.app.stream_closed(who);
                }
                State::Http(http) if http.awaiting_log => self.app.forget_held(token),
                _ => {}
            }
            // No deregister: closing the socket (dropping `conn`) takes it
            // out of the epoll set. It saves a syscall per close.
            drop(conn);
        }
    }
}

/// Whether `conn` waits for the event log's verdict on its publish.
fn awaiting_log(conn: &Conn) -> bool {
    matches!(&conn.state, State::Http(http) if http.awaiting_log)
}

/// The file descriptor of the server's `Poll` (epoll on Linux): it becomes
/// readable when the server has work. A host with its own event loop
/// registers it there (with mio: `SourceFd`, `Interest::READABLE`), and
/// calls [`Server::poll_once`] with a zero timeout whenever it fires, and
/// at the latest after [`Server::timeout`]. `examples/step.rs` does this.
#[cfg(unix)]
impl std::os::fd::AsRawFd for Server {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.poll.as_raw_fd()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.close();
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
        let journal_path = path.clone();
        let thread = std::thread::spawn(move || {
            let mut log = JournalLog::open(&journal_path, 1).unwrap();
            log.fail_next_commit();
            let mut server = Server::with_log(listener, config, |_, _| Ok(Box::new(log))).unwrap();
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

    /// A failed interest change is not dropped: the connection is closed
    /// as an I/O error (before, `wants_write` stayed set and the stream was
    /// never queued for a flush again).
    #[test]
    fn a_failed_reregister_closes_the_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = Server::from_listener(listener, Config::default()).unwrap();
        // A client that never reads, so a large write falls short.
        let _client = TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.conns.open == 0 {
            assert!(Instant::now() < deadline, "never accepted");
            server.poll_once(Some(Duration::from_millis(50))).unwrap();
        }
        let token = server.conns.tokens().next().unwrap();
        let conn = server.conns.live(token).unwrap();
        // Take the socket out of the poll behind the server's back: the
        // next reregister fails with ENOENT.
        server.poll.registry().deregister(&mut conn.socket).unwrap();
        conn.out.push(&vec![b'x'; 32 << 20]);
        server.flush(token);
        let conn = server.conns.get(token).unwrap();
        assert_eq!(conn.closing, Some(Close::IoError));
        assert!(!conn.wants_write);
        assert_eq!(server.conns.closed_counts()[Close::IoError as usize], 1);
        server.reap();
        assert_eq!(server.conns.open, 0);
    }

    #[test]
    fn reuse_port_lets_two_listeners_share_a_port() {
        let first = listen(&Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            reuse_port: true,
            ..Config::default()
        })
        .unwrap();
        let shared = Config {
            bind: first.local_addr().unwrap(),
            reuse_port: true,
            ..Config::default()
        };
        let second = listen(&shared).expect("a second listener on the same port");
        assert_eq!(second.local_addr().unwrap(), first.local_addr().unwrap());
        let alone = Config {
            reuse_port: false,
            ..shared
        };
        let refused = listen(&alone).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
    }
}

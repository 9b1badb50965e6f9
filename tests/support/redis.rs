//! A `redis-server` of the test's own, and a cuttable TCP proxy in front of
//! one, for the suites that need Redis (`resp_redis`, `cluster`).
//!
//! Each [`RedisServer`] listens on a free loopback port with its files in
//! a temp folder of its own, so a system Redis on 6379 is never touched and
//! nothing is written in the work tree. Without `redis-server` on the PATH
//! the tests that start one fail, pointing at `make deps`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssehub::redis_url::RedisUrl;
use ssehub::resp::{encode_command, Decoder, Limits, Reply};

use super::TempDir;

/// How long starting or stopping Redis, or waiting for a reply, may take.
pub const REDIS_WAIT: Duration = Duration::from_secs(10);
/// How often a starting server is asked whether it is up.
const POLL: Duration = Duration::from_millis(10);

/// A `redis-server` on a free loopback port, its data in a temp folder;
/// killed (SIGKILL, by its PID) when dropped.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its data folder (the append-only file lives there).
    pub dir: TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server with the append-only file on (`--appendonly yes`),
    /// so that [`RedisServer::stop`] then [`RedisServer::restart`] keeps
    /// the data.
    #[track_caller]
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server with extra arguments (e.g. `--requirepass`), on a
    /// port found free a moment earlier; if another process took that port
    /// meanwhile the server exits, and another port is tried.
    #[track_caller]
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = TempDir::new("redis");
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..5 {
            server.port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if server.spawn_and_wait() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL, parsed as the server's config takes it.
    pub fn redis_url(&self) -> RedisUrl {
        RedisUrl::parse(&self.url()).expect("a valid redis URL")
    }

    /// A new connection to the server.
    #[track_caller]
    pub fn connect(&self) -> Conn {
        Conn::new(TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server"))
    }

    /// One command on a new connection, and its reply.
    #[track_caller]
    pub fn call(&self, args: &[&[u8]]) -> Reply {
        self.connect().call(args)
    }

    /// Stops the server gracefully (SIGTERM, which writes the append-only
    /// file out) and waits until it has exited.
    #[track_caller]
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + REDIS_WAIT;
        while child.try_wait().expect("wait for redis-server").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server did not exit within {REDIS_WAIT:?} of SIGTERM");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Freezes the server (SIGSTOP): the kernel still accepts connections
    /// for it, and nothing is answered, as with a Redis stuck on a slow
    /// disk. [`RedisServer::thaw`] undoes it; dropping it kills it anyway.
    #[track_caller]
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    #[track_caller]
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    #[track_caller]
    fn signal(&self, which: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args([which, &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {which} {pid} failed");
    }

    /// Starts the server again on the same port with the same data folder
    /// (after [`RedisServer::stop`]).
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is still running");
        // The port was ours a moment ago; a socket in TIME_WAIT does not
        // stop a listener, so a failure means someone else took it: retry
        // for a while, then give up.
        let deadline = Instant::now() + REDIS_WAIT;
        while !self.spawn_and_wait() {
            assert!(
                Instant::now() < deadline,
                "redis-server could not start again on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Spawns on `self.port` and waits until it answers; false if it exited.
    #[track_caller]
    fn spawn_and_wait(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            // No RDB snapshots; the append-only file keeps the data across
            // a restart. Files in the temp folder: nothing in the work tree.
            .args(["--save", "", "--appendonly", "yes"])
            .args(["--dir", &self.dir.path.to_string_lossy()])
            .args(["--logfile", "redis.log"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "redis-server is not installed (not on PATH); these tests need it: \
                 run `make deps` (or `apt-get install redis-server`)"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls until the server answers PING, false if it exited.
    #[track_caller]
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + REDIS_WAIT;
        loop {
            let child = self.child.as_mut().expect("a child");
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("redis-server on port {} exited: {status}", self.port);
                self.child = None;
                return false;
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut conn = Conn::new(stream);
                match conn.try_call(&[b"PING"]) {
                    Some(Reply::Simple(pong)) if pong == "PONG" => return true,
                    // -NOAUTH: up, and waiting for a password.
                    Some(Reply::Error(e)) if e.starts_with("NOAUTH") => return true,
                    // -LOADING: still reading its append-only file.
                    _ => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not accept connections within {REDIS_WAIT:?}"
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL to this child's PID, nothing broader.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One connection: a read buffer and the incremental decoder, as the
/// server's Redis connection has.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
    decoder: Decoder,
    /// Reads it took to get the replies so far.
    pub reads: usize,
}

impl Conn {
    /// Wraps a connected socket (reads time out after [`REDIS_WAIT`]).
    pub fn new(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(REDIS_WAIT)).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            decoder: Decoder::new(Limits::DEFAULT),
            reads: 0,
        }
    }

    /// Writes all bytes.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to redis");
    }

    /// The next reply, reading as many times as needed (with a deadline).
    #[track_caller]
    pub fn reply(&mut self) -> Reply {
        self.try_reply().expect("a reply from redis")
    }

    /// The next reply, or `None` if the connection closes or fails first.
    fn try_reply(&mut self) -> Option<Reply> {
        let deadline = Instant::now() + REDIS_WAIT;
        loop {
            if let Some((reply, used)) = self.decoder.decode(&self.buf).expect("valid RESP") {
                self.buf.drain(..used);
                return Some(reply);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => {
                    self.reads += 1;
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends one command and reads its reply.
    #[track_caller]
    pub fn call(&mut self, args: &[&[u8]]) -> Reply {
        let mut out = Vec::new();
        encode_command(args, &mut out);
        self.send(&out);
        self.reply()
    }

    fn try_call(&mut self, args: &[&[u8]]) -> Option<Reply> {
        let mut out = Vec::new();
        encode_command(args, &mut out);
        self.stream.write_all(&out).ok()?;
        self.try_reply()
    }
}

/// A TCP proxy on a free loopback port in front of a Redis server, which a
/// test can cut and restore: one node loses Redis while the others keep
/// it. Cut, every connection through it is closed and new ones are either
/// refused (the port closed, as when Redis's host is gone) or accepted and
/// closed at once (as a TCP load balancer with no backend does).
pub struct RedisProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    state: Arc<ProxyState>,
    accepter: Option<std::thread::JoinHandle<()>>,
}

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Refuse,
    AcceptAndClose,
    Stop,
}

struct ProxyState {
    target: u16,
    mode: Mutex<Mode>,
    /// Both ends of every connection piped so far (closed ones included;
    /// shutting those down again is harmless).
    live: Mutex<Vec<TcpStream>>,
}

impl ProxyState {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
}

/// How often the accepting thread looks at the mode.
const PROXY_TICK: Duration = Duration::from_millis(5);

impl RedisProxy {
    /// Starts a proxy to `127.0.0.1:target`.
    pub fn start(target: u16) -> RedisProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            target,
            mode: Mutex::new(Mode::Pass),
            live: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let accepter = std::thread::spawn(move || accept_loop(listener, port, &shared));
        RedisProxy {
            port,
            state,
            accepter: Some(accepter),
        }
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The proxy's URL, parsed as the server's config takes it.
    pub fn redis_url(&self) -> RedisUrl {
        RedisUrl::parse(&self.url()).expect("a valid redis URL")
    }

    /// Closes every connection through the proxy and its port: new
    /// connections are refused until [`RedisProxy::restore`].
    pub fn cut(&self) {
        self.set(Mode::Refuse);
    }

    /// Closes every connection through the proxy; new ones are accepted
    /// and closed at once, until [`RedisProxy::restore`].
    pub fn accept_and_close(&self) {
        self.set(Mode::AcceptAndClose);
    }

    /// Lets connections through again (on the same port).
    pub fn restore(&self) {
        self.set(Mode::Pass);
    }

    fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
        if mode != Mode::Pass {
            for stream in self.state.live.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.set(Mode::Stop);
        if let Some(accepter) = self.accepter.take() {
            let _ = accepter.join();
        }
    }
}

/// Accepts (non-blocking, looking at the mode every [`PROXY_TICK`]) and
/// pipes, closes or refuses; closes the port while refusing and binds it
/// again after.
fn accept_loop(listener: TcpListener, port: u16, state: &ProxyState) {
    let mut listener = Some(listener);
    loop {
        let mode = state.mode();
        match (mode, &listener) {
            (Mode::Stop, _) => return,
            (Mode::Refuse, Some(_)) => listener = None,
            (Mode::Pass | Mode::AcceptAndClose, None) => {
                // The port was ours a moment ago; retry until it is again.
                listener = TcpListener::bind(("127.0.0.1", port)).ok();
            }
            _ => {}
        }
        let Some(open) = &listener else {
            std::thread::sleep(PROXY_TICK);
            continue;
        };
        open.set_nonblocking(true).expect("non-blocking listener");
        let client = match open.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(PROXY_TICK);
                continue;
            }
            Err(_) => continue,
        };
        let _ = client.set_nonblocking(false);
        if mode != Mode::Pass {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", state.target)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let pipes = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        );
        let (Ok(c1), Ok(s1), Ok(c2), Ok(s2)) = pipes else {
            continue;
        };
        {
            let mut live = state.live.lock().unwrap();
            live.push(client);
            live.push(server);
        }
        std::thread::spawn(move || pipe(c1, s1));
        std::thread::spawn(move || pipe(s2, c2));
    }
}

/// Copies `from` to `to` until either end closes, then closes both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

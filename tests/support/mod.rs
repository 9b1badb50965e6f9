//! Test helpers: an in-process server on 127.0.0.1:0 and socket helpers
//! that wait with deadlines, never with sleeps.
#![allow(dead_code)]

pub mod redis;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ssehub::{Config, Handle, Server};

/// The built `ssehub` binary with `args` and only the given `SSEHUB_*`
/// variables: none is inherited from the test's own environment.
pub fn ssehub_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("SSEHUB_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// The `ADDR:PORT` after `http://` in a log line.
#[track_caller]
pub fn address_in(line: &str) -> SocketAddr {
    let rest = &line[line.find("http://").expect("a URL") + "http://".len()..];
    let end = rest.find(['/', ' ']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("no address in {line:?}"))
}

/// How long a helper waits for bytes before failing the test.
pub const WAIT: Duration = Duration::from_secs(5);

/// A server running on its own thread, shut down when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its cross-thread handle.
    pub handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with the default config (heartbeats on, 1 s).
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// Starts a server after `tune` adjusted the config.
    pub fn with(tune: impl FnOnce(&mut Config)) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let addr = listener.local_addr().unwrap();
        let mut config = Config {
            bind: addr,
            ..Config::default()
        };
        tune(&mut config);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut server = Server::from_listener(listener, config).expect("server starts");
            tx.send(server.handle()).unwrap();
            server.run().expect("loop runs");
        });
        let handle = rx.recv_timeout(WAIT).expect("server started");
        TestServer {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    /// A new client connection with a read time-out.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends one request on a new connection and reads the whole response.
    pub fn request(&self, raw: &str) -> Reply {
        let mut client = self.connect();
        client.send(raw.as_bytes());
        client.read_reply()
    }

    /// `GET path` with `Connection: close`.
    pub fn get(&self, path: &str) -> Reply {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
    }

    /// `POST path` with a body and content type.
    pub fn post(&self, path: &str, content_type: &str, body: &str) -> Reply {
        self.request(&format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    /// Posts a chat message and returns its id.
    #[track_caller]
    pub fn post_message(&self, room: &str, user: &str, text: &str) -> u64 {
        let body = serde_json::json!({"room": room, "user": user, "text": text}).to_string();
        let reply = self.post("/messages", "application/json", &body);
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["id"].as_u64().expect("id")
    }

    /// Publishes a custom event over HTTP and returns its id.
    #[track_caller]
    pub fn publish(&self, room: &str, event: &str, body: &str) -> u64 {
        let reply = self.post(
            &format!("/publish?room={room}&event={event}"),
            "text/plain",
            body,
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["id"].as_u64().expect("id")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header lines as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One raw client connection.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read but not yet consumed.
    pub pending: Vec<u8>,
}

impl Client {
    /// Connects with a short read time-out used to poll deadlines.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    /// Writes all bytes.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads once into `pending`; returns false on EOF.
    fn fill(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        match self.stream.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Reads until `pending` contains `needle`, then returns and consumes
    /// everything up to and including it.
    #[track_caller]
    pub fn read_until(&mut self, needle: &[u8]) -> Vec<u8> {
        self.read_until_within(needle, WAIT).unwrap_or_else(|| {
            panic!(
                "timed out waiting for {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.pending)
            )
        })
    }

    /// Like `read_until`, but `None` when `within` passes first or the peer closes.
    pub fn read_until_within(&mut self, needle: &[u8], within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = find(&self.pending, needle) {
                let rest = self.pending.split_off(at + needle.len());
                return Some(std::mem::replace(&mut self.pending, rest));
            }
            if Instant::now() >= deadline || !self.fill() {
                return None;
            }
        }
    }

    /// Reads until the peer closes (or `WAIT` passes, which fails).
    #[track_caller]
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        while self.fill() {
            assert!(
                Instant::now() < deadline,
                "peer did not close: {:?}",
                String::from_utf8_lossy(&self.pending)
            );
        }
        std::mem::take(&mut self.pending)
    }

    /// Whether the peer closes within `within`.
    pub fn closes_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.fill() {
                return true;
            }
        }
        false
    }

    /// Reads one response with a `Content-Length` body (or none for 1xx/204/HEAD-like).
    #[track_caller]
    pub fn read_reply(&mut self) -> Reply {
        self.read_reply_for(false)
    }

    /// Reads one response; `head_request` means no body follows whatever the length says.
    #[track_caller]
    pub fn read_reply_for(&mut self, head_request: bool) -> Reply {
        let head = self.read_until(b"\r\n\r\n");
        let text = String::from_utf8(head).expect("UTF-8 head");
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = reply
            .header("content-length")
            .map(|v| v.parse().expect("length"))
            .unwrap_or(0);
        if !head_request && length > 0 {
            let deadline = Instant::now() + WAIT;
            while self.pending.len() < length {
                assert!(self.fill() && Instant::now() < deadline, "body cut short");
            }
            let rest = self.pending.split_off(length);
            reply.body = std::mem::replace(&mut self.pending, rest);
        }
        reply
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One parsed server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `id:` if present.
    pub id: Option<String>,
    /// `event:` if present.
    pub event: Option<String>,
    /// Data lines joined with LF.
    pub data: String,
    /// Whether any `data:` line came.
    pub has_data: bool,
    /// `retry:` if present.
    pub retry: Option<u64>,
}

/// An event-stream reader on a raw connection.
pub struct Stream {
    /// The connection.
    pub client: Client,
    /// The response head.
    pub head: Reply,
}

impl Stream {
    /// Opens `GET path` with extra header lines (each ending in CRLF).
    #[track_caller]
    pub fn open(server: &TestServer, path: &str, extra_headers: &str) -> Stream {
        let mut client = server.connect();
        client.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra_headers}\r\n").as_bytes());
        let head = client.read_reply_for(true);
        Stream { client, head }
    }

    /// The next block (up to a blank line), parsed per the WHATWG rules.
    #[track_caller]
    pub fn next_block(&mut self) -> SseEvent {
        self.next_block_within(WAIT)
            .expect("timed out waiting for an event")
    }

    /// The next block, or `None` if none comes within `within` (or on close).
    pub fn next_block_within(&mut self, within: Duration) -> Option<SseEvent> {
        let raw = self.client.read_until_within(b"\n\n", within)?;
        Some(parse_block(&String::from_utf8(raw).expect("UTF-8 stream")))
    }

    /// The next block that is not a heartbeat or presence event.
    #[track_caller]
    pub fn next_event(&mut self) -> SseEvent {
        loop {
            let block = self.next_block();
            match block.event.as_deref() {
                Some("heartbeat") | Some("presence") => continue,
                _ => return block,
            }
        }
    }

    /// Skips blocks until one named `name` arrives.
    #[track_caller]
    pub fn wait_for(&mut self, name: &str) -> SseEvent {
        loop {
            let block = self.next_block();
            if block.event.as_deref() == Some(name) {
                return block;
            }
        }
    }
}

/// Parses one block (without its final blank line) of `\n`-ended lines.
pub fn parse_block(raw: &str) -> SseEvent {
    let mut event = SseEvent::default();
    let mut data: Vec<&str> = Vec::new();
    for line in raw.split('\n').filter(|l| !l.is_empty()) {
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => event.id = Some(value.to_string()),
            "event" => event.event = Some(value.to_string()),
            "data" => data.push(value),
            "retry" => event.retry = value.parse().ok(),
            _ => {}
        }
    }
    event.has_data = !data.is_empty();
    event.data = data.join("\n");
    event
}

// ----- helpers added for the integration suites (http, sse, limits, static_files, cli) -----

impl TestServer {
    /// The value of one sample of `/metrics`, by its full name with labels
    /// (`ssehub_messages_total`, `ssehub_requests_total{code="404"}`);
    /// 0 when the sample is absent.
    #[track_caller]
    pub fn metric(&self, sample: &str) -> f64 {
        let reply = self.get("/metrics");
        assert_eq!(reply.status, 200, "{}", reply.text());
        let text = reply.text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == sample).then(|| value.parse::<f64>().expect("metric value"))
            })
            .unwrap_or(0.0)
    }

    /// `/healthz` as JSON.
    #[track_caller]
    pub fn health(&self) -> serde_json::Value {
        let reply = self.get("/healthz");
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// The newest id of the sequence, from `/healthz`.
    #[track_caller]
    pub fn last_id(&self) -> u64 {
        self.health()["last_id"].as_u64().expect("last_id")
    }

    /// Fails unless an ordinary request is answered: the server is alive.
    #[track_caller]
    pub fn assert_alive(&self) {
        let reply = self.get("/healthz");
        assert_eq!(
            reply.status,
            200,
            "server no longer answers: {}",
            reply.text()
        );
        assert_eq!(reply.json()["status"], "ok");
    }
}

/// Polls `check` until it holds or `within` passes; returns whether it held.
/// For conditions the server reaches by itself (a closed stream reaped…).
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Stream {
    /// The next raw block, its final blank line included (`"id: 1\n…\n\n"`).
    #[track_caller]
    pub fn next_raw(&mut self) -> String {
        let raw = self.client.read_until(b"\n\n");
        String::from_utf8(raw).expect("UTF-8 stream")
    }

    /// The next raw block that is not a heartbeat or presence event.
    #[track_caller]
    pub fn next_raw_event(&mut self) -> String {
        loop {
            let raw = self.next_raw();
            if !raw.starts_with("event: heartbeat\n") && !raw.starts_with("event: presence\n") {
                return raw;
            }
        }
    }

    /// Reads the `retry:` and `hello` blocks that open every stream and
    /// returns the hello's data as JSON.
    #[track_caller]
    pub fn skip_preamble(&mut self) -> serde_json::Value {
        assert_eq!(self.head.status, 200, "not a stream: {:?}", self.head);
        let retry = self.next_block();
        assert_eq!(retry.retry, Some(2000), "{retry:?}");
        let hello = self.next_block();
        assert_eq!(hello.event.as_deref(), Some("hello"), "{hello:?}");
        serde_json::from_str(&hello.data).expect("hello JSON")
    }
}

/// A fresh folder under the system temp dir, removed on drop (also when a
/// test fails).
pub struct TempDir {
    /// The folder.
    pub path: std::path::PathBuf,
}

impl TempDir {
    /// Creates an empty folder whose name holds `tag`, the process id and a counter.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ssehub-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// Writes `contents` to `rel` under the folder, creating parent folders.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> std::path::PathBuf {
        let path = self.path.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

//! Hostile clients: tricklers, floods, garbage, half-closes, resets, idle
//! crowds, a full house and an exhausted file table. Real sockets on
//! loopback against a server of its own per test; every count and wait is
//! bounded. Each test ends the same way: `/healthz` still answers 200 and a
//! stream opened before the attack still receives a freshly published event.
//!
//! Resets are made with std alone: Linux answers `close()` on a socket that
//! still holds unread received bytes with an RST instead of a FIN, so each
//! resetting client first waits (with `peek`) until the server has sent it
//! something, then drops the socket unread.
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// A short header time-out, so that time-out tests take seconds.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

// ----- helpers -----------------------------------------------------------

/// Opens the stream that must survive the test, past its `retry:` and `hello`.
#[track_caller]
fn open_witness(addr: SocketAddr) -> Stream {
    let mut client = Client::connect(addr);
    client
        .send(b"GET /events?room=witness HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
    let head = client.read_reply_for(true);
    assert_eq!(head.status, 200);
    let mut stream = Stream { client, head };
    stream.wait_for("hello");
    stream
}

/// `/healthz` of the server at `addr`, as JSON.
#[track_caller]
fn healthz(addr: SocketAddr) -> serde_json::Value {
    let mut client = Client::connect(addr);
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let reply = client.read_reply();
    assert_eq!(reply.status, 200, "/healthz: {}", reply.text());
    reply.json()
}

/// Publishes `data` as event `name` in `room` over HTTP; returns its id.
#[track_caller]
fn publish_to(addr: SocketAddr, room: &str, name: &str, data: &str) -> u64 {
    let mut client = Client::connect(addr);
    client.send(
        format!(
            "POST /publish?room={room}&event={name} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{data}",
            data.len()
        )
        .as_bytes(),
    );
    let reply = client.read_reply();
    assert_eq!(reply.status, 201, "publish: {}", reply.text());
    reply.json()["id"].as_u64().expect("id")
}

/// The end of every test: the server answers `/healthz` and the witness
/// stream receives an event published now, with its id.
#[track_caller]
fn assert_still_serving(addr: SocketAddr, witness: &mut Stream, tag: &str) {
    let health = healthz(addr);
    assert_eq!(health["status"], "ok");
    let id = publish_to(addr, "witness", "check", tag);
    let event = witness.wait_for("check");
    assert_eq!(event.data, tag);
    assert_eq!(event.id, Some(id.to_string()));
}

/// The next event named `name` (skipping heartbeats and others), or `None`
/// if it does not come within `within`.
fn next_named_within(stream: &mut Stream, name: &str, within: Duration) -> Option<SseEvent> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let block = stream.next_block_within(left)?;
        if block.event.as_deref() == Some(name) {
            return Some(block);
        }
    }
}

/// Waits until the server's open streams and connections fall to the
/// witness and the `/healthz` request itself (other connections closed and
/// reaped), failing after `within`.
#[track_caller]
fn assert_settles(addr: SocketAddr, within: Duration) {
    let mut last = serde_json::Value::Null;
    let settled = eventually(within, || {
        last = healthz(addr);
        last["streams"] == 1 && last["connections"] == 2
    });
    assert!(settled, "connections not reaped: {last}");
}

/// Opens `n` connections that send nothing. Every 100 connects it waits for
/// a `/healthz` answer: that request queues behind the others, so the
/// listen backlog never overflows (an overflow costs a connect a 1 s SYN
/// retransmission, and many of them would outlast the header time-out).
#[track_caller]
fn open_crowd(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut crowd = Vec::with_capacity(n);
    for at in 0..n {
        if at % 100 == 99 {
            healthz(addr);
        }
        let socket =
            TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("connect {at}: {e}"));
        crowd.push(socket);
    }
    crowd
}

/// Reads from a raw socket until EOF (or a reset), at most `within`; returns
/// what came, or `None` if the peer kept the connection open.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream
            .set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(got),
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Waits (up to 5 s) until the server has sent `stream` something, leaves
/// it unread and drops the socket: the kernel answers with an RST.
#[track_caller]
fn reset_after_reply(stream: TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut one = [0u8; 1];
    let n = stream.peek(&mut one).expect("the server answered");
    assert_eq!(n, 1, "the server closed instead of answering");
    drop(stream);
}

/// Sends a request and returns the status of the one response, then checks
/// that the server closes the connection.
#[track_caller]
fn status_then_close(addr: SocketAddr, raw: &[u8]) -> u16 {
    let mut client = Client::connect(addr);
    client.send(raw);
    let reply = client.read_reply();
    assert!(
        client.closes_within(WAIT),
        "connection left open after {}",
        reply.status
    );
    reply.status
}

// ----- slow and silent clients -------------------------------------------

/// 1,000 clients that send one header byte a second are answered 408 (or
/// closed) once the header time-out passes, while the witness stream keeps
/// receiving events within a second of their publication.
#[test]
fn trickling_headers_time_out_while_streams_flow() {
    let server = TestServer::with(|c| c.header_timeout = HEADER_TIMEOUT);
    let mut witness = open_witness(server.addr);
    let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut tricklers = open_crowd(server.addr, 1000);
    let started = Instant::now();
    // One byte a second each, for longer than the header time-out.
    for (round, byte) in request.iter().take(4).enumerate() {
        let round_start = Instant::now();
        for trickler in &mut tricklers {
            // Once the server has closed it, a write may fail: that is the point.
            let _ = trickler.write(std::slice::from_ref(byte));
        }
        if round == 1 {
            // A second in, before the time-out: nobody has been cut yet.
            for (n, trickler) in tricklers.iter().enumerate() {
                trickler.set_nonblocking(true).unwrap();
                let mut one = [0u8; 1];
                match trickler.peek(&mut one) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    other => panic!("trickler {n} cut before the time-out: {other:?}"),
                }
                trickler.set_nonblocking(false).unwrap();
            }
        }
        let id = publish_to(server.addr, "witness", "tick", &round.to_string());
        let event = next_named_within(&mut witness, "tick", Duration::from_secs(2))
            .unwrap_or_else(|| panic!("witness missed tick {round} while tricklers wait"));
        assert_eq!(event.id, Some(id.to_string()));
        let spent = round_start.elapsed();
        if spent < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_secs(1) - spent);
        }
    }
    // Every trickler is answered 408 and closed, or just closed.
    let deadline = started + HEADER_TIMEOUT + Duration::from_secs(6);
    let mut answered_408 = 0;
    for (n, trickler) in tricklers.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(100);
        let got = read_until_closed(trickler, left)
            .unwrap_or_else(|| panic!("trickler {n} still open after the header time-out"));
        if got.starts_with(b"HTTP/1.1 408 ") {
            answered_408 += 1;
        } else {
            assert!(
                got.is_empty(),
                "trickler {n} got {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    assert!(answered_408 > 0, "no trickler was told 408");
    drop(tricklers);
    assert_settles(server.addr, WAIT);
    assert_still_serving(server.addr, &mut witness, "after tricklers");
}

/// Clients that send a head, then trickle its body a byte at a time, are
/// answered 408 once the idle time-out passes, not held forever.
#[test]
fn trickling_bodies_time_out() {
    let server = TestServer::with(|c| {
        c.header_timeout = HEADER_TIMEOUT;
        c.idle_timeout = HEADER_TIMEOUT;
    });
    let mut witness = open_witness(server.addr);
    let mut tricklers: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(
                b"POST /publish?room=witness HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n",
            )
            .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    // A byte every 250 ms would take 25 s for the whole body.
    while started.elapsed() < HEADER_TIMEOUT + Duration::from_secs(2) {
        for trickler in &mut tricklers {
            let _ = trickler.write(b"x");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for (n, trickler) in tricklers.iter_mut().enumerate() {
        let got = read_until_closed(trickler, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("body trickler {n} still open"));
        assert!(
            got.starts_with(b"HTTP/1.1 408 "),
            "body trickler {n} got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    drop(tricklers);
    assert_settles(server.addr, WAIT);
    assert!(
        server
            .get("/messages?room=witness")
            .json()
            .as_array()
            .unwrap()
            .is_empty(),
        "a partial body was published"
    );
    assert_still_serving(server.addr, &mut witness, "after body tricklers");
}

/// A client that pipelines requests without ever reading the answers
/// makes the server stop reading it (its answers are bounded), and it is
/// closed at the time-out; others are served meanwhile.
#[test]
fn pipelining_without_reading_is_bounded() {
    let server = TestServer::with(|c| c.header_timeout = HEADER_TIMEOUT);
    let mut witness = open_witness(server.addr);
    let flooder = TcpStream::connect(server.addr).unwrap();
    flooder
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = flooder.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let batch = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".repeat(1000);
        let started = Instant::now();
        // 400,000 requests: far more than the socket buffers can hold.
        for _ in 0..400 {
            if let Err(e) = writer.write_all(&batch) {
                return (e.kind(), started.elapsed());
            }
        }
        (std::io::ErrorKind::Other, started.elapsed())
    });
    // Served while the flooder is stuck (it fills the buffers in moments).
    assert_still_serving(server.addr, &mut witness, "during the flood");
    let (why, after) = sender.join().unwrap();
    assert!(
        matches!(
            why,
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "the flooder was not cut off: {why:?} after {after:?}"
    );
    drop(flooder);
    assert_settles(server.addr, WAIT);
    assert_still_serving(server.addr, &mut witness, "after the flood");
}

/// 5,000 connections that never send a byte are closed at the header
/// time-out; meanwhile ordinary requests and streams are served.
#[test]
fn silent_crowd_is_closed_at_the_header_timeout() {
    let server = TestServer::with(|c| c.header_timeout = HEADER_TIMEOUT);
    let mut witness = open_witness(server.addr);
    let started = Instant::now();
    let mut crowd = open_crowd(server.addr, 5000);
    // Held until the time-out: all of it, if opening took well under it.
    let held = healthz(server.addr)["connections"].as_u64().unwrap();
    if started.elapsed() < HEADER_TIMEOUT / 2 {
        assert_eq!(held, 5000 + 2, "the crowd was not held open");
    }
    // Served while the crowd holds its connections.
    assert_still_serving(server.addr, &mut witness, "during the crowd");
    // All of it is closed by the server, soon after the time-out.
    assert_settles(server.addr, HEADER_TIMEOUT + Duration::from_secs(5));
    for (n, socket) in crowd.iter_mut().enumerate() {
        let got = read_until_closed(socket, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("silent connection {n} still open"));
        assert!(got.is_empty(), "a silent connection was sent {got:?}");
    }
    drop(crowd);
    assert_still_serving(server.addr, &mut witness, "after the crowd");
}

// ----- floods ---------------------------------------------------------------

/// Too many header lines, a 64 KiB header line and a 64 KiB request target
/// are refused (431, 431, 414) and the connection closed.
#[test]
fn header_floods_get_431_and_close() {
    let server = TestServer::start();
    let mut witness = open_witness(server.addr);

    let mut many = b"GET /healthz HTTP/1.1\r\nHost: t\r\n".to_vec();
    for n in 0..200 {
        many.extend_from_slice(format!("X-Flood-{n}: {n}\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(status_then_close(server.addr, &many), 431);

    let mut long_line = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Long: ".to_vec();
    long_line.resize(long_line.len() + 64 * 1024, b'a');
    long_line.extend_from_slice(b"\r\n\r\n");
    assert_eq!(status_then_close(server.addr, &long_line), 431);

    let mut long_target = b"GET /".to_vec();
    long_target.resize(64 * 1024, b'a');
    long_target.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status_then_close(server.addr, &long_target), 414);

    assert_settles(server.addr, WAIT);
    assert_still_serving(server.addr, &mut witness, "after header floods");
}

/// A 10 MB body (with a length, chunked, and after `Expect: 100-continue`)
/// is answered 413 while the client is still sending, and the client reads
/// the answer.
#[test]
fn ten_megabyte_bodies_get_413() {
    let server = TestServer::start();
    let mut witness = open_witness(server.addr);
    const SIZE: usize = 10_000_000;

    // Content-Length, body sent at once by another thread.
    let mut client = Client::connect(server.addr);
    let mut head = format!(
        "POST /publish?room=witness HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {SIZE}\r\n\r\n"
    )
    .into_bytes();
    client.send(&head);
    let mut writer = client.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < SIZE {
            if writer.write_all(&chunk).is_err() {
                break; // the server closed: expected once it answered
            }
            sent += chunk.len();
        }
    });
    let reply = client.read_reply();
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(reply.json()["error"].is_string());
    assert!(client.closes_within(WAIT));
    drop(client);
    sender.join().unwrap();

    // Chunked, no length: refused once the decoded body passes --max-body.
    let mut client = Client::connect(server.addr);
    client.send(
        b"POST /publish?room=witness HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let mut writer = client.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut chunk = b"10000\r\n".to_vec();
        chunk.resize(chunk.len() + 0x10000, b'y');
        chunk.extend_from_slice(b"\r\n");
        for _ in 0..SIZE / 0x10000 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let reply = client.read_reply();
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(client.closes_within(WAIT));
    drop(client);
    sender.join().unwrap();

    // Expect: 100-continue: 413 at once, never a 100 first.
    let mut client = Client::connect(server.addr);
    head.splice(
        head.len() - 2..head.len() - 2,
        b"Expect: 100-continue\r\n".iter().copied(),
    );
    client.send(&head);
    let reply = client.read_reply();
    assert_eq!(reply.status, 413);
    assert!(client.closes_within(WAIT));
    drop(client);

    assert_settles(server.addr, WAIT);
    assert_still_serving(server.addr, &mut witness, "after big bodies");
}

// ----- garbage --------------------------------------------------------------

/// A TLS ClientHello, binary noise and a line that is no request are
/// answered 400 and closed.
#[test]
fn garbage_and_tls_get_400_and_close() {
    let server = TestServer::start();
    let mut witness = open_witness(server.addr);

    // A TLS 1.3 ClientHello's first bytes, as a browser sends to https://.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend((0u8..32).map(|i| i.wrapping_mul(37)));
    hello.extend_from_slice(&[0x20]);
    hello.extend(0u8..32);
    hello.extend_from_slice(&[0x00, 0x06, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0x01, 0x00]);
    hello.extend_from_slice(b"\x00\x00\x00\x0e\x00\x0c\x00\x00\x09localhost");
    let mut noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    noise[0] = 0xff;
    let cases: &[(&str, &[u8])] = &[
        ("TLS ClientHello", &hello),
        ("binary noise", &noise),
        ("NUL bytes", b"\x00\x00\x00\x00\r\n\r\n"),
        ("no request", b"GARBAGE\r\n\r\n"),
        ("SSH banner", b"SSH-2.0-OpenSSH_9.6\r\n"),
        ("bad header", b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n"),
    ];
    for (what, raw) in cases {
        let status = status_then_close(server.addr, raw);
        assert_eq!(status, 400, "{what}");
    }

    assert_settles(server.addr, WAIT);
    assert_still_serving(server.addr, &mut witness, "after garbage");
}

// ----- half-closes and resets ---------------------------------------------

/// A client that shuts its write side right after its request(s) still
/// gets every answer, then the close.
#[test]
fn half_closed_clients_get_their_answers() {
    let server = TestServer::start();
    let mut witness = open_witness(server.addr);

    let mut client = Client::connect(server.addr);
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    client.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(client.read_reply().status, 200);
    assert!(client.closes_within(WAIT));

    // Pipelined, then half-closed: both answers, in order.
    let mut client = Client::connect(server.addr);
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /rooms HTTP/1.1\r\nHost: t\r\n\r\n");
    client.stream.shutdown(Shutdown::Write).unwrap();
    let first = client.read_reply();
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["status"], "ok");
    let second = client.read_reply();
    assert_eq!(second.status, 200);
    assert!(second.json().is_array());
    assert!(client.closes_within(WAIT));

    // A publish with its body, then half-closed: answered and delivered.
    let body = "sent, then half-closed";
    let mut client = Client::connect(server.addr);
    client.send(
        format!(
            "POST /publish?room=witness&event=half HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    client.stream.shutdown(Shutdown::Write).unwrap();
    let reply = client.read_reply();
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert!(client.closes_within(WAIT));
    let event = witness.wait_for("half");
    assert_eq!(event.data, body);
    assert_eq!(
        event.id,
        Some(reply.json()["id"].as_u64().unwrap().to_string())
    );

    assert_settles(server.addr, WAIT);
    assert_still_serving(server.addr, &mut witness, "after half-closes");
}

/// Clients that vanish with an RST mid-request (inside a body, between
/// pipelined requests) or mid-stream, and clients that just hang up inside
/// a header, leave no trace: every connection and stream is reaped.
#[test]
fn resets_mid_request_and_mid_stream_leave_no_trace() {
    let server = TestServer::start();
    let mut witness = open_witness(server.addr);
    for round in 0..20 {
        // Inside a body, after the server's 100 Continue.
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"POST /publish?room=witness HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\npartial body")
            .unwrap();
        reset_after_reply(s);

        // Between pipelined requests: the first answered, the second cut.
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /rooms HTTP/1.1\r\nHo")
            .unwrap();
        reset_after_reply(s);

        // An open stream, with events queued for it.
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /events?room=witness HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut one = [0u8; 1];
        assert_eq!(s.peek(&mut one).unwrap(), 1);
        publish_to(server.addr, "witness", "noise", &format!("round {round}"));
        reset_after_reply(s);

        // Hung up (FIN) inside a header.
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /events?room=witness HTTP/1.1\r\nHost")
            .unwrap();
        drop(s);
    }
    // Nothing of them is left, and no partial publish went out.
    assert_settles(server.addr, WAIT);
    let history = server.get("/messages?room=witness");
    assert_eq!(history.status, 200);
    let events = history.json();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["data"] != "partial body"),
        "a cut body was published: {events}"
    );
    // The witness saw the 20 noise events, each once, in order.
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let event = witness.wait_for("noise");
        seen.push(event.data);
    }
    let expected: Vec<String> = (0..20).map(|r| format!("round {r}")).collect();
    assert_eq!(seen, expected);
    assert_still_serving(server.addr, &mut witness, "after resets");
}

// ----- full house ---------------------------------------------------------

/// With `max_clients` streams open, a new stream gets 200, a randomised
/// `retry:`, one `busy` event without an id, and is closed; ordinary
/// requests are still served; once a stream closes, a new one is admitted.
#[test]
fn full_house_answers_busy_then_admits_when_a_slot_frees() {
    let server = TestServer::with(|c| c.max_clients = 3);
    let mut witness = open_witness(server.addr);
    let mut a = open_witness(server.addr);
    let b = open_witness(server.addr);

    for _ in 0..3 {
        let mut busy = Stream::open(&server, "/events?room=witness", "");
        assert_eq!(busy.head.status, 200);
        assert_eq!(busy.head.header("content-type"), Some("text/event-stream"));
        let retry = busy.next_block();
        let retry_ms = retry.retry.expect("a retry: line");
        assert!(
            (1000..=10_000).contains(&retry_ms),
            "retry {retry_ms} ms is not a few seconds"
        );
        let event = busy.next_block();
        assert_eq!(event.event.as_deref(), Some("busy"));
        assert_eq!(event.id, None, "busy must not move Last-Event-ID");
        let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["retry_ms"], retry_ms);
        assert!(busy.client.closes_within(WAIT), "busy stream left open");
    }
    // Ordinary requests are still served.
    assert_eq!(healthz(server.addr)["streams"], 3);

    // A slot frees: the next stream is admitted and receives events.
    drop(b);
    assert!(
        eventually(WAIT, || healthz(server.addr)["streams"] == 2),
        "closed stream not reaped"
    );
    let mut admitted = open_witness(server.addr);
    let id = publish_to(server.addr, "witness", "after", "slot freed");
    for stream in [&mut witness, &mut a, &mut admitted] {
        let event = stream.wait_for("after");
        assert_eq!(event.id, Some(id.to_string()));
    }
    drop(a);
    drop(admitted);
    assert_settles(server.addr, WAIT);
    assert_still_serving(server.addr, &mut witness, "after the full house");
}

// ----- out of file descriptors -------------------------------------------

/// The built binary, as a child process, killed when dropped.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
    /// Its stderr lines, read by a thread.
    log: mpsc::Receiver<String>,
}

impl ChildServer {
    /// Starts `ssehub` on a free loopback port with at most `nofile` open files.
    fn start(nofile: u32) -> ChildServer {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_ssehub"))
            .args(["--bind", "127.0.0.1:0", "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ssehub");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = log.recv_timeout(left).expect("ssehub logs its address");
            if let Some(rest) = line.split("http://").nth(1) {
                let addr = rest.split('/').next().unwrap();
                break addr.parse().expect("address in the log line");
            }
        };
        ChildServer { child, addr, log }
    }

    /// User plus system CPU time so far, in seconds, from /proc.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        // utime and stime are fields 14 and 15; the slice starts at field 3.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / clock_ticks() as f64
    }

    /// Open file descriptors of the process.
    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The stderr lines logged so far.
    fn drain_log(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second, for /proc CPU times.
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The status of `GET /healthz`, or `None` if no answer comes within 1 s.
fn try_healthz(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).ok()?;
    let line = String::from_utf8_lossy(&got);
    line.split(' ').nth(1)?.parse().ok()
}

/// Out of file descriptors (EMFILE): the server stays up, does not spin,
/// keeps its streams, and serves again once connections close.
#[test]
fn out_of_file_descriptors_neither_crashes_nor_spins() {
    const NOFILE: u32 = 64;
    let mut server = ChildServer::start(NOFILE);
    let mut witness = open_witness(server.addr);

    // More connections than the server has descriptors for.
    let mut crowd = Vec::new();
    for n in 0..(NOFILE as usize + 40) {
        let socket = TcpStream::connect_timeout(&server.addr, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("connect {n}: {e}"));
        crowd.push(socket);
    }
    assert!(
        eventually(WAIT, || server.open_fds() >= NOFILE as usize),
        "the server never ran out: {} fds open",
        server.open_fds()
    );
    // Saturated for 2 s: the loop must sleep, not spin on accept.
    let cpu_before = server.cpu_seconds();
    let measured = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = server.cpu_seconds() - cpu_before;
    let share = cpu / measured.elapsed().as_secs_f64();
    assert!(
        share < 0.5,
        "the server used {:.0}% of a core while out of descriptors",
        share * 100.0
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server died"
    );
    let log = server.drain_log();
    assert!(
        log.iter().any(|l| l.contains("out of file descriptors")),
        "no EMFILE warning in the log: {log:?}"
    );

    // The crowd leaves: the server accepts and serves again.
    drop(crowd);
    assert!(
        eventually(Duration::from_secs(10), || try_healthz(server.addr)
            == Some(200)),
        "the server does not serve after descriptors freed"
    );
    assert_still_serving(server.addr, &mut witness, "after EMFILE");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server died"
    );
}

/// A thousand browsers reconnecting at once (a restart, a Wi-Fi hiccup) all
/// get through the handshake while the loop is busy elsewhere: the accept
/// queue holds them. With std's default backlog of 128 the 130th connect's
/// SYN is dropped and waits a 1 s retransmit, which the short connect
/// time-out below turns into a failure.
#[test]
fn a_burst_of_connects_waits_in_the_accept_queue() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Built but not yet driven: nothing accepts until `run` below.
    let mut server =
        ssehub::server::Server::from_listener(listener, ssehub::config::Config::default())
            .expect("server");
    // The kernel caps every accept queue at net.core.somaxconn (4096 on
    // Linux since 5.4); a machine set lower cannot show more than that.
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(4096);
    let burst = somaxconn.min(1000);
    let mut queued = Vec::new();
    for i in 0..burst {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(socket) => queued.push(socket),
            Err(e) => panic!("connect {i} of {burst} failed while the loop was busy: {e}"),
        }
    }
    // Now the loop runs (here; the server stays on this thread) and must
    // serve every queued connection.
    let handle = server.handle();
    let clients = std::thread::spawn(move || {
        for socket in queued.iter_mut().step_by(97) {
            socket
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reply = String::new();
            socket.read_to_string(&mut reply).unwrap();
            assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        }
        handle.shutdown().unwrap();
    });
    server.run().unwrap();
    clients.join().unwrap();
}

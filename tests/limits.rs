//! Limits and hostile clients over real sockets: time-outs, oversized
//! bodies and headers, garbage, slow consumers and the full house. After
//! each, another client must still be served.
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::*;

/// Generous bound for the server to act on a short (1 s) time-out.
const TIMEOUT_DEADLINE: Duration = Duration::from_secs(10);

#[track_caller]
fn assert_json_error(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{reply:?} {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let length: usize = reply
        .header("content-length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(length, reply.body.len());
    assert!(reply.json()["error"].is_string(), "{}", reply.text());
}

fn short_timeouts(c: &mut ssehub::Config) {
    c.header_timeout = Duration::from_secs(1);
    c.idle_timeout = Duration::from_secs(1);
}

/// Raw SSE bytes split into blocks (without their blank line).
fn blocks(raw: &[u8]) -> Vec<SseEvent> {
    let text = String::from_utf8_lossy(raw);
    let mut out: Vec<SseEvent> = text.split("\n\n").map(parse_block).collect();
    // The last piece is cut short (or empty) unless the stream ended on a block.
    out.pop();
    out
}

// ----- time-outs ----------------------------------------------------------

#[test]
fn idle_keep_alive_connection_is_closed() {
    let server = TestServer::with(short_timeouts);
    let mut client = server.connect();
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
    // Still usable right after the answer.
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
    assert!(
        client.closes_within(TIMEOUT_DEADLINE),
        "idle connection kept open"
    );
    assert!(
        client.pending.is_empty(),
        "bytes before close: {:?}",
        client.pending
    );
    assert_eq!(
        server.metric("ssehub_connections_closed_total{reason=\"timed_out\"}"),
        1.0
    );
    server.assert_alive();
}

#[test]
fn connection_that_sends_nothing_is_closed() {
    let server = TestServer::with(short_timeouts);
    let mut client = server.connect();
    assert!(
        client.closes_within(TIMEOUT_DEADLINE),
        "silent connection kept open"
    );
    server.assert_alive();
}

#[test]
fn unfinished_header_block_times_out() {
    let server = TestServer::with(short_timeouts);
    let mut client = server.connect();
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n");
    assert!(
        client.closes_within(TIMEOUT_DEADLINE),
        "half a request kept the connection"
    );
    // If the server said something, it is a 408 with a JSON error.
    if !client.pending.is_empty() {
        let text = String::from_utf8_lossy(&client.pending).into_owned();
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
        assert!(text.contains("Content-Length: "), "{text}");
    }
    server.assert_alive();
}

#[test]
fn trickling_header_bytes_do_not_hold_the_connection() {
    let server = TestServer::with(short_timeouts);
    let mut client = server.connect();
    let deadline = Instant::now() + TIMEOUT_DEADLINE;
    let trickle = b"GET /healthz HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'));
    for byte in trickle {
        assert!(
            Instant::now() < deadline,
            "a trickling client held the connection"
        );
        if client.stream.write_all(&[*byte]).is_err() {
            break; // the server closed it
        }
        // One byte per short read time-out (about 50 ms); stops on close.
        if client.closes_within(Duration::from_millis(50)) {
            break;
        }
    }
    server.assert_alive();
}

#[test]
fn body_that_never_comes_times_out() {
    let server = TestServer::with(short_timeouts);
    let mut client = server.connect();
    client.send(b"POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert!(
        client.closes_within(TIMEOUT_DEADLINE),
        "a stalled body held the connection"
    );
    assert_eq!(server.metric("ssehub_messages_total"), 0.0);
    server.assert_alive();
}

#[test]
fn streams_are_not_subject_to_the_idle_time_out() {
    let server = TestServer::with(|c| {
        short_timeouts(c);
        c.heartbeat = Duration::ZERO;
    });
    let mut stream = Stream::open(&server, "/events?room=quiet", "");
    stream.skip_preamble();
    // Create the condition: a silent stream well past both time-outs.
    std::thread::sleep(Duration::from_millis(2500));
    let id = server.publish("quiet", "e", "still here");
    let event = stream.next_event();
    let event = if event.has_data {
        event
    } else {
        stream.next_event()
    };
    assert_eq!(event.id, Some(id.to_string()));
    assert_eq!(event.data, "still here");
}

// ----- sizes ----------------------------------------------------------------

/// Sends `head` then up to `body_bytes` of body from another thread while
/// this one reads the answer, as a real client does.
fn send_big(
    server: &TestServer,
    head: String,
    body: impl Fn(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
) -> Reply {
    let mut client = server.connect();
    let mut writer = client.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // Errors are expected once the server has answered and closed.
        if writer.write_all(head.as_bytes()).is_ok() {
            let _ = body(&mut writer);
        }
    });
    let reply = client.read_reply();
    assert!(
        client.closes_within(TIMEOUT_DEADLINE),
        "connection not closed after the error"
    );
    sender.join().unwrap();
    reply
}

#[test]
fn ten_megabyte_body_is_413_and_readable() {
    let server = TestServer::start();
    let reply = send_big(
        &server,
        "POST /publish?room=big HTTP/1.1\r\nHost: t\r\nContent-Length: 10485760\r\n\r\n".into(),
        |w| {
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..160 {
                w.write_all(&chunk)?;
            }
            Ok(())
        },
    );
    assert_json_error(&reply, 413);
    assert_eq!(server.metric("ssehub_messages_total"), 0.0);
    server.assert_alive();
}

#[test]
fn ten_megabyte_chunked_body_is_413_and_readable() {
    let server = TestServer::start();
    let reply = send_big(
        &server,
        "POST /publish?room=big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
        |w| {
            let mut chunk = b"10000\r\n".to_vec();
            chunk.extend(std::iter::repeat_n(b'x', 0x10000));
            chunk.extend_from_slice(b"\r\n");
            for _ in 0..160 {
                w.write_all(&chunk)?;
            }
            w.write_all(b"0\r\n\r\n")
        },
    );
    assert_json_error(&reply, 413);
    server.assert_alive();
}

#[test]
fn max_body_is_the_exact_limit() {
    let server = TestServer::with(|c| c.max_body = 100);
    let ok = server.post("/publish?room=lim", "text/plain", &"x".repeat(100));
    assert_eq!(ok.status, 201, "{}", ok.text());
    let big = server.post("/publish?room=lim", "text/plain", &"x".repeat(101));
    assert_json_error(&big, 413);
    let chunked = server.request(&format!(
        "POST /publish?room=lim HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n{0}\r\n33\r\n{0}y\r\n0\r\n\r\n",
        "x".repeat(50)
    ));
    assert_json_error(&chunked, 413);
    server.assert_alive();
}

#[test]
fn header_block_over_8_kib_is_431() {
    let server = TestServer::start();
    let pad = "a".repeat(250);
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for n in 0..40 {
        head.push_str(&format!("X-Pad-{n}: {pad}\r\n"));
    }
    head.push_str("\r\n");
    assert!(head.len() > 8 * 1024);
    assert_json_error(&server.request(&head), 431);
    server.assert_alive();

    // One huge header line, never finished.
    let mut client = server.connect();
    let mut huge = b"GET / HTTP/1.1\r\nX-Huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'h', 20_000));
    client.send(&huge);
    assert_json_error(&client.read_reply(), 431);
    server.assert_alive();

    // Too many small headers.
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for n in 0..200 {
        head.push_str(&format!("X-{n}: 1\r\n"));
    }
    head.push_str("\r\n");
    assert_json_error(&server.request(&head), 431);

    // Just under the limit is fine.
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    head.push_str(&format!("X-Pad: {}\r\n\r\n", "b".repeat(7000)));
    assert_eq!(server.request(&head).status, 200);
}

#[test]
fn request_target_over_the_limit_is_414() {
    let server = TestServer::start();
    let head = format!(
        "GET /messages?room={} HTTP/1.1\r\nHost: t\r\n\r\n",
        "r".repeat(9000)
    );
    assert_json_error(&server.request(&head), 414);
    server.assert_alive();
}

#[test]
fn garbage_is_400_and_closes() {
    let server = TestServer::start();
    let cases: &[&[u8]] = &[
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x00\r\n\r\n",
        b"hello\r\n\r\n",
        b"\x00\x00\x00\x00\x00\x00",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET nopath HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: \xff\xfe\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\n\r\n",
    ];
    for bytes in cases {
        let mut client = server.connect();
        client.send(bytes);
        let reply = client.read_reply();
        assert_json_error(&reply, 400);
        assert!(client.closes_within(WAIT), "{bytes:?}: not closed");
        server.assert_alive();
    }
    // An HTTP/2 preface is refused too, with an error, not a crash.
    let mut client = server.connect();
    client.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let reply = client.read_reply();
    assert!(reply.status >= 400, "{reply:?}");
    assert!(reply.json()["error"].is_string());
    server.assert_alive();
}

#[test]
fn hostile_framing_values_are_refused() {
    let server = TestServer::start();
    let cases: &[(&str, u16)] = &[
        ("POST /publish HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\nx", 413),
        ("POST /publish HTTP/1.1\r\nContent-Length: -1\r\n\r\nx", 400),
        ("POST /publish HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx", 400),
        ("POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nx\r\n", 400),
        ("POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\nx", 413),
        ("POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n", 400),
    ];
    for (raw, status) in cases {
        let mut client = server.connect();
        client.send(raw.as_bytes());
        let reply = client.read_reply();
        assert_json_error(&reply, *status);
        assert!(client.closes_within(WAIT), "{raw:?}: not closed");
    }
    // Codings it does not know are refused, not misread.
    let reply = server.request("POST /publish HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nx");
    assert!(reply.status >= 400, "{reply:?}");
    assert!(reply.json()["error"].is_string());
    assert_eq!(server.metric("ssehub_messages_total"), 0.0);
    server.assert_alive();
}

#[test]
fn garbage_after_a_good_request_does_not_lose_its_answer() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\x16\x03\x01garbage\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
    assert_json_error(&client.read_reply(), 400);
    assert!(client.closes_within(WAIT));
    server.assert_alive();
}

#[test]
fn a_stream_client_that_sends_data_is_dropped_alone() {
    let server = TestServer::start();
    let mut chatty = Stream::open(&server, "/events?room=c", "");
    chatty.skip_preamble();
    let mut quiet = Stream::open(&server, "/events?room=c", "");
    quiet.skip_preamble();
    chatty.client.send(&vec![b'z'; 200 * 1024]);
    assert!(
        chatty.client.closes_within(WAIT),
        "a stream that sends data is not dropped"
    );
    let id = server.publish("c", "e", "still fine");
    loop {
        let event = quiet.next_event();
        if event.id == Some(id.to_string()) && event.has_data {
            break;
        }
    }
}

// ----- slow consumers ------------------------------------------------------

/// Event ids of the `big` events in `events`.
fn big_ids(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.event.as_deref() == Some("big"))
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn slow_consumer_is_cut_and_catches_up_by_replay() {
    let server = TestServer::with(|c| {
        c.stream_buffer = 16 * 1024;
        c.history = 100_000;
    });
    // The reader reads everything on its own thread until the `done` event.
    let mut reader = Stream::open(&server, "/events?room=slow", "");
    reader.skip_preamble();
    let reading = std::thread::spawn(move || {
        let mut events = Vec::new();
        loop {
            let event = reader.next_event();
            let done = event.event.as_deref() == Some("done");
            events.push(event);
            if done {
                return events;
            }
        }
    });
    // The sleeper reads the response head, then nothing more.
    let mut sleeper = Stream::open(&server, "/events?room=slow", "");
    assert_eq!(sleeper.head.status, 200);

    let body = "y".repeat(4000);
    let mut publisher = server.connect();
    let mut published = Vec::new();
    let mut cut_at = None;
    for n in 0..25_000 {
        publisher.send(
            format!(
                "POST /publish?room=slow&event=big HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{n}:{body}",
                body.len() + n.to_string().len() + 1
            )
            .as_bytes(),
        );
        let reply = publisher.read_reply();
        assert_eq!(reply.status, 201, "{}", reply.text());
        published.push(reply.json()["id"].as_u64().unwrap());
        if n % 25 == 24 {
            match cut_at {
                None if server.metric("ssehub_slow_consumers_dropped_total") >= 1.0 => {
                    cut_at = Some(n)
                }
                Some(at) if n >= at + 50 => break,
                _ => {}
            }
        }
    }
    assert!(
        cut_at.is_some(),
        "a client that never reads was not cut after 100 MB"
    );
    assert_eq!(
        server.metric("ssehub_slow_consumers_dropped_total"),
        1.0,
        "only the sleeper is cut"
    );
    assert_eq!(
        server.metric("ssehub_connections_closed_total{reason=\"slow_consumer\"}"),
        1.0,
        "counted once, under its reason"
    );
    let done = server.publish("slow", "done", "end");

    // The reader got every event, in order.
    let events = reading.join().unwrap();
    assert_eq!(big_ids(&events), published);
    assert_eq!(events.last().unwrap().id, Some(done.to_string()));

    // The sleeper's socket was closed; what it got is a prefix, in order.
    let got = sleeper.client.read_to_close();
    let got = big_ids(&blocks(&got));
    assert!(
        !got.is_empty() && got.len() < published.len(),
        "{} of {}",
        got.len(),
        published.len()
    );
    assert_eq!(got, published[..got.len()]);

    // It comes back with its last id, and replay fills the hole.
    let last = *got.last().unwrap();
    let mut back = Stream::open(
        &server,
        "/events?room=slow",
        &format!("Last-Event-ID: {last}\r\n"),
    );
    back.skip_preamble();
    let mut rest = Vec::new();
    loop {
        let event = back.next_event();
        assert_ne!(event.event.as_deref(), Some("gap"), "{event:?}");
        let done_now = event.event.as_deref() == Some("done");
        rest.push(event);
        if done_now {
            break;
        }
    }
    assert_eq!(big_ids(&rest), published[got.len()..]);
    server.assert_alive();
}

#[test]
fn replay_larger_than_the_stream_buffer_is_not_cut() {
    // Defaults: 100 events retained, 256 KiB per stream. A room's retained
    // history (100 × 4000 bytes) is larger than one stream's buffer.
    let server = TestServer::start();
    let body = "z".repeat(4000);
    let published: Vec<u64> = (0..100)
        .map(|_| server.publish("replay", "big", &body))
        .collect();
    // A new visitor who reads at once gets the whole history, then live events.
    let mut client = server.connect();
    client.send(b"GET /events?room=replay HTTP/1.1\r\nHost: t\r\n\r\n");
    let Some(head) = client.read_until_within(b"\r\n\r\n", WAIT) else {
        panic!(
            "the new stream was closed before a single byte was sent \
             (ssehub_slow_consumers_dropped_total = {})",
            server.metric("ssehub_slow_consumers_dropped_total")
        );
    };
    assert!(
        head.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    let head = Reply {
        status: 200,
        headers: Vec::new(),
        body: Vec::new(),
    };
    let mut stream = Stream { client, head };
    stream.skip_preamble();
    let live = server.publish("replay", "big", "live");
    let mut ids = Vec::new();
    while ids.last() != Some(&live) {
        let Some(event) = stream.next_block_within(WAIT) else {
            panic!(
                "stream ended after {} of {} events (slow consumers cut: {})",
                ids.len(),
                published.len() + 1,
                server.metric("ssehub_slow_consumers_dropped_total")
            );
        };
        if event.event.as_deref() == Some("big") {
            ids.push(event.id.unwrap().parse::<u64>().unwrap());
        }
    }
    let mut expected = published;
    expected.push(live);
    assert_eq!(ids, expected);
    assert_eq!(server.metric("ssehub_slow_consumers_dropped_total"), 0.0);
}

// ----- full house -------------------------------------------------------------

#[test]
fn full_house_answers_busy_and_recovers() {
    let server = TestServer::with(|c| c.max_clients = 2);
    let mut first = Stream::open(&server, "/events?room=h", "");
    first.skip_preamble();
    let mut second = Stream::open(&server, "/events?room=h&role=agent", "");
    second.skip_preamble();

    let mut third = Stream::open(&server, "/events?room=h", "");
    assert_eq!(third.head.status, 200);
    assert_eq!(third.head.header("content-type"), Some("text/event-stream"));
    let body = String::from_utf8(third.client.read_to_close()).unwrap();
    let retry: u64 = body
        .strip_prefix("retry: ")
        .and_then(|rest| rest.split('\n').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no retry first: {body:?}"));
    assert!((1000..=10_000).contains(&retry), "retry {retry}");
    assert_eq!(
        body,
        format!("retry: {retry}\n\nevent: busy\ndata: {{\"retry_ms\":{retry}}}\n\n"),
        "exactly a retry and one busy event, no id, then close"
    );
    assert!(server.metric("ssehub_busy_total") >= 1.0);

    // Ordinary requests are still served; the open streams still work.
    server.assert_alive();
    let id = server.post_message("h", "u", "still served");
    assert_eq!(first.wait_for("message").id, Some(id.to_string()));
    assert_eq!(server.health()["streams"], 2);

    // Once a stream closes, a new one is accepted.
    drop(second);
    assert!(eventually(WAIT, || server.health()["streams"] == 1));
    let mut fourth = Stream::open(
        &server,
        "/events?room=h",
        &format!("Last-Event-ID: {id}\r\n"),
    );
    let hello = fourth.skip_preamble();
    assert_eq!(hello["rooms"], serde_json::json!(["h"]));
    let id = server.post_message("h", "u", "welcome back");
    assert_eq!(fourth.wait_for("message").id, Some(id.to_string()));
}

#[test]
fn busy_retries_vary() {
    let server = TestServer::with(|c| c.max_clients = 1);
    let mut only = Stream::open(&server, "/events", "");
    only.skip_preamble();
    let mut retries = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let mut busy = Stream::open(&server, "/events", "");
        let block = parse_block(&String::from_utf8(busy.client.read_to_close()).unwrap());
        retries.insert(block.retry.expect("retry"));
    }
    assert!(retries.len() > 1, "retry is not randomised: {retries:?}");
}

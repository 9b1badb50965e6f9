//! The event stream over real sockets: the preamble's bytes, the wire
//! format of every event kind, the encoder on line ends and field
//! injection, replay (`Last-Event-ID`, query parameters, gap, id-only
//! block, no gap and no duplicate under load), several rooms, presence
//! coalescing and heartbeats.
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// The id of a raw block, if it has an `id:` line.
fn raw_id(raw: &str) -> Option<u64> {
    parse_block(raw)
        .id
        .map(|id| id.parse().expect("numeric id"))
}

/// Reads events (not heartbeat or presence) until one with id `last`
/// arrives; returns them all.
#[track_caller]
fn events_until(stream: &mut Stream, last: u64) -> Vec<SseEvent> {
    let mut out = Vec::new();
    loop {
        let event = stream.next_event();
        let id = event.id.as_deref().and_then(|i| i.parse::<u64>().ok());
        out.push(event);
        if id == Some(last) {
            return out;
        }
    }
}

fn event_ids(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.id.as_deref().expect("an id").parse().unwrap())
        .collect()
}

// ----- preamble ---------------------------------------------------------

#[test]
fn preamble_bytes_are_exact_and_come_at_once() {
    let server = TestServer::start();
    let last = server.last_id();
    let mut client = server.connect();
    client.send(b"GET /events?room=pre HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
    let head = String::from_utf8(client.read_until(b"\r\n\r\n")).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lines: Vec<&str> = head.split("\r\n").collect();
    for required in [
        "Content-Type: text/event-stream",
        "Cache-Control: no-cache, no-transform",
        "X-Accel-Buffering: no",
    ] {
        assert!(lines.contains(&required), "{required} missing in {head}");
    }
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("content-length"), "{head}");
    assert!(!lower.contains("content-encoding"), "{head}");
    // Nothing is published: the preamble must come by itself, no BOM first.
    let expected = format!(
        "retry: 2000\n\n\
         event: hello\ndata: {{\"rooms\":[\"pre\"],\"role\":\"customer\",\"heartbeat_ms\":1000,\"last_id\":{last}}}\n\n\
         id: {last}\n\n"
    );
    let body = client
        .read_until_within(format!("id: {last}\n\n").as_bytes(), WAIT)
        .unwrap_or_else(|| {
            panic!(
                "no preamble: {:?}",
                String::from_utf8_lossy(&client.pending)
            )
        });
    assert_eq!(String::from_utf8(body).unwrap(), expected);
}

#[test]
fn hello_names_rooms_role_and_defaults() {
    let server = TestServer::with(|c| c.heartbeat = Duration::from_millis(2500));
    let mut stream = Stream::open(&server, "/events", "");
    let hello = stream.skip_preamble();
    assert_eq!(
        hello,
        json!({"rooms": ["lobby"], "role": "customer", "heartbeat_ms": 2500, "last_id": server.last_id()})
    );
    let mut stream = Stream::open(&server, "/events?room=a&room=b.c&room=a&role=agent", "");
    let hello = stream.skip_preamble();
    assert_eq!(hello["rooms"], json!(["a", "b.c"]));
    assert_eq!(hello["role"], "agent");
    // last_id follows the sequence.
    let id = server.post_message("a", "u", "x");
    let mut stream = Stream::open(&server, "/events?room=zzz", "");
    assert_eq!(stream.skip_preamble()["last_id"], id);
    // HTTP/1.0 streams work too.
    let mut client = server.connect();
    client.send(b"GET /events?room=old HTTP/1.0\r\n\r\n");
    let head = client.read_reply_for(true);
    assert_eq!(head.status, 200);
    assert_eq!(client.read_until(b"\n\n"), b"retry: 2000\n\n");
}

// ----- wire format ------------------------------------------------------

#[test]
fn message_event_has_the_exact_format() {
    let server = TestServer::start();
    let mut stream = Stream::open(&server, "/events?room=fmt", "");
    stream.skip_preamble();
    let reply = server.post(
        "/messages",
        "application/json",
        r#"{"room":"fmt","user":"ann","text":"hi"}"#,
    );
    assert_eq!(reply.status, 201);
    let id = reply.json()["id"].as_u64().unwrap();
    let time = reply.json()["time"].as_u64().unwrap();
    // The id-only block of the preamble comes first.
    assert_eq!(stream.next_raw_event(), format!("id: {}\n\n", id - 1));
    assert_eq!(
        stream.next_raw_event(),
        format!(
            "id: {id}\nevent: message\ndata: {{\"id\":{id},\"room\":\"fmt\",\"user\":\"ann\",\"text\":\"hi\",\"time\":{time}}}\n\n"
        )
    );
    // A text full of line ends, quotes and field names stays one JSON line.
    let tricky = "a\nid: 999\r\n\nevent: x\r\"q\" \\ ü 😀\u{2028}";
    let id = server.post_message("fmt", "b\nob", tricky);
    let raw = stream.next_raw_event();
    let lines: Vec<&str> = raw.trim_end_matches('\n').split('\n').collect();
    assert_eq!(lines.len(), 3, "{raw:?}");
    assert_eq!(lines[0], format!("id: {id}"));
    assert_eq!(lines[1], "event: message");
    let data: Value = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["text"], tricky);
    assert_eq!(data["user"], "b\nob");
    assert_eq!(data["id"], id);
    assert_eq!(data["room"], "fmt");
}

#[test]
fn custom_events_and_line_ends() {
    let server = TestServer::start();
    let mut stream = Stream::open(&server, "/events?room=enc", "");
    stream.skip_preamble();
    stream.next_raw_event(); // the id-only block
    let cases: &[(&str, &str, &str)] = &[
        ("reading", "temp=21", "data: temp=21\n"),
        ("lf", "a\nb", "data: a\ndata: b\n"),
        ("cr", "a\rb", "data: a\ndata: b\n"),
        ("crlf", "a\r\nb", "data: a\ndata: b\n"),
        (
            "mixed",
            "a\nb\rc\r\nd",
            "data: a\ndata: b\ndata: c\ndata: d\n",
        ),
        ("trail-lf", "x\n", "data: x\ndata: \n"),
        ("trail-crlf", "x\r\n", "data: x\ndata: \n"),
        ("trail-cr", "x\r", "data: x\ndata: \n"),
        ("blank-mid", "a\r\r\nb", "data: a\ndata: \ndata: b\n"),
        ("only-crlf", "\r\n", "data: \ndata: \n"),
        ("spaces", "  lead and trail  ", "data:   lead and trail  \n"),
        ("unicode", "ü 😀 \u{2028} é", "data: ü 😀 \u{2028} é\n"),
    ];
    for (name, body, data_lines) in cases {
        let id = server.publish("enc", name, body);
        let raw = stream.next_raw_event();
        assert_eq!(
            raw,
            format!("id: {id}\nevent: {name}\n{data_lines}\n"),
            "body {body:?}"
        );
        // What a client's event.data will be: the body with LF line ends.
        let parsed = parse_block(&raw);
        assert_eq!(parsed.data, body.replace("\r\n", "\n").replace('\r', "\n"));
    }
    // An unnamed publish is a `message` event.
    let reply = server.post("/publish?room=enc", "text/plain", "plain");
    let id = reply.json()["id"].as_u64().unwrap();
    assert_eq!(
        stream.next_raw_event(),
        format!("id: {id}\nevent: message\ndata: plain\n\n")
    );
}

#[test]
fn field_injection_stays_inside_data_lines() {
    let server = TestServer::start();
    let mut stream = Stream::open(&server, "/events?room=inj", "");
    stream.skip_preamble();
    stream.next_raw_event();
    let body = "hi\nid: 999\nevent: x\n\ndata: y\r\nretry: 1\r: comment\n";
    let id = server.publish("inj", "safe", body);
    let raw = stream.next_raw_event();
    assert_eq!(
        raw,
        format!(
            "id: {id}\nevent: safe\ndata: hi\ndata: id: 999\ndata: event: x\ndata: \n\
             data: data: y\ndata: retry: 1\ndata: : comment\ndata: \n\n"
        )
    );
    let parsed = parse_block(&raw);
    assert_eq!(parsed.id, Some(id.to_string()));
    assert_eq!(parsed.event.as_deref(), Some("safe"));
    assert_eq!(parsed.retry, None);

    // The same through a handle from another thread.
    let handle = server.handle.clone();
    std::thread::spawn(move || {
        handle
            .publish("inj", Some("h"), "a\r\nid: 7\revent: boom")
            .unwrap()
    })
    .join()
    .unwrap();
    let raw = stream.next_raw_event();
    let id2 = raw_id(&raw).unwrap();
    assert!(id2 > id);
    assert_eq!(
        raw,
        format!("id: {id2}\nevent: h\ndata: a\ndata: id: 7\ndata: event: boom\n\n")
    );
}

// ----- replay -------------------------------------------------------------

/// Four events in room `rp`.
fn four_events(server: &TestServer) -> Vec<u64> {
    (0..4)
        .map(|n| server.publish("rp", "e", &format!("{n}")))
        .collect()
}

#[test]
fn replay_after_last_event_id_header_then_live() {
    let server = TestServer::start();
    let e = four_events(&server);
    let mut stream = Stream::open(
        &server,
        "/events?room=rp",
        &format!("Last-Event-ID: {}\r\n", e[1]),
    );
    stream.skip_preamble();
    assert_eq!(event_ids(&events_until(&mut stream, e[3])), [e[2], e[3]]);
    // Up to date: no id-only block, the next thing is the live event.
    let live = server.publish("rp", "e", "live");
    let next = stream.next_event();
    assert_eq!(next.id, Some(live.to_string()));
    assert_eq!(next.data, "live");
}

#[test]
fn replay_from_query_parameters_and_header_wins() {
    let server = TestServer::start();
    let e = four_events(&server);
    let cases = [
        (
            format!("/events?room=rp&lastEventId={}", e[1]),
            String::new(),
            vec![e[2], e[3]],
        ),
        (
            format!("/events?last_event_id={}&room=rp", e[2]),
            String::new(),
            vec![e[3]],
        ),
        (
            format!("/events?room=rp&lastEventId={}", e[0]),
            format!("Last-Event-ID: {}\r\n", e[2]),
            vec![e[3]],
        ),
        (
            format!("/events?room=rp&last_event_id={}", e[2]),
            format!("Last-Event-ID: {}\r\n", e[0]),
            vec![e[1], e[2], e[3]],
        ),
    ];
    for (path, header, expected) in cases {
        let mut stream = Stream::open(&server, &path, &header);
        stream.skip_preamble();
        assert_eq!(
            event_ids(&events_until(&mut stream, e[3])),
            expected,
            "{path} {header:?}"
        );
    }
}

#[test]
fn non_numeric_last_event_id_counts_as_absent() {
    let server = TestServer::start();
    let e = four_events(&server);
    for header in ["abc", "-1", "1.5", "0x10", "1e3", ""] {
        let mut stream = Stream::open(
            &server,
            "/events?room=rp",
            &format!("Last-Event-ID: {header}\r\n"),
        );
        stream.skip_preamble();
        // Absent: the whole retained history, as for a new visitor.
        assert_eq!(
            event_ids(&events_until(&mut stream, e[3])),
            e,
            "Last-Event-ID: {header:?}"
        );
    }
    let mut stream = Stream::open(&server, "/events?room=rp&lastEventId=nope", "");
    stream.skip_preamble();
    assert_eq!(event_ids(&events_until(&mut stream, e[3])), e);
    // A bad header does not hide a good query parameter.
    let mut stream = Stream::open(
        &server,
        &format!("/events?room=rp&lastEventId={}", e[2]),
        "Last-Event-ID: junk\r\n",
    );
    stream.skip_preamble();
    assert_eq!(event_ids(&events_until(&mut stream, e[3])), [e[3]]);
}

#[test]
fn id_only_block_after_replay_when_behind_the_sequence() {
    let server = TestServer::start();
    let e = four_events(&server);
    let elsewhere = server.publish("zz", "e", "other room");
    let mut stream = Stream::open(
        &server,
        "/events?room=rp",
        &format!("Last-Event-ID: {}\r\n", e[2]),
    );
    stream.skip_preamble();
    assert_eq!(raw_id(&stream.next_raw_event()), Some(e[3]));
    assert_eq!(stream.next_raw_event(), format!("id: {elsewhere}\n\n"));

    // Nothing to replay at all: just the id-only block.
    let mut stream = Stream::open(
        &server,
        "/events?room=empty",
        &format!("Last-Event-ID: {}\r\n", e[0]),
    );
    stream.skip_preamble();
    assert_eq!(stream.next_raw_event(), format!("id: {elsewhere}\n\n"));

    // Up to date: no block; the next block is a live event.
    let mut stream = Stream::open(
        &server,
        "/events?room=rp",
        &format!("Last-Event-ID: {elsewhere}\r\n"),
    );
    stream.skip_preamble();
    let live = server.publish("rp", "e", "live");
    assert_eq!(raw_id(&stream.next_raw_event()), Some(live));
}

#[test]
fn gap_event_when_history_was_dropped() {
    let server = TestServer::with(|c| c.history = 3);
    let g: Vec<u64> = (0..5)
        .map(|n| server.publish("g", "e", &format!("{n}")))
        .collect();
    // g[0] and g[1] are gone; a client that saw only g[0] missed g[1].
    let mut stream = Stream::open(
        &server,
        "/events?room=g",
        &format!("Last-Event-ID: {}\r\n", g[0]),
    );
    stream.skip_preamble();
    assert_eq!(
        stream.next_raw_event(),
        format!(
            "event: gap\ndata: {{\"last_event_id\":{},\"oldest_retained\":{}}}\n\n",
            g[0], g[2]
        )
    );
    assert_eq!(event_ids(&events_until(&mut stream, g[4])), &g[2..]);

    // A client that saw g[1] missed nothing: no gap.
    let mut stream = Stream::open(
        &server,
        "/events?room=g",
        &format!("Last-Event-ID: {}\r\n", g[1]),
    );
    stream.skip_preamble();
    let first = stream.next_raw_event();
    assert_eq!(raw_id(&first), Some(g[2]), "{first:?}");

    // The query parameter form works the same.
    let mut stream = Stream::open(
        &server,
        &format!("/events?room=g&lastEventId={}", g[0] - 5),
        "",
    );
    stream.skip_preamble();
    let gap = stream.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert_eq!(gap.id, None);
    let data: Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(
        data,
        json!({"last_event_id": g[0] - 5, "oldest_retained": g[2]})
    );
}

#[test]
fn gap_names_the_first_event_replayed_across_rooms() {
    let server = TestServer::with(|c| c.history = 3);
    let b = server.publish("gb", "e", "b");
    let a: Vec<u64> = (0..5)
        .map(|n| server.publish("ga", "e", &format!("{n}")))
        .collect();
    let mut stream = Stream::open(
        &server,
        "/events?room=ga&room=gb",
        &format!("Last-Event-ID: {}\r\n", b - 1),
    );
    stream.skip_preamble();
    let gap = stream.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    let data: Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(data, json!({"last_event_id": b - 1, "oldest_retained": b}));
    assert_eq!(
        event_ids(&events_until(&mut stream, a[4])),
        [b, a[2], a[3], a[4]]
    );
}

#[test]
fn gap_with_nothing_retained_says_zero() {
    let server = TestServer::with(|c| c.history = 0);
    let first = server.publish("h0", "e", "1");
    let second = server.publish("h0", "e", "2");
    let mut stream = Stream::open(
        &server,
        "/events?room=h0",
        &format!("Last-Event-ID: {}\r\n", first - 1),
    );
    stream.skip_preamble();
    assert_eq!(
        stream.next_raw_event(),
        format!(
            "event: gap\ndata: {{\"last_event_id\":{},\"oldest_retained\":0}}\n\n",
            first - 1
        )
    );
    assert_eq!(stream.next_raw_event(), format!("id: {second}\n\n"));
    // A new visitor gets no history at all.
    let mut stream = Stream::open(&server, "/events?room=h0", "");
    stream.skip_preamble();
    assert_eq!(stream.next_raw_event(), format!("id: {second}\n\n"));
}

#[test]
fn new_visitor_gets_the_last_history_events_of_each_room() {
    let server = TestServer::with(|c| c.history = 3);
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(("ha", server.publish("ha", "e", &format!("a{n}"))));
        ids.push(("hb", server.post_message("hb", "u", &format!("b{n}"))));
    }
    server.publish("hc", "e", "not subscribed");
    let expected: Vec<u64> = {
        let mut a: Vec<u64> = ids
            .iter()
            .filter(|(r, _)| *r == "ha")
            .map(|(_, i)| *i)
            .collect();
        let mut b: Vec<u64> = ids
            .iter()
            .filter(|(r, _)| *r == "hb")
            .map(|(_, i)| *i)
            .collect();
        let mut keep = a.split_off(2);
        keep.extend(b.split_off(2));
        keep.sort_unstable();
        keep
    };
    let mut stream = Stream::open(&server, "/events?room=hb&room=ha", "");
    stream.skip_preamble();
    let last = *expected.last().unwrap();
    let events = events_until(&mut stream, last);
    assert_eq!(event_ids(&events), expected);
    // Then the id-only block for the event of room hc.
    assert_eq!(
        stream.next_raw_event(),
        format!("id: {}\n\n", server.last_id())
    );
}

#[test]
fn reconnect_under_continuous_publishing_has_no_gap_and_no_duplicate() {
    const TOTAL: usize = 3000;
    let server = TestServer::with(|c| c.history = 100_000);
    let mut first = Stream::open(&server, "/events?room=live", "");
    first.skip_preamble();
    let handle = server.handle.clone();
    let publisher = std::thread::spawn(move || {
        for n in 0..TOTAL {
            handle
                .publish("live", Some("tick"), &n.to_string())
                .unwrap();
            if n % 100 == 99 {
                // Spread the publishing over time so the reconnect lands mid-stream.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    // The first stream reads a few hundred events, then goes away.
    let mut seen: Vec<(u64, usize)> = Vec::new();
    while seen.len() < 300 {
        let event = first.next_event();
        if event.event.as_deref() != Some("tick") {
            continue;
        }
        seen.push((
            event.id.unwrap().parse().unwrap(),
            event.data.parse().unwrap(),
        ));
    }
    drop(first);
    let resume = seen.last().unwrap().0;
    let mut second = Stream::open(
        &server,
        "/events?room=live",
        &format!("Last-Event-ID: {resume}\r\n"),
    );
    second.skip_preamble();
    loop {
        let event = second.next_event();
        match event.event.as_deref() {
            Some("tick") => {
                let pair = (
                    event.id.unwrap().parse().unwrap(),
                    event.data.parse::<usize>().unwrap(),
                );
                seen.push(pair);
                if pair.1 == TOTAL - 1 {
                    break;
                }
            }
            Some("gap") => panic!("gap after {resume}: {event:?}"),
            // The id-only block (if the reconnect caught up exactly): no event.
            _ => assert!(!event.has_data, "{event:?}"),
        }
    }
    publisher.join().unwrap();
    // Every published event once, in order, ids strictly increasing.
    let counters: Vec<usize> = seen.iter().map(|(_, n)| *n).collect();
    assert_eq!(counters, (0..TOTAL).collect::<Vec<_>>());
    for pair in seen.windows(2) {
        assert!(pair[1].0 > pair[0].0, "ids not increasing: {pair:?}");
    }
}

#[test]
fn one_stream_on_several_rooms_gets_all_in_id_order() {
    let server = TestServer::start();
    let mut stream = Stream::open(&server, "/events?room=a&room=b", "");
    stream.skip_preamble();
    let handle = server.handle.clone();
    let other = std::thread::spawn(move || {
        for n in 0..200 {
            let room = ["a", "b", "c"][n % 3];
            handle
                .publish(room, Some("t"), &format!("{room}{n}"))
                .unwrap();
        }
    });
    let mut expected = Vec::new();
    for n in 0..50 {
        let room = if n % 2 == 0 { "a" } else { "b" };
        expected.push(server.publish(room, "h", &format!("{room}-http-{n}")));
    }
    other.join().unwrap();
    let done = server.publish("b", "done", "end");
    let events = events_until(&mut stream, done);
    let ids: Vec<u64> = events
        .iter()
        .filter(|e| e.id.is_some() && e.has_data)
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    for pair in ids.windows(2) {
        assert!(pair[1] > pair[0], "out of order: {pair:?}");
    }
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert!(!data.iter().any(|d| d.starts_with('c')), "room c leaked in");
    let from_handle = data
        .iter()
        .filter(|d| d.starts_with('a') || d.starts_with('b'))
        .filter(|d| !d.contains("http"))
        .count();
    assert_eq!(from_handle, 200 - 66);
    for id in expected {
        assert!(ids.contains(&id), "missing {id}");
    }
}

// ----- presence -------------------------------------------------------------

/// Opens a stream and reads its preamble, so the server has subscribed it.
fn join(server: &TestServer, path: &str) -> Stream {
    let mut stream = Stream::open(server, path, "");
    stream.skip_preamble();
    stream
}

/// Collects presence events on `observer` per room until every room in
/// `want` shows its counts; returns the events per room.
#[track_caller]
fn presence_until(
    observer: &mut Stream,
    want: &HashMap<&str, Value>,
) -> HashMap<String, Vec<Value>> {
    let mut seen: HashMap<String, Vec<Value>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let settled = want
            .iter()
            .all(|(room, counts)| seen.get(*room).and_then(|v| v.last()) == Some(counts));
        if settled {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "presence never settled: {seen:?}"
        );
        let Some(block) = observer.next_block_within(Duration::from_secs(3)) else {
            continue;
        };
        if block.event.as_deref() == Some("presence") {
            assert_eq!(block.id, None, "presence has no id");
            let data: Value = serde_json::from_str(&block.data).unwrap();
            let room = data["room"].as_str().unwrap().to_string();
            seen.entry(room).or_default().push(data);
        }
    }
}

fn churn(server: &TestServer) -> Vec<Stream> {
    // Many joins and leaves in a burst, well inside one period: three
    // customers and two agents stay, others come and go.
    let mut stay = Vec::new();
    for n in 0..8 {
        let path = match n % 4 {
            0 => "/events?room=p&role=agent",
            1 => "/events?room=p&room=q",
            2 => "/events?room=q",
            _ => "/events?room=p",
        };
        let stream = join(server, path);
        if n < 5 {
            stay.push(stream);
        }
    }
    for _ in 0..4 {
        drop(join(server, "/events?room=p&room=q&role=agent"));
    }
    // The caller keeps these open while the observer settles.
    stay
}

/// p: observer, agents n=0,4 and customers n=1,3 → 5 clients, 2 agents;
/// q: observer, n=1,2 → 3 clients, 0 agents.
fn final_counts() -> HashMap<&'static str, Value> {
    HashMap::from([
        ("p", json!({"room": "p", "clients": 5, "agents": 2})),
        ("q", json!({"room": "q", "clients": 3, "agents": 0})),
    ])
}

#[test]
fn presence_is_coalesced_per_room_and_counts_agents_apart() {
    let server = TestServer::with(|c| c.heartbeat = Duration::from_secs(2));
    let mut observer = join(&server, "/events?room=p&room=q");
    let _stay = churn(&server);
    let seen = presence_until(&mut observer, &final_counts());
    // 16 joins and leaves; coalescing allows the observer's own join, at
    // most one more if the burst straddled a period, and the final counts.
    for (room, events) in &seen {
        assert!(events.len() <= 3, "room {room}: {events:?}");
    }
    // The rooms list counts the same way.
    let rooms = server.get("/rooms").json();
    let p = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room"] == "p")
        .unwrap();
    assert_eq!(
        (p["clients"].clone(), p["agents"].clone()),
        (json!(5), json!(2))
    );
}

#[test]
fn without_heartbeats_presence_is_still_coalesced_and_no_heartbeat_comes() {
    let server = TestServer::with(|c| c.heartbeat = Duration::ZERO);
    let mut observer = Stream::open(&server, "/events?room=p&room=q", "");
    let hello = observer.skip_preamble();
    assert_eq!(hello["heartbeat_ms"], 0);
    let _stay = churn(&server);
    let seen = presence_until(&mut observer, &final_counts());
    for (room, events) in &seen {
        assert!(events.len() <= 3, "room {room}: {events:?}");
    }
    // Waiting past where a heartbeat would have come: none does.
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while let Some(block) =
        observer.next_block_within(quiet_until.saturating_duration_since(Instant::now()))
    {
        assert_ne!(block.event.as_deref(), Some("heartbeat"), "{block:?}");
    }
}

#[test]
fn presence_only_when_a_count_changed() {
    let server = TestServer::start();
    let mut observer = join(&server, "/events?room=pc");
    // A stream comes and goes inside one period: the counts end where
    // they were announced, so nothing is announced.
    drop(join(&server, "/events?room=pc&role=agent"));
    assert!(eventually(WAIT, || server.get("/rooms").json()[0]
        ["clients"]
        == 1));
    let mut presence = Vec::new();
    let mut beats = 0;
    // Two heartbeats later the next presence round is certainly past.
    while beats < 2 {
        let block = observer.next_block();
        match block.event.as_deref() {
            Some("heartbeat") => beats += 1,
            Some("presence") => presence.push(block.data),
            _ => {}
        }
    }
    assert_eq!(
        presence,
        [r#"{"room":"pc","clients":1,"agents":0}"#],
        "only the observer's own join"
    );
}

// ----- heartbeats -------------------------------------------------------------

#[test]
fn heartbeats_have_no_id() {
    let server = TestServer::with(|c| c.heartbeat = Duration::from_millis(200));
    let mut stream = Stream::open(&server, "/events?room=hb", "");
    assert_eq!(stream.skip_preamble()["heartbeat_ms"], 200);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut beats = 0;
    while beats < 3 {
        let raw = stream.next_raw();
        if !raw.starts_with("event: heartbeat\n") {
            continue;
        }
        beats += 1;
        let rest = raw
            .strip_prefix("event: heartbeat\ndata: {\"time\":")
            .expect(&raw);
        let time: u64 = rest.strip_suffix("}\n\n").expect(&raw).parse().unwrap();
        assert!(
            time + 60_000 > now_ms && time < now_ms + 60_000,
            "time {time}"
        );
        assert!(!raw.contains("id:"), "{raw:?}");
    }
}

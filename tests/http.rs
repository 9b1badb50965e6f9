//! The HTTP side of the contract over real sockets: every endpoint and
//! status code, error bodies, `Content-Length`, `HEAD`, CORS, the publish
//! token, `/metrics`, `/healthz`, `/rooms`, `GET /messages`, `/publish`
//! validation, pipelining, HTTP/1.0, `Expect: 100-continue` and chunked
//! request bodies.
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Asserts a JSON error answer: the status, `{"error": "…"}` with a
/// non-empty message, and a `Content-Length` that matches the body.
#[track_caller]
fn assert_error(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{reply:?} {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_length(reply);
    let body = reply.json();
    let object = body.as_object().expect("error body is an object");
    assert_eq!(object.len(), 1, "only an error field: {body}");
    let message = body["error"].as_str().expect("error is a string");
    assert!(!message.is_empty());
}

/// Asserts that a non-stream answer carries a `Content-Length` equal to its body.
#[track_caller]
fn assert_length(reply: &Reply) {
    let length = reply
        .header("content-length")
        .unwrap_or_else(|| panic!("no Content-Length on {reply:?}"));
    assert_eq!(
        length.parse::<usize>().unwrap(),
        reply.body.len(),
        "{reply:?}"
    );
}

/// Header names of a reply, lower-case.
fn names(reply: &Reply) -> BTreeSet<String> {
    reply.headers.iter().map(|(n, _)| n.clone()).collect()
}

fn cors_names(reply: &Reply) -> Vec<&str> {
    reply
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("access-control-"))
        .collect()
}

fn message_body(room: &str, user: &str, text: &str) -> String {
    json!({"room": room, "user": user, "text": text}).to_string()
}

/// `GET /messages?…` as JSON items.
#[track_caller]
fn history(server: &TestServer, query: &str) -> Vec<Value> {
    let reply = server.get(&format!("/messages?{query}"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_length(&reply);
    reply.json().as_array().expect("array").clone()
}

fn ids(items: &[Value]) -> Vec<u64> {
    items.iter().map(|i| i["id"].as_u64().unwrap()).collect()
}

/// `POST path` with extra header lines (each ending in CRLF).
fn post_with(server: &TestServer, path: &str, headers: &str, body: &str) -> Reply {
    server.request(&format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

// ----- endpoints and status codes ---------------------------------------

#[test]
fn healthz_answers_ok_json() {
    let server = TestServer::start();
    let reply = server.get("/healthz");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_length(&reply);
    assert_eq!(reply.json()["status"], "ok");
}

#[test]
fn post_message_answers_201_with_id_room_and_time() {
    let server = TestServer::start();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let reply = server.post(
        "/messages",
        "application/json",
        &message_body("r1", "ann", "hello"),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_length(&reply);
    let body = reply.json();
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, BTreeSet::from(["id", "room", "time"]));
    assert_eq!(body["room"], "r1");
    let time = body["time"].as_u64().unwrap();
    assert!(
        time + 60_000 > before && time < before + 60_000,
        "time {time}"
    );
    let id = body["id"].as_u64().unwrap();
    // Ids start near the start time in ms × 1000, below 2^53.
    assert!(
        id > before * 1000 - 3_600_000_000 && id < 1 << 53,
        "id {id}"
    );

    // No room means the lobby; a charset parameter and +json are fine.
    let reply = server.post(
        "/messages",
        "application/json; charset=utf-8",
        r#"{"user":"bob","text":"in the lobby"}"#,
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["room"], "lobby");
    assert!(reply.json()["id"].as_u64().unwrap() > id);
    let items = history(&server, "room=lobby");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["text"], "in the lobby");
}

#[test]
fn publish_answers_201_with_id() {
    let server = TestServer::start();
    let reply = server.post(
        "/publish?room=sensors&event=reading",
        "text/plain",
        "temp=21",
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_length(&reply);
    let body = reply.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let id = body["id"].as_u64().unwrap();
    let items = history(&server, "room=sensors");
    assert_eq!(items.len(), 1);
    let keys: BTreeSet<&str> = items[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["id", "room", "event", "data", "time"])
    );
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["room"], "sensors");
    assert_eq!(items[0]["event"], "reading");
    assert_eq!(items[0]["data"], "temp=21");

    // Without room and event: the lobby, named `message`.
    let id2 = server.post("/publish", "text/plain", "plain").json()["id"]
        .as_u64()
        .unwrap();
    assert!(id2 > id);
    let items = history(&server, "room=lobby");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["event"], "message");
    assert_eq!(items[0]["data"], "plain");
}

#[test]
fn bad_requests_answer_400_with_json_error() {
    let server = TestServer::start();
    let json_type = "Content-Type: application/json\r\n";
    let cases: &[(&str, &str, &str)] = &[
        ("/messages", json_type, "not json"),
        ("/messages", json_type, "[1,2]"),
        ("/messages", json_type, r#"{"text":"no user"}"#),
        ("/messages", json_type, r#"{"user":"no text"}"#),
        ("/messages", json_type, r#"{"user":"","text":"x"}"#),
        ("/messages", json_type, r#"{"user":"u","text":""}"#),
        ("/messages", json_type, r#"{"user":5,"text":"x"}"#),
        (
            "/messages",
            json_type,
            r#"{"room":"a b","user":"u","text":"x"}"#,
        ),
        (
            "/messages",
            json_type,
            r#"{"room":"","user":"u","text":"x"}"#,
        ),
        ("/messages", json_type, ""),
        ("/publish?room=bad%2Froom", "", "x"),
        ("/publish?room=", "", "x"),
        ("/publish?event=", "", "x"),
        ("/publish?event=a:b", "", "x"),
        ("/publish?event=a%0Ab", "", "x"),
        ("/publish?event=a%0Db", "", "x"),
        ("/publish", "", ""),
    ];
    for (path, headers, body) in cases {
        let reply = post_with(&server, path, headers, body);
        assert_error(&reply, 400);
    }
    let user65 = message_body("r", &"u".repeat(65), "x");
    assert_error(&post_with(&server, "/messages", json_type, &user65), 400);
    let room65 = message_body(&"r".repeat(65), "u", "x");
    assert_error(&post_with(&server, "/messages", json_type, &room65), 400);
    let name65 = format!("/publish?event={}", "e".repeat(65));
    assert_error(&post_with(&server, &name65, "", "x"), 400);
    for path in [
        "/events?room=a%20b",
        "/events?room=%zz",
        "/events?role=boss",
        "/messages?room=a%20b",
        "/messages?after=x",
        "/messages?limit=-1",
    ] {
        assert_error(&server.get(path), 400);
    }
    // Nothing above was published.
    assert_eq!(server.metric("ssehub_messages_total"), 0.0);
    server.assert_alive();
}

#[test]
fn not_found_is_404_json() {
    let server = TestServer::start();
    for path in ["/nope", "/nope.html", "/dir/", "/events/", "/messages/1"] {
        assert_error(&server.get(path), 404);
    }
}

#[test]
fn wrong_methods_answer_405_with_allow() {
    let server = TestServer::start();
    let cases: &[(&str, &str, &[&str])] = &[
        ("POST", "/events", &["GET", "HEAD", "OPTIONS"]),
        ("DELETE", "/events", &["GET", "HEAD", "OPTIONS"]),
        ("PUT", "/messages", &["GET", "HEAD", "POST", "OPTIONS"]),
        ("DELETE", "/messages", &["GET", "HEAD", "POST", "OPTIONS"]),
        ("GET", "/publish", &["POST", "OPTIONS"]),
        ("HEAD", "/publish", &["POST", "OPTIONS"]),
        ("PUT", "/publish", &["POST", "OPTIONS"]),
        ("POST", "/rooms", &["GET", "HEAD", "OPTIONS"]),
        ("POST", "/healthz", &["GET", "HEAD", "OPTIONS"]),
        ("PATCH", "/metrics", &["GET", "HEAD", "OPTIONS"]),
        ("PUT", "/index.html", &["GET", "HEAD", "OPTIONS"]),
        ("POST", "/", &["GET", "HEAD", "OPTIONS"]),
    ];
    for (method, path, allowed) in cases {
        let head_only = *method == "HEAD";
        let mut client = server.connect();
        client.send(
            format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let reply = client.read_reply_for(head_only);
        assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
        if !head_only {
            assert_error(&reply, 405);
        }
        let allow: BTreeSet<&str> = reply
            .header("allow")
            .unwrap_or_else(|| panic!("no Allow on {method} {path}"))
            .split(',')
            .map(str::trim)
            .collect();
        let expected: BTreeSet<&str> = allowed.iter().copied().collect();
        assert_eq!(allow, expected, "{method} {path}");
    }
    server.assert_alive();
}

#[test]
fn content_type_other_than_json_on_messages_is_415() {
    let server = TestServer::start();
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let reply = server.post("/messages", content_type, &message_body("r", "u", "x"));
        assert_error(&reply, 415);
    }
    // A JSON body without a Content-Type is accepted.
    let reply = post_with(&server, "/messages", "", &message_body("r", "u", "x"));
    assert_eq!(reply.status, 201, "{}", reply.text());
}

#[test]
fn unsupported_expectation_is_417() {
    let server = TestServer::start();
    let reply = server.request(
        "POST /publish HTTP/1.1\r\nHost: t\r\nExpect: the-unexpected\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_error(&reply, 417);
    server.assert_alive();
}

#[test]
fn text_length_counts_characters_not_bytes() {
    let server = TestServer::start();
    for (text, status) in [
        ("a".repeat(4000), 201),
        ("a".repeat(4001), 400),
        ("é".repeat(4000), 201),
        ("é".repeat(4001), 400),
        ("😀".repeat(4000), 201),
        ("😀".repeat(4001), 400),
    ] {
        let reply = server.post(
            "/messages",
            "application/json",
            &message_body("len", "u", &text),
        );
        assert_eq!(
            reply.status,
            status,
            "{} chars of {:?}",
            text.chars().count(),
            text.chars().next()
        );
        if status == 400 {
            assert_error(&reply, 400);
        }
    }
    let reply = server.post(
        "/messages",
        "application/json",
        &message_body("len", &"ü".repeat(64), "x"),
    );
    assert_eq!(reply.status, 201, "64 two-byte characters are a valid user");
    let items = history(&server, "room=len");
    assert_eq!(items.len(), 4);
    assert_eq!(items[1]["text"].as_str().unwrap(), "é".repeat(4000));
    assert_eq!(items[2]["text"].as_str().unwrap(), "😀".repeat(4000));
}

#[test]
fn publish_normalises_line_ends_in_retained_data() {
    let server = TestServer::start();
    let cases = [
        ("a\r\nb\rc\nd", "a\nb\nc\nd"),
        ("trailing\n", "trailing\n"),
        ("trailing crlf\r\n", "trailing crlf\n"),
        ("trailing cr\r", "trailing cr\n"),
        ("a\r\r\nb", "a\n\nb"),
        ("\r\n", "\n"),
        ("one line", "one line"),
    ];
    for (body, _) in cases {
        server.publish("norm", "text", body);
    }
    let items = history(&server, "room=norm");
    assert_eq!(items.len(), cases.len());
    for (item, (body, expected)) in items.iter().zip(cases) {
        assert_eq!(item["data"], expected, "body {body:?}");
        assert_eq!(item["event"], "text");
    }
}

#[test]
fn messages_history_after_limit_and_unknown_room() {
    let server = TestServer::start();
    let m: Vec<u64> = (0..5)
        .map(|n| server.post_message("hist", "ann", &format!("m{n}")))
        .collect();
    let p = server.publish("hist", "note", "a\nb");
    server.post_message("other", "bob", "elsewhere");

    let all = history(&server, "room=hist");
    assert_eq!(ids(&all), [m[0], m[1], m[2], m[3], m[4], p]);
    let keys: BTreeSet<&str> = all[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, BTreeSet::from(["id", "room", "user", "text", "time"]));
    assert_eq!(all[0]["room"], "hist");
    assert_eq!(all[0]["user"], "ann");
    assert_eq!(all[0]["text"], "m0");
    assert_eq!(all[5]["event"], "note");
    assert_eq!(all[5]["data"], "a\nb");

    assert_eq!(
        ids(&history(&server, &format!("room=hist&after={}", m[2]))),
        [m[3], m[4], p]
    );
    assert_eq!(ids(&history(&server, "room=hist&limit=2")), [m[4], p]);
    assert_eq!(
        ids(&history(
            &server,
            &format!("room=hist&after={}&limit=2", m[0])
        )),
        [m[4], p]
    );
    assert_eq!(
        ids(&history(
            &server,
            &format!("room=hist&after={}&limit=10", m[3])
        )),
        [m[4], p]
    );
    assert_eq!(
        ids(&history(&server, &format!("after={p}&room=hist"))),
        [] as [u64; 0]
    );
    assert_eq!(ids(&history(&server, "room=hist&limit=0")), [] as [u64; 0]);
    assert_eq!(ids(&history(&server, "room=nobody-here")), [] as [u64; 0]);
    // The default room is the lobby, empty here.
    assert_eq!(ids(&history(&server, "")), [] as [u64; 0]);
}

#[test]
fn history_keeps_only_the_last_n_per_room() {
    let server = TestServer::with(|c| c.history = 3);
    let m: Vec<u64> = (0..5)
        .map(|n| server.post_message("small", "u", &format!("{n}")))
        .collect();
    let q = server.post_message("quiet", "u", "kept");
    assert_eq!(ids(&history(&server, "room=small")), m[2..]);
    assert_eq!(ids(&history(&server, "room=quiet")), [q]);

    let server = TestServer::with(|c| c.history = 0);
    server.post_message("none", "u", "x");
    assert_eq!(ids(&history(&server, "room=none")), [] as [u64; 0]);
}

#[test]
fn rooms_lists_counts_with_agents_apart() {
    let server = TestServer::start();
    let mut customer1 = Stream::open(&server, "/events?room=support", "");
    customer1.skip_preamble();
    let mut customer2 = Stream::open(&server, "/events?room=support&room=other", "");
    customer2.skip_preamble();
    let mut agent = Stream::open(&server, "/events?room=support&role=agent", "");
    assert_eq!(agent.skip_preamble()["role"], "agent");
    server.post_message("support", "ann", "one");
    let last = server.post_message("support", "ann", "two");
    let quiet = server.publish("quiet", "x", "y");

    let rooms = server.get("/rooms");
    assert_eq!(rooms.status, 200);
    assert_eq!(rooms.header("content-type"), Some("application/json"));
    assert_length(&rooms);
    let rooms = rooms.json();
    let find = |rooms: &Value, name: &str| -> Option<Value> {
        rooms
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["room"] == name)
            .cloned()
    };
    for room in rooms.as_array().unwrap() {
        let keys: BTreeSet<&str> = room
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["room", "clients", "agents", "messages", "last_id"])
        );
    }
    assert_eq!(
        find(&rooms, "support").unwrap(),
        json!({"room": "support", "clients": 3, "agents": 1, "messages": 2, "last_id": last})
    );
    assert_eq!(
        find(&rooms, "other").unwrap(),
        json!({"room": "other", "clients": 1, "agents": 0, "messages": 0, "last_id": 0})
    );
    assert_eq!(
        find(&rooms, "quiet").unwrap(),
        json!({"room": "quiet", "clients": 0, "agents": 0, "messages": 1, "last_id": quiet})
    );
    assert_eq!(rooms.as_array().unwrap().len(), 3, "{rooms}");

    // A closed stream stops counting once the server notices.
    drop(agent);
    drop(customer2);
    let settled = eventually(WAIT, || {
        let rooms = server.get("/rooms").json();
        find(&rooms, "support").is_some_and(|r| r["clients"] == 1 && r["agents"] == 0)
            && find(&rooms, "other").is_none()
    });
    assert!(settled, "{}", server.get("/rooms").text());
    drop(customer1);
}

/// Every close is counted once, under its reason.
#[test]
fn closes_are_counted_by_reason() {
    let server = TestServer::start();
    let closed = |reason: &str| {
        server.metric(&format!(
            "ssehub_connections_closed_total{{reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(closed("client_closed"), 0.0);
    let mut stream = Stream::open(&server, "/events?room=bye", "");
    stream.wait_for("hello");
    drop(stream);
    assert!(
        eventually(Duration::from_secs(5), || closed("client_closed") == 1.0),
        "a stream closed by its client is counted as client_closed"
    );
    // A stream that sends data where none is expected.
    let mut chatty = Stream::open(&server, "/events?room=bye", "");
    chatty.wait_for("hello");
    chatty.client.send(&vec![b'x'; 200 * 1024]);
    assert!(
        eventually(Duration::from_secs(5), || closed("client_sent_data") == 1.0),
        "a stream whose client sends data is cut as client_sent_data"
    );
    assert_eq!(closed("slow_consumer"), 0.0);
    assert_eq!(closed("io_error"), 0.0);
}

#[test]
fn metrics_are_prometheus_text_and_move() {
    let server = TestServer::start();
    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    assert_length(&reply);
    let content_type = reply.header("content-type").unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(content_type.contains("version=0.0.4"), "{content_type}");
    let text = reply.text();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.split(' ');
            let kind = words.next().unwrap();
            assert!(kind == "HELP" || kind == "TYPE", "{line}");
            assert!(words.next().unwrap().starts_with("ssehub_"), "{line}");
        } else {
            assert!(line.starts_with("ssehub_"), "{line}");
            let (_, value) = line.rsplit_once(' ').expect("name and value");
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("value of {line}"));
        }
    }

    let messages = server.metric("ssehub_messages_total");
    let not_found = server.metric("ssehub_requests_total{code=\"404\"}");
    let created = server.metric("ssehub_requests_total{code=\"201\"}");
    server.post_message("m", "u", "x");
    server.publish("m", "e", "x");
    assert_eq!(server.get("/missing").status, 404);
    assert_eq!(server.metric("ssehub_messages_total"), messages + 2.0);
    assert_eq!(
        server.metric("ssehub_requests_total{code=\"404\"}"),
        not_found + 1.0
    );
    assert_eq!(
        server.metric("ssehub_requests_total{code=\"201\"}"),
        created + 2.0
    );

    assert_eq!(server.metric("ssehub_streams_open"), 0.0);
    let mut stream = Stream::open(&server, "/events?room=m", "");
    stream.skip_preamble();
    assert_eq!(server.metric("ssehub_streams_open"), 1.0);
    let delivered = server.metric("ssehub_events_delivered_total");
    server.post_message("m", "u", "y");
    stream.wait_for("message");
    assert!(server.metric("ssehub_events_delivered_total") > delivered);
    assert!(server.metric("ssehub_bytes_written_total") > 0.0);
    assert!(server.metric("ssehub_connections_accepted_total") >= 10.0);
}

// ----- HEAD -------------------------------------------------------------

#[test]
fn head_has_the_headers_of_get_and_no_body() {
    let server = TestServer::start();
    server.post_message("h", "u", "x");
    for path in ["/", "/index.html", "/messages?room=h", "/rooms", "/nope"] {
        let get = server.get(path);
        assert_length(&get);
        let mut client = server.connect();
        // HEAD then GET on one connection: the second answer must follow
        // the first head at once, with no body bytes between them.
        client.send(
            format!(
                "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        let head = client.read_reply_for(true);
        assert_eq!(head.status, get.status, "{path}");
        let mut get_headers = get.headers.clone();
        get_headers.retain(|(n, _)| n != "connection");
        assert_eq!(head.headers, get_headers, "HEAD {path} headers");
        let next = client.read_reply();
        assert_eq!(next.status, 200, "HEAD {path} sent body bytes");
        assert_eq!(next.json()["status"], "ok");
    }
}

#[test]
fn head_of_events_gives_stream_headers_then_closes() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(b"HEAD /events?room=h HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.read_reply_for(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache, no-transform"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    let rest = client.read_to_close();
    assert!(
        rest.is_empty(),
        "body after HEAD: {:?}",
        String::from_utf8_lossy(&rest)
    );
    // It was not counted as an open stream.
    assert!(eventually(WAIT, || server.health()["streams"] == 0));
}

// ----- CORS -------------------------------------------------------------

const ORIGIN: &str = "http://app.example";

#[test]
fn preflight_without_cors_origin_is_bare_204() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(
        format!(
            "OPTIONS /messages HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
        )
        .as_bytes(),
    );
    let bytes = client
        .read_until_within(b"\r\n\r\n", WAIT)
        .expect("an answer");
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
    // Normal answers carry no CORS headers either.
    let reply = server.request(&format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(reply.status, 200);
    assert!(cors_names(&reply).is_empty(), "{reply:?}");
    // The connection stayed usable after the 204.
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
}

#[test]
fn preflight_with_cors_origin_has_exact_allow_headers() {
    let server = TestServer::with(|c| c.cors_origins = vec![ORIGIN.to_string()]);
    for path in ["/messages", "/events", "/publish", "*", "/anything"] {
        let mut client = server.connect();
        client.send(
            format!(
                "OPTIONS {path} HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n\
                 Access-Control-Request-Method: POST\r\n\
                 Access-Control-Request-Headers: content-type, authorization, last-event-id\r\n\r\n"
            )
            .as_bytes(),
        );
        let reply = client.read_reply();
        assert_eq!(reply.status, 204, "{path}");
        assert!(reply.body.is_empty());
        assert_eq!(
            names(&reply),
            BTreeSet::from(
                [
                    "access-control-allow-origin",
                    "access-control-allow-methods",
                    "access-control-allow-headers",
                    "access-control-max-age",
                    "vary",
                ]
                .map(String::from)
            ),
            "{path}: {reply:?}"
        );
        assert_eq!(reply.header("access-control-allow-origin"), Some(ORIGIN));
        let list = |name: &str| -> BTreeSet<String> {
            reply
                .header(name)
                .unwrap()
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        };
        assert_eq!(
            list("access-control-allow-methods"),
            BTreeSet::from(["get", "post", "options"].map(String::from))
        );
        assert_eq!(
            list("access-control-allow-headers"),
            BTreeSet::from(["last-event-id", "content-type", "authorization"].map(String::from))
        );
        assert!(list("vary").contains("origin"));
    }
    // Another origin gets the bare 204.
    let mut client = server.connect();
    client.send(
        b"OPTIONS /messages HTTP/1.1\r\nHost: t\r\nOrigin: http://evil.example\r\n\
          Access-Control-Request-Method: POST\r\n\r\n",
    );
    let bytes = client
        .read_until_within(b"\r\n\r\n", WAIT)
        .expect("an answer");
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
}

#[test]
fn cors_headers_only_for_allowed_origins() {
    let server = TestServer::with(|c| {
        c.cors_origins = vec![ORIGIN.to_string(), "http://other.example".to_string()];
        c.publish_token = Some("tok".to_string());
    });
    let get = |path: &str, origin: &str| {
        server.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
        ))
    };
    for path in [
        "/healthz",
        "/rooms",
        "/messages?room=c",
        "/",
        "/nope",
        "/publish",
        "/events?room=a%20b",
    ] {
        let reply = get(path, ORIGIN);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(ORIGIN),
            "{path}"
        );
        let reply = get(path, "http://other.example");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("http://other.example"),
            "{path}"
        );
        let reply = get(path, "http://evil.example");
        assert!(cors_names(&reply).is_empty(), "{path}: {reply:?}");
    }
    // POST answers too: 201 and 401.
    let body = message_body("c", "u", "x");
    let created = post_with(
        &server,
        "/messages",
        &format!(
            "Origin: {ORIGIN}\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\n"
        ),
        &body,
    );
    assert_eq!(created.status, 201);
    assert_eq!(created.header("access-control-allow-origin"), Some(ORIGIN));
    let refused = post_with(
        &server,
        "/messages",
        &format!("Origin: {ORIGIN}\r\n"),
        &body,
    );
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some(ORIGIN));
    // And the stream.
    let stream = Stream::open(&server, "/events?room=c", &format!("Origin: {ORIGIN}\r\n"));
    assert_eq!(
        stream.head.header("access-control-allow-origin"),
        Some(ORIGIN)
    );
    let stream = Stream::open(&server, "/events?room=c", "Origin: http://evil.example\r\n");
    assert!(cors_names(&stream.head).is_empty());
}

#[test]
fn cors_headers_on_a_413_for_an_allowed_origin() {
    let server = TestServer::with(|c| {
        c.cors_origins = vec![ORIGIN.to_string()];
        c.max_body = 100;
    });
    let reply = server.request(&format!(
        "POST /publish HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\nContent-Length: 101\r\n\r\n{}",
        "x".repeat(101)
    ));
    assert_error(&reply, 413);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(ORIGIN),
        "a page cannot read this 413 without CORS headers"
    );
}

#[test]
fn any_origin_with_star() {
    let server = TestServer::with(|c| c.cors_origins = vec!["*".to_string()]);
    let reply = server.request(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nOrigin: http://whoever.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let mut client = server.connect();
    client.send(b"OPTIONS /events HTTP/1.1\r\nHost: t\r\nOrigin: http://x.example\r\n\r\n");
    let reply = client.read_reply();
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
}

// ----- publish token ------------------------------------------------------

#[test]
fn publish_token_guards_both_post_endpoints() {
    let server = TestServer::with(|c| c.publish_token = Some("s3cret".to_string()));
    let json_type = "Content-Type: application/json\r\n";
    let body = message_body("tok", "u", "x");
    let cases: &[(&str, &str, &str, u16)] = &[
        ("/messages", json_type, &body, 401),
        (
            "/messages",
            "Authorization: Bearer nope\r\nContent-Type: application/json\r\n",
            &body,
            401,
        ),
        (
            "/messages",
            "Authorization: Basic czNjcmV0\r\nContent-Type: application/json\r\n",
            &body,
            401,
        ),
        (
            "/messages",
            "Authorization: Bearer s3cre\r\nContent-Type: application/json\r\n",
            &body,
            401,
        ),
        (
            "/messages",
            "Authorization: Bearer s3cret\r\nContent-Type: application/json\r\n",
            &body,
            201,
        ),
        ("/publish?room=tok", "", "x", 401),
        ("/publish?room=tok", "Authorization: Bearer\r\n", "x", 401),
        (
            "/publish?room=tok",
            "Authorization: Bearer s3cretX\r\n",
            "x",
            401,
        ),
        (
            "/publish?room=tok",
            "Authorization: Bearer s3cret\r\n",
            "x",
            201,
        ),
    ];
    for (path, headers, body, status) in cases {
        let reply = post_with(&server, path, headers, body);
        assert_eq!(
            reply.status,
            *status,
            "{path} {headers:?}: {}",
            reply.text()
        );
        if *status == 401 {
            assert_error(&reply, 401);
        }
    }
    // Only the two authorised posts went through; reading needs no token.
    let items = history(&server, "room=tok");
    assert_eq!(items.len(), 2);
    let mut stream = Stream::open(&server, "/events?room=tok", "");
    assert_eq!(stream.head.status, 200);
    stream.skip_preamble();
}

// ----- pipelining, HTTP/1.0, Expect, chunked --------------------------------

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /publish?room=pipe HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\none\
          POST /publish?room=pipe HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\ntwo\
          GET /messages?room=pipe HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /missing HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /rooms HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /rooms HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let health = client.read_reply();
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let one = client.read_reply();
    assert_eq!(one.status, 201);
    let two = client.read_reply();
    assert_eq!(two.status, 201);
    assert!(two.json()["id"].as_u64() > one.json()["id"].as_u64());
    let items = client.read_reply();
    assert_eq!(items.status, 200);
    let data: Vec<Value> = items
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["data"].clone())
        .collect();
    assert_eq!(data, [json!("one"), json!("two")]);
    assert_eq!(client.read_reply().status, 404);
    assert_eq!(client.read_reply_for(true).status, 200);
    let rooms = client.read_reply();
    assert_eq!(rooms.status, 200);
    assert!(rooms.json().is_array());
    assert!(client.read_to_close().is_empty());
}

#[test]
fn pipelined_requests_split_across_writes() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.stream.set_nodelay(true).unwrap();
    let all = b"POST /publish?room=split HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /messages?room=split HTTP/1.1\r\nHost: t\r\n\r\n";
    for piece in all.chunks(7) {
        client.send(piece);
    }
    assert_eq!(client.read_reply().status, 201);
    let items = client.read_reply().json();
    assert_eq!(items[0]["data"], "hello");
}

#[test]
fn a_stream_request_pipelined_after_a_post() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(
        b"POST /publish?room=pp HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi\
          GET /events?room=pp HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let posted = client.read_reply();
    assert_eq!(posted.status, 201);
    let head = client.read_reply_for(true);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let mut stream = Stream { client, head };
    stream.skip_preamble();
    let replayed = stream.next_event();
    assert_eq!(replayed.id, Some(posted.json()["id"].to_string()));
    assert_eq!(replayed.data, "hi");
    let live = server.publish("pp", "x", "live");
    assert_eq!(stream.next_event().id, Some(live.to_string()));
}

#[test]
fn http10_closes_after_the_answer() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let head = client.read_until(b"\r\n");
    assert_eq!(head, b"HTTP/1.0 200 OK\r\n");
    client.pending.splice(0..0, head);
    let reply = client.read_reply();
    assert_eq!(reply.status, 200);
    assert_length(&reply);
    assert!(
        client.closes_within(WAIT),
        "HTTP/1.0 without keep-alive must close"
    );

    // A POST in HTTP/1.0 works too.
    let reply = server.request("POST /publish?room=old HTTP/1.0\r\nContent-Length: 3\r\n\r\nold");
    assert_eq!(reply.status, 201);
}

#[test]
fn http10_keep_alive_keeps_the_connection() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let reply = client.read_reply();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply
            .header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive")
    );
    assert!(!client.closes_within(Duration::from_millis(300)));
    client.send(b"GET /rooms HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
    client.send(b"GET /rooms HTTP/1.0\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
    assert!(client.closes_within(WAIT));
}

#[test]
fn http11_close_header_closes() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let reply = client.read_reply();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(client.closes_within(WAIT));
}

#[test]
fn expect_continue_gets_100_then_201() {
    let server = TestServer::start();
    let body = message_body("exp", "u", "after continue");
    let mut client = server.connect();
    client.send(
        format!(
            "POST /messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = client.read_until(b"\r\n\r\n");
    assert_eq!(
        String::from_utf8(interim).unwrap(),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    client.send(body.as_bytes());
    let reply = client.read_reply();
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(history(&server, "room=exp")[0]["text"], "after continue");
    // The connection is still good for another request.
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
}

#[test]
fn expect_continue_with_a_too_large_body_is_413_at_once() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(
        b"POST /publish HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10485760\r\n\r\n",
    );
    // No body is sent: the answer must come anyway, and it is not a 100.
    let reply = client.read_reply();
    assert_error(&reply, 413);
    assert!(client.closes_within(WAIT));
    server.assert_alive();
}

/// Sends a chunked POST as separate writes and returns the answer.
fn chunked_post(server: &TestServer, path: &str, extra: &str, pieces: &[&[u8]]) -> Reply {
    let mut client = server.connect();
    client.stream.set_nodelay(true).unwrap();
    client.send(
        format!("POST {path} HTTP/1.1\r\nHost: t\r\n{extra}Transfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
    );
    for piece in pieces {
        client.send(piece);
        // Give each piece its own segment; not a wait for the server.
        std::thread::sleep(Duration::from_millis(5));
    }
    client.read_reply()
}

#[test]
fn chunked_bodies_in_pieces() {
    let server = TestServer::start();
    let reply = chunked_post(
        &server,
        "/publish?room=chunk&event=c",
        "",
        &[
            b"4\r\nab",
            b"cd\r\n",
            b"3;ext=1\r\nef",
            b"g\r",
            b"\n1",
            b"0\r\n0123456789abcdef\r\n0\r\n",
            b"\r\n",
        ],
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let body = message_body("chunk", "u", "chunked json");
    let (first, second) = body.split_at(10);
    let reply = chunked_post(
        &server,
        "/messages",
        "Content-Type: application/json\r\n",
        &[
            format!("{:x}\r\n{first}\r\n", first.len()).as_bytes(),
            format!("{:X}\r\n{second}\r\n", second.len()).as_bytes(),
            b"0\r\nX-Trailer: yes\r\n\r\n",
        ],
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let items = history(&server, "room=chunk");
    assert_eq!(items[0]["data"], "abcdefg0123456789abcdef");
    assert_eq!(items[1]["text"], "chunked json");
}

#[test]
fn chunked_body_then_a_pipelined_request() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(
        b"POST /publish?room=cp HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          2\r\nhi\r\n0\r\n\r\n\
          GET /messages?room=cp HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(client.read_reply().status, 201);
    let items = client.read_reply().json();
    assert_eq!(items[0]["data"], "hi");
}

#[test]
fn malformed_chunked_and_framing_are_400() {
    let server = TestServer::start();
    let reply = chunked_post(&server, "/publish", "", &[b"zz\r\nab\r\n0\r\n\r\n"]);
    assert_error(&reply, 400);
    let reply = chunked_post(&server, "/publish", "", &[b"2\r\nabc\r\n0\r\n\r\n"]);
    assert_error(&reply, 400);
    let reply = server.request(
        "POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    );
    assert_error(&reply, 400);
    let reply = server.request("POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\nab");
    assert_error(&reply, 400);
    let reply = server.request(
        "POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_error(&reply, 400);
    assert_eq!(server.metric("ssehub_messages_total"), 0.0);
    server.assert_alive();
}

#[test]
fn every_non_stream_answer_has_content_length() {
    let server = TestServer::with(|c| c.publish_token = Some("t".to_string()));
    let requests = [
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /rooms HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /messages HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
        "DELETE /rooms HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
        "POST /publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t\r\nContent-Length: 1\r\n\r\nx",
        "POST /publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t\r\nContent-Length: 0\r\n\r\n",
        "GET /messages?after=z HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    let mut client = server.connect();
    for raw in requests {
        client.send(raw.as_bytes());
        let reply = client.read_reply();
        assert!(reply.status >= 200, "{raw:?}");
        assert_length(&reply);
    }
}

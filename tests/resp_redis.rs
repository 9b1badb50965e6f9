//! The RESP codec against a real `redis-server` (Redis 6 or newer), spoken
//! to over a plain `TcpStream` with nothing but `ssehub::resp`.
//!
//! Each test starts a private server on a free port, its files in a temp
//! folder, and kills it when done, so a system Redis on 6379 is never
//! touched (`tests/support/redis.rs`). Without `redis-server` on the PATH
//! the tests fail: `make deps` installs it.
mod support;

use std::net::TcpStream;

use ssehub::redis_url::RedisUrl;
use ssehub::resp::{
    self, encode_command, parse_range, parse_xadd, parse_xread, Reply, StreamId, EVENT_ID_LIMIT,
};
use support::redis::{Conn, RedisServer};

fn bulk(bytes: &[u8]) -> Reply {
    Reply::Bulk(Some(bytes.to_vec()))
}

/// Several XADDs pipelined in one write come back as ids that increase
/// and map to increasing event ids below 2^53; XRANGE, XREVRANGE and
/// XREAD read back exactly what was written, binary bytes included.
#[test]
fn pipelined_xadd_then_read_back() {
    let redis = RedisServer::start();
    let mut conn = redis.connect();
    let key = b"ssehub-test:room:lobby";
    let bodies: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("message {i}\r\nline two\0\u{e9}").into_bytes())
        .chain([Vec::new(), vec![0xff, b'\r', 0, b'\n']])
        .collect();

    let mut out = Vec::new();
    for body in &bodies {
        resp::xadd(
            key,
            b"*",
            Some(1000),
            &[(b"event", b"message"), (b"data", body)],
            &mut out,
        );
    }
    conn.send(&out);
    let ids: Vec<StreamId> = bodies
        .iter()
        .map(|_| parse_xadd(conn.reply()).expect("an id"))
        .collect();

    let mut last_event = 0;
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1], "{pair:?}");
    }
    for id in &ids {
        let event = id.event_id().expect("fits the event id scheme");
        assert!(
            event > last_event && event < EVENT_ID_LIMIT,
            "{id} -> {event}"
        );
        last_event = event;
        // Redis's clock is this machine's: the millisecond is a recent one.
        assert!(id.ms > 1_600_000_000_000, "{id}");
    }

    let fields = |body: &[u8]| {
        vec![
            (b"event".to_vec(), b"message".to_vec()),
            (b"data".to_vec(), body.to_vec()),
        ]
    };

    let mut out = Vec::new();
    resp::xrange(key, b"-", b"+", Some(100), &mut out);
    conn.send(&out);
    let entries = parse_range(conn.reply()).expect("XRANGE reply");
    assert_eq!(entries.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    for (entry, body) in entries.iter().zip(&bodies) {
        assert_eq!(entry.fields, fields(body));
    }

    // Exclusive start, COUNT, and the reverse order.
    let mut out = Vec::new();
    resp::xrange(
        key,
        format!("({}", ids[0]).as_bytes(),
        b"+",
        Some(2),
        &mut out,
    );
    resp::xrevrange(key, b"+", b"-", Some(3), &mut out);
    conn.send(&out);
    let after_first = parse_range(conn.reply()).unwrap();
    assert_eq!(
        after_first.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[1..3]
    );
    let newest = parse_range(conn.reply()).unwrap();
    let mut want: Vec<StreamId> = ids[ids.len() - 3..].to_vec();
    want.reverse();
    assert_eq!(newest.iter().map(|e| e.id).collect::<Vec<_>>(), want);

    // XREAD after the fifth entry, from two streams (one missing: left out).
    let mut out = Vec::new();
    let from = ids[4].to_string();
    resp::xread(
        None,
        Some(100),
        &[(key, from.as_bytes()), (b"ssehub-test:none", b"0")],
        &mut out,
    );
    conn.send(&out);
    let streams = parse_xread(conn.reply()).expect("XREAD reply");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].0, key);
    assert_eq!(
        streams[0].1.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[5..]
    );
    assert_eq!(
        streams[0].1.last().unwrap().fields,
        fields(bodies.last().unwrap())
    );

    // Nothing after the last id: with BLOCK, a null array once the time is up.
    let mut out = Vec::new();
    resp::xread(Some(1), None, &[(key, b"$")], &mut out);
    conn.send(&out);
    let timed_out = conn.reply();
    assert_eq!(timed_out, Reply::Array(None));
    assert_eq!(parse_xread(timed_out), Ok(vec![]));
}

/// A blocked XREAD on one connection gets the entry another connection
/// adds, the way nodes of a cluster hear of each other's publishes.
#[test]
fn blocking_xread_wakes_on_another_connections_xadd() {
    let redis = RedisServer::start();
    let key = b"ssehub-test:events";
    let mut reader = redis.connect();
    let mut writer = redis.connect();
    // A first entry, so that the reader can wait for what follows it.
    let first = parse_xadd(writer.call(&[b"XADD", key, b"*", b"n", b"0"])).unwrap();

    let mut out = Vec::new();
    resp::xread(
        Some(5_000),
        Some(10),
        &[(key, first.to_string().as_bytes())],
        &mut out,
    );
    reader.send(&out);

    let mut out = Vec::new();
    resp::xadd(key, b"*", None, &[(b"n", b"1")], &mut out);
    writer.send(&out);
    let added = parse_xadd(writer.reply()).unwrap();

    let streams = parse_xread(reader.reply()).unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].1.len(), 1);
    assert_eq!(streams[0].1[0].id, added);
    assert!(added > first);
    assert!(added.event_id().unwrap() > first.event_id().unwrap());
}

/// Error replies answer one command and leave the pipeline in step.
#[test]
fn error_replies_decode_and_keep_the_pipeline_in_step() {
    let redis = RedisServer::start();
    let mut conn = redis.connect();
    let mut out = Vec::new();
    encode_command(&[b"SET", b"plain", b"x"], &mut out);
    // A stream command on a string key: WRONGTYPE.
    resp::xadd(b"plain", b"*", Some(10), &[(b"f", b"v")], &mut out);
    resp::xadd(b"s", b"*", None, &[(b"f", b"v")], &mut out);
    // An explicit id not above the stream's last: ERR.
    resp::xadd(b"s", b"0-1", None, &[(b"f", b"v")], &mut out);
    resp::xrange(b"plain", b"-", b"+", None, &mut out);
    encode_command(&[b"NOSUCHCOMMAND"], &mut out);
    encode_command(&[b"INCR", b"n"], &mut out);
    encode_command(&[b"GET", b"absent"], &mut out);
    conn.send(&out);

    assert_eq!(conn.reply(), Reply::Simple("OK".into()));
    match conn.reply() {
        Reply::Error(message) => assert!(message.starts_with("WRONGTYPE"), "{message}"),
        other => panic!("expected WRONGTYPE, got {other:?}"),
    }
    assert!(parse_xadd(conn.reply()).is_ok());
    let too_small = parse_xadd(conn.reply()).unwrap_err();
    assert!(too_small.to_string().contains("ERR"), "{too_small}");
    assert!(
        matches!(parse_range(conn.reply()), Err(resp::StreamError::Redis(m)) if m.starts_with("WRONGTYPE"))
    );
    assert!(matches!(conn.reply(), Reply::Error(m) if m.starts_with("ERR unknown command")));
    assert_eq!(conn.reply(), Reply::Integer(1));
    assert_eq!(conn.reply(), Reply::Bulk(None));
}

/// A reply far larger than one read is decoded across many reads.
#[test]
fn large_replies_span_many_reads() {
    let redis = RedisServer::start();
    let mut conn = redis.connect();
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    assert_eq!(
        conn.call(&[b"SET", b"big", &big]),
        Reply::Simple("OK".into())
    );
    let reads = conn.reads;
    assert_eq!(conn.call(&[b"GET", b"big"]), bulk(&big));
    assert!(conn.reads - reads > 1, "one read for 4 MiB?");
    // And an array of many small bulks, e.g. a long XRANGE.
    let mut out = Vec::new();
    for i in 0..2000 {
        resp::xadd(
            b"long",
            b"*",
            None,
            &[(b"i", i.to_string().as_bytes())],
            &mut out,
        );
    }
    conn.send(&out);
    for _ in 0..2000 {
        parse_xadd(conn.reply()).unwrap();
    }
    let mut out = Vec::new();
    resp::xrange(b"long", b"-", b"+", None, &mut out);
    conn.send(&out);
    let entries = parse_range(conn.reply()).unwrap();
    assert_eq!(entries.len(), 2000);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(
            entry.fields,
            vec![(b"i".to_vec(), i.to_string().into_bytes())]
        );
    }
    // 2000 entries pipelined may exceed 1000 in one millisecond: then the
    // id is refused as an event id, never mapped onto the next millisecond.
    for pair in entries.windows(2) {
        match (pair[0].id.event_id(), pair[1].id.event_id()) {
            (Ok(a), Ok(b)) => assert!(a < b),
            (_, Err(e)) => assert_eq!(e, resp::StreamError::SeqTooLarge),
            (Err(e), _) => assert_eq!(e, resp::StreamError::SeqTooLarge),
        }
    }
}

/// The handshake a `redis://` URL implies logs in and selects the database.
#[test]
fn url_handshake_authenticates_and_selects() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cr:et@"]);
    let mut conn = redis.connect();
    assert!(matches!(conn.call(&[b"PING"]), Reply::Error(m) if m.starts_with("NOAUTH")));

    let url =
        RedisUrl::parse(&format!("redis://:s3cr%3Aet%40@127.0.0.1:{}/3", redis.port)).unwrap();
    assert_eq!(url.address(), format!("127.0.0.1:{}", redis.port));
    let mut conn = Conn::new(TcpStream::connect(url.address()).unwrap());
    let mut out = Vec::new();
    assert_eq!(url.handshake(&mut out), 2);
    encode_command(&[b"SET", b"k", b"in db 3"], &mut out);
    encode_command(&[b"SELECT", b"0"], &mut out);
    encode_command(&[b"EXISTS", b"k"], &mut out);
    conn.send(&out);
    for _ in 0..4 {
        assert_eq!(conn.reply(), Reply::Simple("OK".into()));
    }
    assert_eq!(conn.reply(), Reply::Integer(0));

    let wrong = RedisUrl::parse(&format!("redis://:nope@127.0.0.1:{}", redis.port)).unwrap();
    let mut conn = Conn::new(TcpStream::connect(wrong.address()).unwrap());
    let mut out = Vec::new();
    wrong.handshake(&mut out);
    conn.send(&out);
    assert!(matches!(conn.reply(), Reply::Error(m) if m.starts_with("WRONGPASS")));
}

//! The embedding API, used only through the public surface.
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ssehub::hooks::{Decision, RequestKind, StreamNotice};
use ssehub::{Config, HandleError, Server};

fn config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        heartbeat: Duration::ZERO,
        ..Config::default()
    }
}

/// Turns the loop until `done` holds or the deadline passes.
#[track_caller]
fn turn_until(server: &mut Server, mut done: impl FnMut(&mut Server) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(server) {
        assert!(Instant::now() < deadline, "condition not reached");
        server.poll_once(Some(Duration::from_millis(10))).unwrap();
    }
}

fn open_stream(addr: std::net::SocketAddr, query: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .write_all(format!("GET /events?{query} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    socket
}

/// Reads a stream until `stop` says enough, returning all text read.
fn read_stream(mut socket: TcpStream, stop: impl Fn(&str) -> bool) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = Vec::new();
    let mut buf = [0u8; 65536];
    while !stop(&String::from_utf8_lossy(&text)) {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8(text).unwrap()
}

fn data_lines(text: &str, event: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l == format!("event: {event}")))
        .flat_map(|block| {
            block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn publishes_from_several_threads_arrive_complete_and_in_order_per_thread() {
    const THREADS: usize = 4;
    const EACH: usize = 300;
    let mut server = Server::bind(config()).unwrap();
    let addr = server.local_addr().unwrap();
    let opened = Rc::new(RefCell::new(0));
    let seen = opened.clone();
    server.on_stream(move |n| {
        if n.opened {
            *seen.borrow_mut() += 1
        }
    });
    let reader = std::thread::spawn(move || {
        let socket = open_stream(addr, "room=multi");
        read_stream(socket, |t| {
            t.matches("event: tick").count() >= THREADS * EACH
        })
    });
    turn_until(&mut server, |_| *opened.borrow() == 1);

    let handle = server.handle();
    let publishers: Vec<_> = (0..THREADS)
        .map(|t| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                for n in 0..EACH {
                    handle
                        .publish("multi", Some("tick"), &format!("{t}:{n}"))
                        .unwrap();
                }
            })
        })
        .collect();
    turn_until(&mut server, |s| {
        s.stats().events_published == (THREADS * EACH) as u64
    });
    for p in publishers {
        p.join().unwrap();
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(reader.join().unwrap()).unwrap());
    let text = loop {
        server.poll_once(Some(Duration::from_millis(10))).unwrap();
        if let Ok(text) = rx.try_recv() {
            break text;
        }
    };
    let mut next: HashMap<usize, usize> = HashMap::new();
    for line in data_lines(&text, "tick") {
        let (t, n) = line.split_once(':').unwrap();
        let (t, n): (usize, usize) = (t.parse().unwrap(), n.parse().unwrap());
        let expected = next.entry(t).or_insert(0);
        assert_eq!(n, *expected, "thread {t} out of order or lost");
        *expected += 1;
    }
    assert_eq!(next.len(), THREADS);
    assert!(next.values().all(|n| *n == EACH), "{next:?}");
}

#[test]
fn poll_once_with_zero_timeout_does_not_block() {
    let mut server = Server::bind(config()).unwrap();
    let start = Instant::now();
    for _ in 0..100 {
        server.poll_once(Some(Duration::ZERO)).unwrap();
    }
    // A blocking poll would wait for the next timer (hundreds of ms) each
    // time: 100 of them would take far longer than this generous bound.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn shutdown_flushes_pending_events_then_closes() {
    let mut server = Server::bind(config()).unwrap();
    let addr = server.local_addr().unwrap();
    let reader = std::thread::spawn(move || read_stream(open_stream(addr, "room=bye"), |_| false));
    turn_until(&mut server, |s| s.stats().streams == 1);
    let body = "x".repeat(1000);
    for _ in 0..100 {
        server.publish("bye", Some("last"), &body).unwrap();
    }
    let handle = server.handle();
    server.shutdown();
    turn_until(&mut server, |s| s.is_finished());
    let text = reader.join().unwrap();
    assert_eq!(
        text.matches("event: last").count(),
        100,
        "every pending event before the close"
    );
    assert_eq!(
        handle.publish("bye", None, "late"),
        Err(HandleError::Closed)
    );
}

#[test]
fn publishing_after_the_server_is_gone_is_an_error() {
    let server = Server::bind(config()).unwrap();
    let handle = server.handle();
    assert_eq!(handle.publish("r", None, "ok"), Ok(()));
    drop(server);
    assert_eq!(handle.publish("r", None, "late"), Err(HandleError::Closed));
    assert_eq!(handle.shutdown(), Err(HandleError::Closed));
    assert_eq!(
        handle.publish("bad room", None, "x"),
        Err(HandleError::InvalidRoom)
    );
    assert!(matches!(
        handle.publish("r", Some("a\nb"), "x"),
        Err(HandleError::InvalidEvent(_))
    ));
}

#[test]
fn hooks_see_streams_and_decide_on_publishes() {
    let mut server = Server::bind(config()).unwrap();
    let addr = server.local_addr().unwrap();
    let notices: Rc<RefCell<Vec<StreamNotice>>> = Rc::default();
    let log = notices.clone();
    server.on_stream(move |n| log.borrow_mut().push(n.clone()));
    server.authorize(|req| match req.kind {
        RequestKind::Subscribe if req.rooms.iter().any(|r| r == "secret") => Decision::Deny {
            status: 403,
            message: "not for you".into(),
        },
        RequestKind::Publish if req.header("X-Key") != Some("k") => Decision::Deny {
            status: 401,
            message: "need X-Key".into(),
        },
        _ => Decision::Allow,
    });

    let stream = open_stream(addr, "room=a&room=b&role=agent");
    turn_until(&mut server, |_| notices.borrow().len() == 1);
    {
        let n = &notices.borrow()[0];
        assert!(n.opened && n.agent);
        assert_eq!(n.rooms, ["a", "b"]);
        assert_eq!(n.peer, stream.local_addr().unwrap());
    }
    drop(stream);
    turn_until(&mut server, |_| notices.borrow().len() == 2);
    assert!(!notices.borrow()[1].opened);

    let ask = |server: &mut Server, raw: String| -> String {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut socket = TcpStream::connect(addr).unwrap();
            socket.write_all(raw.as_bytes()).unwrap();
            let mut reply = String::new();
            socket.read_to_string(&mut reply).unwrap();
            tx.send(reply).unwrap();
        });
        loop {
            server.poll_once(Some(Duration::from_millis(10))).unwrap();
            if let Ok(reply) = rx.try_recv() {
                return reply;
            }
        }
    };
    let denied = ask(
        &mut server,
        "GET /events?room=secret HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
    );
    assert!(denied.starts_with("HTTP/1.1 403 "), "{denied}");
    assert!(denied.ends_with("{\"error\":\"not for you\"}"), "{denied}");
    let post = |key: &str| {
        format!("POST /publish?room=a HTTP/1.1\r\nConnection: close\r\n{key}Content-Length: 2\r\n\r\nhi")
    };
    let refused = ask(&mut server, post(""));
    assert!(refused.starts_with("HTTP/1.1 401 "), "{refused}");
    let allowed = ask(&mut server, post("X-Key: k\r\n"));
    assert!(allowed.starts_with("HTTP/1.1 201 "), "{allowed}");
    assert_eq!(server.stats().events_published, 1);
}

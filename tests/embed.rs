//! The embedding API, used only through the public surface.
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ssehub::hooks::{Decision, RequestKind, StreamNotice};
use ssehub::{Config, HandleError, Server, Status};

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
    let opened = Arc::new(Mutex::new(0));
    let seen = opened.clone();
    server.on_stream(move |n| {
        if n.opened {
            *seen.lock().unwrap() += 1
        }
    });
    let reader = std::thread::spawn(move || {
        let socket = open_stream(addr, "room=multi");
        read_stream(socket, |t| {
            t.matches("event: tick").count() >= THREADS * EACH
        })
    });
    turn_until(&mut server, |_| *opened.lock().unwrap() == 1);

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
    let notices: Arc<Mutex<Vec<StreamNotice>>> = Arc::default();
    let log = notices.clone();
    server.on_stream(move |n| log.lock().unwrap().push(n.clone()));
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
    turn_until(&mut server, |_| notices.lock().unwrap().len() == 1);
    {
        let n = &notices.lock().unwrap()[0];
        assert!(n.opened && n.agent);
        assert_eq!(n.rooms, ["a", "b"]);
        assert_eq!(n.peer, stream.local_addr().unwrap());
    }
    drop(stream);
    turn_until(&mut server, |_| notices.lock().unwrap().len() == 2);
    assert!(!notices.lock().unwrap()[1].opened);

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

/// A server is `Send`: built here, run on another thread, stopped and
/// read from a handle while it runs (this did not compile before: the
/// hooks were not `Send`).
#[test]
fn a_server_moves_to_its_own_thread_and_a_handle_reads_its_stats() {
    let mut server = Server::bind(config()).unwrap();
    let addr = server.local_addr().unwrap();
    assert_ne!(server.config().bind.port(), 0, "the port actually bound");
    assert_eq!(server.config().bind, addr);
    let opened = Arc::new(Mutex::new(Vec::new()));
    let seen = opened.clone();
    server.on_stream(move |n| seen.lock().unwrap().push(n.opened));
    server.authorize(|_| Decision::Allow);
    let handle = server.handle();
    let running = std::thread::spawn(move || server.run());

    let reader = std::thread::spawn(move || {
        read_stream(open_stream(addr, "room=far"), |t| {
            t.contains("event: reading")
        })
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.stats().streams != 1 {
        assert!(Instant::now() < deadline, "{:?}", handle.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.publish("far", Some("reading"), "21").unwrap();
    assert!(reader.join().unwrap().contains("data: 21"));
    while handle.stats().events_published != 1 {
        assert!(Instant::now() < deadline, "{:?}", handle.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.shutdown().unwrap();
    running.join().unwrap().unwrap();
    assert_eq!(
        handle.stats().streams,
        0,
        "stats stay readable after the end"
    );
    assert_eq!(*opened.lock().unwrap(), [true, false]);
}

/// The authoriser reads a decoded query token, ties the stream to a user
/// id that `on_stream` then hears, and refuses with its own headers.
#[test]
fn the_authoriser_reads_the_query_tags_streams_and_sets_headers() {
    let mut server = Server::bind(config()).unwrap();
    let addr = server.local_addr().unwrap();
    let notices: Arc<Mutex<Vec<StreamNotice>>> = Arc::default();
    let log = notices.clone();
    server.on_stream(move |n| log.lock().unwrap().push(n.clone()));
    server.authorize(|req| match req.query_param("token").as_deref() {
        Some("user 7") => Decision::AllowAs(7),
        _ => Decision::DenyWith {
            status: 401,
            message: "a token is needed".into(),
            headers: vec![
                ("WWW-Authenticate".into(), "Bearer".into()),
                ("Retry-After".into(), "3".into()),
            ],
        },
    });
    let stream = open_stream(addr, "room=a&token=user%207");
    turn_until(&mut server, |_| notices.lock().unwrap().len() == 1);
    assert_eq!(notices.lock().unwrap()[0].tag, Some(7));
    drop(stream);
    turn_until(&mut server, |_| notices.lock().unwrap().len() == 2);
    let closed = notices.lock().unwrap()[1].clone();
    assert!(!closed.opened);
    assert_eq!(closed.tag, Some(7), "the close carries the tag too");

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut socket = TcpStream::connect(addr).unwrap();
        socket
            .write_all(b"GET /events?room=a&token=nope HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        socket.read_to_string(&mut reply).unwrap();
        tx.send(reply).unwrap();
    });
    let reply = loop {
        server.poll_once(Some(Duration::from_millis(10))).unwrap();
        if let Ok(reply) = rx.try_recv() {
            break reply;
        }
    };
    assert!(reply.starts_with("HTTP/1.1 401 "), "{reply}");
    assert!(
        reply.contains("\r\nWWW-Authenticate: Bearer\r\n"),
        "{reply}"
    );
    assert!(reply.contains("\r\nRetry-After: 3\r\n"), "{reply}");
    assert_eq!(
        notices.lock().unwrap().len(),
        2,
        "a refused stream is not reported"
    );
}

/// Results that tell the truth: no id for an event nobody will get, and
/// `poll_once` says when the server has stopped.
#[test]
fn publish_after_shutdown_is_an_error_and_poll_once_says_stopped() {
    let mut server = Server::bind(Config {
        shutdown_grace: Duration::from_millis(100),
        ..config()
    })
    .unwrap();
    assert_eq!(
        server.poll_once(Some(Duration::ZERO)).unwrap(),
        Status::Running
    );
    assert!(server.publish("r", None, "before").is_ok());
    server.shutdown();
    assert_eq!(server.publish("r", None, "after"), Err(HandleError::Closed));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.poll_once(Some(Duration::from_millis(10))).unwrap() == Status::Running {
        assert!(Instant::now() < deadline, "never stopped");
    }
    assert!(server.is_finished());
}

/// Step mode with one poll for host and server: the server's poll is
/// nested in the host's through its file descriptor, which fires when a
/// client arrives; the host then gives the server a zero-timeout turn.
#[test]
fn the_servers_poll_nests_in_a_host_poll() {
    use mio::unix::SourceFd;
    use mio::{Events, Interest, Poll, Token};
    use std::os::fd::AsRawFd;

    let mut server = Server::bind(config()).unwrap();
    let addr = server.local_addr().unwrap();
    let mut host = Poll::new().unwrap();
    let mut events = Events::with_capacity(16);
    host.registry()
        .register(
            &mut SourceFd(&server.as_raw_fd()),
            Token(7),
            Interest::READABLE,
        )
        .unwrap();
    // Let the server settle its start-up work, so that readiness below is
    // the client's.
    while server.timeout() == Duration::ZERO {
        server.poll_once(Some(Duration::ZERO)).unwrap();
    }
    let reader = std::thread::spawn(move || {
        read_stream(open_stream(addr, "room=nested"), |t| {
            t.contains("event: hello")
        })
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut woken = 0;
    while server.stats().streams == 0 {
        assert!(Instant::now() < deadline, "the stream never opened");
        host.poll(&mut events, Some(server.timeout())).unwrap();
        woken += events.iter().filter(|e| e.token() == Token(7)).count();
        server.poll_once(Some(Duration::ZERO)).unwrap();
    }
    assert!(
        woken > 0,
        "the host's poll never saw the server's readiness"
    );
    server.shutdown();
    while server.poll_once(Some(Duration::from_millis(10))).unwrap() == Status::Running {}
    assert!(reader.join().unwrap().contains("event: hello"));
}

/// With access control on, the authoriser sees who the request is.
#[test]
fn the_authoriser_sees_the_requester_of_a_private_desk() {
    let secret = "an embedder's secret of 32+ characters";
    let mut server = Server::bind(Config {
        auth_secret: Some(secret.into()),
        ..config()
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    server.authorize(move |req| {
        let who = req.requester.expect("private mode names the requester");
        log.lock().unwrap().push(format!(
            "{} {} {:?}",
            who.role,
            who.user.unwrap_or("-"),
            who.rooms
        ));
        Decision::Allow
    });
    let claims = ssehub::token::Claims {
        sub: "Carla".into(),
        exp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60,
        nbf: None,
        iat: None,
        grant: ssehub::token::Grant::Rooms(vec!["v-1".into()]),
        visitor: false,
    };
    let token = ssehub::token::sign(&claims, secret.as_bytes());
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .write_all(
            format!("GET /events?room=v-1 HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    turn_until(&mut server, |s| s.stats().streams == 1);
    assert_eq!(
        *seen.lock().unwrap(),
        ["customer Carla Some([\"v-1\"])".to_string()]
    );
}

//! The journal under SIGKILL: every message whose 201 was received is in
//! the history after a restart, and ids never repeat.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Ssehub {
    child: Child,
    addr: SocketAddr,
}

impl Ssehub {
    fn start(journal: &std::path::Path) -> Ssehub {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssehub"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--history",
                "100000",
                "--log-level",
                "info",
                "--journal",
            ])
            .arg(journal)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start ssehub");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            assert!(Instant::now() < deadline, "no listening line");
            let line = lines.next().expect("stderr open").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split('/').next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ssehub { child, addr }
    }
}

impl Drop for Ssehub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a fresh connection; `None` if the server went away.
fn request(addr: SocketAddr, raw: &str) -> Option<(u16, String)> {
    let mut socket = TcpStream::connect(addr).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    socket.write_all(raw.as_bytes()).ok()?;
    let mut reply = String::new();
    socket.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn post(addr: SocketAddr, n: u64) -> Option<u64> {
    let body = format!("{{\"room\":\"crash\",\"user\":\"t\",\"text\":\"m{n}\"}}");
    let raw = format!(
        "POST /messages HTTP/1.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = request(addr, &raw)?;
    if status != 201 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["id"].as_u64()
}

fn history_ids(addr: SocketAddr) -> Vec<u64> {
    let (status, body) = request(
        addr,
        "GET /messages?room=crash HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(status, 200);
    let items: serde_json::Value = serde_json::from_str(&body).unwrap();
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn sigkill_loses_no_acknowledged_message_and_ids_never_repeat() {
    let dir = std::env::temp_dir().join(format!("ssehub-journal-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;

    let mut acknowledged: Vec<u64> = Vec::new();
    let mut highest_seen = 0;
    for round in 0..4u64 {
        let server = Ssehub::start(&path);
        let addr = server.addr;
        let ids = history_ids(addr);
        // Every acknowledged id so far is back, in order, each once.
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "history ids not strictly increasing"
        );
        for id in &acknowledged {
            assert!(
                ids.binary_search(id).is_ok(),
                "round {round}: acknowledged id {id} lost"
            );
        }

        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let poster = {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && n < 5000 {
                    n += 1;
                    match post(addr, n) {
                        Some(id) => acked.lock().unwrap().push(id),
                        None => break,
                    }
                }
            })
        };
        // Kill at a pseudo-random moment while posts are in flight.
        let wait_ms = 100 + (seed.wrapping_mul(round + 7) % 400);
        std::thread::sleep(Duration::from_millis(wait_ms));
        drop(server); // SIGKILL
        stop.store(true, Ordering::SeqCst);
        poster.join().unwrap();
        let new_ids = acked.lock().unwrap().clone();
        assert!(
            !new_ids.is_empty(),
            "round {round}: no post was acknowledged"
        );
        assert!(
            new_ids[0] > highest_seen,
            "round {round}: id {} repeats an earlier one",
            new_ids[0]
        );
        assert!(new_ids.windows(2).all(|w| w[0] < w[1]));
        highest_seen = *new_ids.last().unwrap();
        acknowledged.extend(new_ids);
    }
    let server = Ssehub::start(&path);
    let ids = history_ids(server.addr);
    for id in &acknowledged {
        assert!(ids.binary_search(id).is_ok(), "acknowledged id {id} lost");
    }
    let next = post(server.addr, 0).unwrap();
    assert!(
        next > *ids.last().unwrap(),
        "a new id must be above every id issued"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

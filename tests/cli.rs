//! The binary itself: `--help`, `--version`, bad flags and variables
//! (exit 2), a port in use (exit 1), the start log line, and a real run on
//! port 0 that serves `/healthz`.
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// How long a run that should end at once may take.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

/// The built binary (see [`ssehub_command`]), its output piped.
fn ssehub(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = ssehub_command(args, env);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A child that is killed (by its own handle) if the test ends first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs to completion within [`EXIT_DEADLINE`] and returns what it printed.
#[track_caller]
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = ssehub(args, env).spawn().expect("spawn ssehub");
    let mut running = Running(child);
    let deadline = Instant::now() + EXIT_DEADLINE;
    loop {
        if running.0.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "ssehub {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The output is small: it fits in the pipes while the child runs.
    let Running(child) = &mut running;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts a server and returns it with its stderr lines so far, up to and
/// including the line saying where it listens.
#[track_caller]
fn start(args: &[&str], env: &[(&str, &str)]) -> (Running, String, mpsc::Receiver<String>) {
    let mut child = ssehub(args, env).spawn().expect("spawn ssehub");
    let stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + EXIT_DEADLINE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains("listening on http://");
                seen.push(line.clone());
                if found {
                    return (running, line, rx);
                }
            }
            Err(_) => panic!("no 'listening on http://' line; stderr: {seen:#?}"),
        }
    }
}

#[track_caller]
fn healthz(addr: SocketAddr) -> Reply {
    let mut client = Client::connect(addr);
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    client.read_reply()
}

#[test]
fn help_prints_usage_and_exits_0() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag], &[]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let usage = text(&out.stdout);
        assert!(usage.contains("Usage"), "{usage}");
        for named in [
            "--bind",
            "--www",
            "--heartbeat",
            "--history",
            "--max-clients",
            "--max-body",
            "--publish-token",
            "--cors-origin",
            "--log-level",
        ] {
            assert!(usage.contains(named), "usage does not name {named}");
        }
    }
}

/// `ssehub --help | head -1`: the reader is gone before the usage is
/// written. A closed pipe is no reason for a panic or a failure status.
#[test]
fn help_into_a_closed_pipe_exits_0_without_a_panic() {
    for _ in 0..3 {
        let mut child = ssehub(&["--help"], &[]).spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(out.status.code(), Some(0), "{stderr}");
    }
}

#[test]
fn version_prints_the_version_and_exits_0() {
    for flag in ["--version", "-V"] {
        let out = run(&[flag], &[]);
        assert_eq!(out.status.code(), Some(0));
        let version = text(&out.stdout);
        assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
        assert!(version.contains("ssehub"), "{version}");
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--nope"], "--nope"),
        (&["--bind", "localhost"], "--bind"),
        (&["--history", "x"], "--history"),
        (&["--history"], "--history"),
        (&["--max-clients", "0"], "--max-clients"),
        (&["--heartbeat", "-1"], "--heartbeat"),
        (&["--max-body", "lots"], "--max-body"),
        (&["--log-level", "loud"], "--log-level"),
        (&["--www", "/no/such/folder/for/ssehub"], "--www"),
    ];
    for (args, named) in cases {
        let out = run(args, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.contains(named),
            "{args:?}: first line {first:?} does not name {named}"
        );
        assert!(stderr.contains("Usage"), "{args:?}: no usage on stderr");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: stdout {:?}",
            text(&out.stdout)
        );
    }
}

#[test]
fn bad_environment_values_exit_2_naming_the_variable() {
    for (name, value) in [
        ("SSEHUB_HISTORY", "x"),
        ("SSEHUB_BIND", "nowhere"),
        ("SSEHUB_MAX_CLIENTS", "0"),
        ("SSEHUB_HEARTBEAT", "soon"),
        ("SSEHUB_WWW", "/no/such/folder/for/ssehub"),
    ] {
        let out = run(&[], &[(name, value)]);
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
    }
}

#[test]
fn port_in_use_exits_1_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run(&["--bind", &addr.to_string()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.to_ascii_lowercase().contains("in use"), "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn runs_on_port_0_logs_its_address_and_serves() {
    let (running, line, _rx) = start(&["--bind", "127.0.0.1:0", "--log-level", "info"], &[]);
    let addr = address_in(&line);
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0, "the log must show the real port: {line}");
    // The page's URL is in the line a person looks for.
    assert!(line.contains(&format!("http://{addr}/")), "{line}");
    let reply = healthz(addr);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "ok");
    // The page is built in, so it is served whatever the working folder.
    let mut client = Client::connect(addr);
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let page = client.read_reply();
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    drop(running);
}

#[test]
fn environment_configures_and_flags_win() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap().to_string();
    // SSEHUB_BIND names a taken port, the flag port 0: the flag wins.
    let (running, line, _rx) = start(
        &["--bind", "127.0.0.1:0", "--history", "2"],
        &[
            ("SSEHUB_BIND", &in_use),
            ("SSEHUB_HISTORY", "50"),
            ("SSEHUB_PUBLISH_TOKEN", "envtoken"),
        ],
    );
    let addr = address_in(&line);
    assert_ne!(addr.to_string(), in_use);
    let post = |auth: &str, n: usize| {
        let mut client = Client::connect(addr);
        client.send(
            format!(
                "POST /publish?room=env HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}Content-Length: 1\r\n\r\n{n}"
            )
            .as_bytes(),
        );
        client.read_reply().status
    };
    // The token came from the environment.
    assert_eq!(post("", 0), 401);
    for n in 0..4 {
        assert_eq!(post("Authorization: Bearer envtoken\r\n", n), 201);
    }
    // --history 2 beat SSEHUB_HISTORY=50.
    let mut client = Client::connect(addr);
    client.send(b"GET /messages?room=env HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let items = client.read_reply().json();
    assert_eq!(items.as_array().unwrap().len(), 2, "{items}");
    drop(running);
}

/// SIGTERM: streams get what was queued and a `retry:` spread over a few
/// seconds, the process exits 0, and with `--journal` the acknowledged
/// message is there after a restart.
#[test]
fn sigterm_stops_gracefully_spreading_reconnects() {
    let dir = TempDir::new("sigterm");
    let journal = dir.path.join("journal.jsonl");
    let journal = journal.to_str().unwrap();
    let args = [
        "--bind",
        "127.0.0.1:0",
        "--journal",
        journal,
        "--log-level",
        "info",
    ];
    let (mut running, line, _rx) = start(&args, &[]);
    let addr = address_in(&line);
    let mut streams: Vec<Client> = (0..3)
        .map(|_| {
            let mut client = Client::connect(addr);
            client.send(b"GET /events?room=bye HTTP/1.1\r\nHost: t\r\n\r\n");
            client.read_until(b"event: hello");
            client
        })
        .collect();
    let mut poster = Client::connect(addr);
    let body = r#"{"room":"bye","user":"ann","text":"kept"}"#;
    poster.send(
        format!(
            "POST /messages HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(poster.read_reply().status, 201);

    let pid = running.0.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let mut retries = Vec::new();
    for stream in &mut streams {
        let rest = text(&stream.read_to_close());
        assert!(rest.contains("\"text\":\"kept\""), "{rest}");
        let retry: u64 = rest
            .lines()
            .filter_map(|l| l.strip_prefix("retry: "))
            .next_back()
            .unwrap_or_else(|| panic!("no retry before the close: {rest}"))
            .parse()
            .unwrap();
        assert!((1000..4000).contains(&retry), "{retry}");
        retries.push(retry);
    }
    retries.dedup();
    assert!(
        retries.len() > 1,
        "every stream got the same delay: {retries:?}"
    );
    let deadline = Instant::now() + EXIT_DEADLINE;
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ssehub did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");

    let (_again, line, _rx) = start(&args, &[]);
    let mut client = Client::connect(address_in(&line));
    client.send(b"GET /messages?room=bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let history = client.read_reply().text();
    assert!(history.contains("\"text\":\"kept\""), "{history}");
}

/// The start-up line is there at any log level (a systemd unit may run at
/// `warn`).
#[test]
fn the_start_line_shows_at_any_log_level() {
    for level in ["warn", "off"] {
        let (running, line, _rx) = start(&["--bind", "127.0.0.1:0", "--log-level", level], &[]);
        let addr = address_in(&line);
        assert_eq!(healthz(addr).status, 200, "{level}");
        drop(running);
    }
}

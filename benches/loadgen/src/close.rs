//! The mass-close scenario's helpers: a keep-alive `GET /healthz` probe that
//! reads the server's count of open streams, and the server's CPU time in
//! nanoseconds from /proc/PID/task/*/schedstat (finer than /proc/PID/stat's
//! 10 ms clock ticks, which a close burst of a few tens of ms needs).

use crate::sse::ResponseReader;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

/// One keep-alive connection asking `GET /healthz` (blocking, with time-outs;
/// it reconnects once when the server closes it).
pub struct HealthProbe {
    server: SocketAddrV4,
    sock: Option<TcpStream>,
    rr: ResponseReader,
    request: Vec<u8>,
    buf: Vec<u8>,
    /// Requests answered.
    pub polls: u64,
}

impl HealthProbe {
    pub fn new(server: SocketAddrV4) -> HealthProbe {
        HealthProbe {
            server,
            sock: None,
            rr: ResponseReader::default(),
            request: format!(
                "GET /healthz HTTP/1.1\r\nHost: {}\r\nUser-Agent: ssehub-loadgen\r\n\r\n",
                server
            )
            .into_bytes(),
            buf: vec![0; 16 * 1024],
            polls: 0,
        }
    }

    fn connect(&mut self) -> io::Result<()> {
        if self.sock.is_none() {
            let s =
                TcpStream::connect_timeout(&SocketAddr::V4(self.server), Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.set_write_timeout(Some(Duration::from_secs(5)))?;
            self.sock = Some(s);
            self.rr = ResponseReader::default();
        }
        Ok(())
    }

    /// The server's `"streams"` figure: its open event streams right now.
    pub fn streams(&mut self) -> io::Result<u64> {
        self.field("streams")
    }

    /// The server's `"last_id"`: the newest event id it has issued.
    pub fn last_id(&mut self) -> io::Result<u64> {
        self.field("last_id")
    }

    fn field(&mut self, key: &str) -> io::Result<u64> {
        match self.ask(key) {
            Ok(n) => Ok(n),
            Err(_) => {
                // A closed keep-alive connection: one fresh try.
                self.sock = None;
                self.ask(key)
            }
        }
    }

    fn ask(&mut self, key: &str) -> io::Result<u64> {
        self.connect()?;
        let sock = self.sock.as_mut().unwrap();
        sock.write_all(&self.request)?;
        loop {
            match self.rr.next() {
                Ok(Some(resp)) => {
                    if resp.close {
                        self.sock = None;
                    }
                    if resp.status != 200 {
                        return Err(io::Error::other(format!(
                            "/healthz answered {}",
                            resp.status
                        )));
                    }
                    self.polls += 1;
                    return json_u64(&resp.body, key).ok_or_else(|| {
                        io::Error::other(format!(
                            "no {:?} in /healthz: {}",
                            key,
                            String::from_utf8_lossy(&resp.body)
                        ))
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    self.sock = None;
                    return Err(io::Error::other(e));
                }
            }
            let sock = self.sock.as_mut().unwrap();
            match sock.read(&mut self.buf) {
                Ok(0) => {
                    self.sock = None;
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => self.rr.push(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.sock = None;
                    return Err(e);
                }
            }
        }
    }
}

/// The number after `"streams":` in the body of `/healthz`.
#[cfg(test)]
pub fn parse_streams(body: &[u8]) -> Option<u64> {
    json_u64(body, "streams")
}

/// The whole number after `"KEY":` in a flat JSON object (`/healthz`, a
/// `201` to a publish, a `hello` event's data).
pub fn json_u64(body: &[u8], key: &str) -> Option<u64> {
    let key = format!("\"{}\":", key);
    let key = key.as_bytes();
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &body[at..];
    let rest = &rest[rest.iter().take_while(|b| **b == b' ').count()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The CPU time of every live thread of `pid`, in ns (the first field of
/// /proc/PID/task/TID/schedstat, the scheduler's exact run time).
pub fn sched_ns(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let mut sum = 0u64;
    let mut any = false;
    for entry in std::fs::read_dir(format!("/proc/{}/task", pid)).ok()? {
        let Ok(entry) = entry else { continue };
        let path = entry.path().join("schedstat");
        if let Some(ns) = std::fs::read_to_string(path)
            .ok()
            .as_deref()
            .and_then(parse_schedstat)
        {
            sum += ns;
            any = true;
        }
    }
    any.then_some(sum)
}

/// The first field of a schedstat line: ns spent on a CPU.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_from_healthz() {
        let body = br#"{"status":"ok","version":"0.1.0","uptime_s":3,"streams":10000,"connections":10001,"last_id":7}"#;
        assert_eq!(parse_streams(body), Some(10000));
        assert_eq!(parse_streams(br#"{"streams": 0}"#), Some(0));
        assert_eq!(parse_streams(br#"{"status":"ok"}"#), None);
        assert_eq!(parse_streams(br#"{"streams":"x"}"#), None);
        assert_eq!(json_u64(body, "last_id"), Some(7));
        assert_eq!(
            json_u64(br#"{"id":1796133025537000}"#, "id"),
            Some(1796133025537000)
        );
        assert_eq!(
            json_u64(
                br#"{"rooms":["a"],"heartbeat_ms":1000,"last_id":17}"#,
                "last_id"
            ),
            Some(17)
        );
    }

    #[test]
    fn schedstat() {
        assert_eq!(parse_schedstat("266455 2447727 3\n"), Some(266455));
        assert_eq!(parse_schedstat(""), None);
        assert!(sched_ns(std::process::id()).unwrap() > 0);
        assert_eq!(sched_ns(0), None);
    }
}

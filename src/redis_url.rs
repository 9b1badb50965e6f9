//! `--redis URL`: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` into a
//! [`RedisUrl`]. Pure; the password never reaches a log, as neither
//! `Debug` nor `Display` shows it.

use std::fmt;
use std::net::Ipv6Addr;

use crate::request::percent_decode;
use crate::resp::encode_command;

/// Where Redis listens and how to log in, from a `redis://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or IP address; an IPv6 address without its brackets.
    pub host: String,
    /// TCP port, 6379 when the URL has none.
    pub port: u16,
    /// Database number for `SELECT`, 0 when the URL has none.
    pub db: u32,
    /// ACL user name (Redis 6+), percent-decoded.
    pub username: Option<String>,
    /// Password for `AUTH`, percent-decoded. Never logged.
    pub password: Option<String>,
}

impl RedisUrl {
    /// Redis's port when the URL names none.
    pub const DEFAULT_PORT: u16 = 6379;

    /// Parses a `redis://` URL; the error says what is wrong with it
    /// without repeating the password.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err("redis URL must look like redis://[:PASSWORD@]HOST[:PORT][/DB]".into());
        };
        match scheme.to_ascii_lowercase().as_str() {
            "redis" => {}
            "rediss" => return Err("rediss:// (TLS) is not supported; use redis://".into()),
            _ => {
                return Err(format!(
                    "redis URL scheme must be redis://, not {scheme}://"
                ))
            }
        }
        if rest.contains(['?', '#']) {
            return Err("redis URL: query parameters and fragments are not supported".into());
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash + 1..]),
            None => (rest, ""),
        };
        // The last '@' ends the credentials: a host has none, a sloppy
        // password might.
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let Some((user, password)) = info.split_once(':') else {
                    return Err("redis URL: a user name needs a password \
                                (redis://USER:PASSWORD@HOST, or redis://:PASSWORD@HOST)"
                        .into());
                };
                let password = percent_decode(password, false)
                    .ok_or("redis URL: the password's percent-encoding is invalid")?;
                if password.is_empty() {
                    return Err("redis URL: the password is empty".into());
                }
                let user = percent_decode(user, false)
                    .ok_or("redis URL: the user name's percent-encoding is invalid")?;
                ((!user.is_empty()).then_some(user), Some(password))
            }
        };
        let (host, port) = host_port(hostport)?;
        let db = match path {
            "" => 0,
            digits if digits.bytes().all(|b| b.is_ascii_digit()) => digits
                .parse()
                .map_err(|_| format!("redis URL: database {digits} is out of range"))?,
            other => {
                return Err(format!(
                    "redis URL: database must be a number (/0, /1, …), not /{other}"
                ))
            }
        };
        Ok(RedisUrl {
            host,
            port,
            db,
            username,
            password,
        })
    }

    /// `HOST:PORT` for `ToSocketAddrs` (`[ADDR]:PORT` for IPv6).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Appends what a new connection sends first (`AUTH` when there is a
    /// password, `SELECT` when the database is not 0) and returns how many
    /// commands that is, i.e. how many replies to check before the rest.
    pub fn handshake(&self, out: &mut Vec<u8>) -> usize {
        let mut commands = 0;
        if let Some(password) = &self.password {
            match &self.username {
                Some(user) => encode_command(&[b"AUTH", user.as_bytes(), password.as_bytes()], out),
                None => encode_command(&[b"AUTH", password.as_bytes()], out),
            }
            commands += 1;
        }
        if self.db != 0 {
            encode_command(&[b"SELECT", self.db.to_string().as_bytes()], out);
            commands += 1;
        }
        commands
    }
}

/// `HOST[:PORT]` or `[IPV6][:PORT]`.
fn host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (addr, after) = bracketed
            .split_once(']')
            .ok_or("redis URL: an IPv6 address needs its closing ]")?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("redis URL: [{addr}] is not an IPv6 address"));
        }
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return Err(format!("redis URL: unexpected {after} after [{addr}]")),
            },
        }
    } else {
        match text.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("redis URL: write an IPv6 address in brackets, as [::1]".into())
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("redis URL: the host is missing".into());
    }
    if !host.contains(':')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(format!("redis URL: {host} is not a host name"));
    }
    let port = match port {
        None => RedisUrl::DEFAULT_PORT,
        Some(digits) => match digits.parse::<u16>() {
            Ok(port) if port > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => port,
            // Not repeated: `redis://HOST:PASSWORD` is a likely slip.
            _ => return Err("redis URL: port must be a number from 1-65535".into()),
        },
    };
    Ok((host.to_string(), port))
}

impl std::str::FromStr for RedisUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<RedisUrl, String> {
        RedisUrl::parse(text)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The URL with the password as `***`, fit for logs.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        if self.password.is_some() {
            write!(f, "{}:***@", self.username.as_deref().unwrap_or(""))?;
        }
        write!(f, "{}/{}", self.address(), self.db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (host, port, db, username, password)
    type Parts = (
        &'static str,
        u16,
        u32,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn parses_urls() {
        let cases: &[(&str, Parts)] = &[
            ("redis://localhost", ("localhost", 6379, 0, None, None)),
            ("redis://localhost/", ("localhost", 6379, 0, None, None)),
            (
                "REDIS://cache.internal:6380/2",
                ("cache.internal", 6380, 2, None, None),
            ),
            ("redis://127.0.0.1:7000", ("127.0.0.1", 7000, 0, None, None)),
            (
                "redis://:s3cret@redis:6379/0",
                ("redis", 6379, 0, None, Some("s3cret")),
            ),
            (
                "redis://app:pw@redis/15",
                ("redis", 6379, 15, Some("app"), Some("pw")),
            ),
            (
                "redis://:p%40ss%3Aw@h",
                ("h", 6379, 0, None, Some("p@ss:w")),
            ),
            ("redis://:p@ss@h", ("h", 6379, 0, None, Some("p@ss"))),
            ("redis://[::1]", ("::1", 6379, 0, None, None)),
            ("redis://[::1]:6390/3", ("::1", 6390, 3, None, None)),
            (
                "redis://:pw@[fe80::1]:1",
                ("fe80::1", 1, 0, None, Some("pw")),
            ),
            ("redis://h:65535", ("h", 65535, 0, None, None)),
        ];
        for (text, (host, port, db, user, password)) in cases {
            let url = RedisUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (
                    url.host.as_str(),
                    url.port,
                    url.db,
                    url.username.as_deref(),
                    url.password.as_deref()
                ),
                (*host, *port, *db, *user, *password),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_bad_urls() {
        let cases: &[(&str, &str)] = &[
            ("localhost:6379", "must look like redis://"),
            ("http://localhost", "scheme must be redis://, not http://"),
            ("rediss://localhost", "TLS"),
            ("unix:///tmp/redis.sock", "scheme must be redis://"),
            ("redis://", "host is missing"),
            ("redis://:6379", "host is missing"),
            ("redis://:pw@", "host is missing"),
            ("redis://h:", "port must be a number from 1-65535"),
            ("redis://h:0", "port must be a number from 1-65535"),
            ("redis://h:65536", "port must be a number from 1-65535"),
            ("redis://h:+80", "port must be a number from 1-65535"),
            ("redis://h:http", "port must be a number from 1-65535"),
            ("redis://h/x", "database must be a number"),
            ("redis://h/-1", "database must be a number"),
            ("redis://h/1/2", "database must be a number"),
            ("redis://h/99999999999", "out of range"),
            ("redis://h?db=1", "query parameters"),
            ("redis://::1", "IPv6 address in brackets"),
            ("redis://[::1", "closing ]"),
            ("redis://[nope]", "not an IPv6 address"),
            ("redis://[::1]x", "unexpected"),
            ("redis://user@h", "needs a password"),
            ("redis://:@h", "password is empty"),
            ("redis://:%zz@h", "percent-encoding"),
            ("redis://h st", "not a host name"),
        ];
        for (text, want) in cases {
            let err = RedisUrl::parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let url: RedisUrl = "redis://app:hunter2@redis:6380/1".parse().unwrap();
        let shown = format!(
            "{url:?} {url} {:?} {:?}",
            RedisUrl::parse("redis://:hunter2@/"),
            RedisUrl::parse("redis://redis:hunter2"),
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(url.to_string(), "redis://app:***@redis:6380/1");
        assert!(format!("{url:?}").contains("password: Some(\"<hidden>\")"));
        let plain = RedisUrl::parse("redis://[::1]").unwrap();
        assert_eq!(plain.to_string(), "redis://[::1]:6379/0");
        assert_eq!(plain.address(), "[::1]:6379");
    }

    #[test]
    fn handshake_commands() {
        type Command<'a> = &'a [&'a [u8]];
        let cases: &[(&str, usize, &[Command<'_>])] = &[
            ("redis://h", 0, &[]),
            ("redis://:pw@h", 1, &[&[b"AUTH", b"pw"]]),
            (
                "redis://u:pw@h/3",
                2,
                &[&[b"AUTH", b"u", b"pw"], &[b"SELECT", b"3"]],
            ),
            ("redis://h/4", 1, &[&[b"SELECT", b"4"]]),
        ];
        for (text, count, commands) in cases {
            let mut out = Vec::new();
            assert_eq!(RedisUrl::parse(text).unwrap().handshake(&mut out), *count);
            let mut want = Vec::new();
            for command in *commands {
                encode_command(command, &mut want);
            }
            assert_eq!(out, want, "{text}");
        }
    }
}

//! [`Config`]: every setting of the server, its defaults, and parsing from
//! command-line flags and `SSEHUB_*` environment variables. Pure code.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::redis_url::RedisUrl;
use crate::token::{self, Claims, Grant};

/// The usage text printed by `--help` and after a bad flag.
pub const USAGE: &str = "\
Usage: ssehub [--bind ADDR:PORT] [--www DIR] [--heartbeat SECS] [--history N]
              [--max-clients N] [--max-body BYTES] [--publish-token TOKEN]
              [--cors-origin ORIGIN] [--journal FILE] [--log-level LEVEL]
              [--stream-buffer BYTES] [--auth-secret SECRET]
              [--visitor-ttl DURATION] [--redis URL] [--redis-prefix NAME]
              [--reuse-port]
       ssehub token --user NAME (--agent | --room R [--room R2...]) [--ttl DURATION]
       ssehub --help | --version

A small Server-Sent Events server with a bundled chat page.

Options:
  --bind ADDR:PORT       address to listen on [default: 127.0.0.1:8080]
  --www DIR              serve the page from DIR instead of the built-in one
  --heartbeat SECS       heartbeat period, 0 turns heartbeats off [default: 1]
  --history N            events retained per room [default: 100]
  --max-clients N        most open event streams, at least 1 [default: 10000]
  --max-body BYTES       largest request body [default: 65536]
  --publish-token TOKEN  require 'Authorization: Bearer TOKEN' on POST
  --cors-origin ORIGIN   allow this Origin (repeatable; '*' allows any)
  --journal FILE         append retained events to FILE and reload them on start
  --log-level LEVEL      off, error, warn, info, debug or trace [default: info]
  --stream-buffer BYTES  per-stream write buffer before a slow reader is cut
                         [default: 262144]
  --auth-secret SECRET   private customer service: every conversation needs a
                         token signed with SECRET (at least 32 characters;
                         better as SSEHUB_AUTH_SECRET, out of the process list)
  --visitor-ttl DURATION lifetime of a visitor's token: seconds, or 30s, 15m,
                         12h, 30d [default: 30d]
  --redis URL            run as one node of a cluster: events, history and
                         presence live in Redis at redis://[:PASSWORD@]HOST[:PORT][/DB]
  --redis-prefix NAME    prefix of the cluster's Redis keys [default: ssehub]
  --reuse-port           share the port with other ssehub processes
                         (SO_REUSEPORT: the kernel spreads the connections)
  -h, --help             print this help
  -V, --version          print the version

Every flag can also be set as SSEHUB_<FLAG> (e.g. SSEHUB_BIND=0.0.0.0:8080,
SSEHUB_CORS_ORIGIN=a,b); a flag on the command line wins.

ssehub token prints an access token (an HS256 JWT) on stdout, for a server
run with the same --auth-secret.
  --user NAME            the token's display name, 1-64 characters
  --agent                an agent's token: every room
  --room R               a token for room R only (repeatable)
  --ttl DURATION         lifetime: seconds, or 30s, 15m, 12h, 30d
                         [default: 12h with --agent, else 30d]
  --auth-secret SECRET   the signing secret, at least 32 characters; better
                         from SSEHUB_AUTH_SECRET, which other users cannot
                         see in the process list";

/// Every setting of a server. [`Config::default`] gives the contract's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Folder to serve the page from; `None` serves the page built into the binary.
    pub www: Option<PathBuf>,
    /// Heartbeat period; zero turns heartbeats off.
    pub heartbeat: Duration,
    /// Events retained per room.
    pub history: usize,
    /// Most open event streams; more get the `busy` answer.
    pub max_clients: usize,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Bearer token required on `POST` requests, if set.
    pub publish_token: Option<String>,
    /// Allowed CORS origins; `*` allows any; empty sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// Journal file for retained events, if set.
    pub journal: Option<PathBuf>,
    /// Log level for the binary's logger.
    pub log_level: log::LevelFilter,
    /// Bytes a stream may have waiting before it is cut as a slow consumer.
    pub stream_buffer: usize,
    /// Largest request header block in bytes.
    pub max_head: usize,
    /// With a secret, the server is a private customer-service desk:
    /// requests need a token signed with it (see the crate docs). `None`:
    /// every room is open.
    pub auth_secret: Option<Secret>,
    /// Lifetime of the token `POST /session` gives a visitor.
    pub visitor_ttl: Duration,
    /// With a URL, the server is one node of a cluster: events, their ids,
    /// history and presence live in Redis, shared by every node.
    pub redis: Option<RedisUrl>,
    /// Prefix of the cluster's Redis keys (several clusters may share one
    /// Redis).
    pub redis_prefix: String,
    /// Bind with `SO_REUSEPORT`, so that several processes share the port.
    pub reuse_port: bool,
    /// Time allowed from a connection's accept, or a request's first byte,
    /// to the end of the request's header block.
    pub header_timeout: Duration,
    /// Time a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// The longest a stream's new bytes may wait to share one `write` with
    /// later events while thousands of streams wait for a flush (below 2,000
    /// waiting streams nothing waits; the wait grows with their number up to
    /// this at 10,000). Longer is cheaper per delivery and later: in
    /// `make bench` S3 (10,000 streams, 100 events/s), 0 ms gives about
    /// 1.0 µs of CPU per delivery at p99 ≈ 90 ms, 100 ms 0.65–0.73 µs at
    /// ≈ 125 ms, 160 ms (the default) 0.46–0.55 µs at ≈ 190 ms.
    pub max_flush_delay: Duration,
    /// How long a graceful shutdown ([`crate::Server::shutdown`],
    /// [`crate::Handle::shutdown`]) waits for streams to take the bytes
    /// already queued to them before every connection is closed anyway.
    /// Default 2 s.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            www: None,
            heartbeat: Duration::from_secs(1),
            history: 100,
            max_clients: 10_000,
            max_body: 65_536,
            publish_token: None,
            cors_origins: Vec::new(),
            journal: None,
            log_level: log::LevelFilter::Info,
            stream_buffer: 256 * 1024,
            max_head: 8 * 1024,
            auth_secret: None,
            visitor_ttl: Duration::from_secs(30 * 86_400),
            redis: None,
            redis_prefix: "ssehub".into(),
            reuse_port: false,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_flush_delay: Duration::from_millis(160),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// A signing secret: compared and used, never shown (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's bytes, for signing and verifying.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Secret {
        Secret(secret.to_string())
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Secret {
        Secret(secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl Secret {
    /// `value` as a secret, if it is long enough; the error says only its
    /// length, never the secret.
    fn checked(value: String) -> Result<Secret, String> {
        let chars = value.chars().count();
        if chars < token::MIN_SECRET_CHARS {
            return Err(format!(
                "must be at least {} characters, got {chars}",
                token::MIN_SECRET_CHARS
            ));
        }
        Ok(Secret(value))
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run a server with this configuration.
    Run(Box<Config>),
    /// Print [`USAGE`] and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
    /// `ssehub token`: print one access token and exit 0.
    Token(TokenRequest),
}

/// What `ssehub token` was asked for, already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The token's `sub`, 1–64 characters.
    pub user: String,
    /// Every room as an agent, or the rooms given (each valid, no repeats).
    pub grant: Grant,
    /// How long the token is valid from the moment it is minted.
    pub ttl: Duration,
    /// The signing secret, at least [`token::MIN_SECRET_CHARS`] characters.
    pub secret: Secret,
}

impl TokenRequest {
    /// The claims of a token minted at `now_secs` (seconds since the epoch).
    pub fn claims(&self, now_secs: u64) -> Claims {
        Claims {
            sub: self.user.clone(),
            exp: now_secs.saturating_add(self.ttl.as_secs()),
            nbf: None,
            iat: Some(now_secs),
            grant: self.grant.clone(),
            visitor: false,
        }
    }

    /// The signed token, minted at `now_secs`.
    pub fn mint(&self, now_secs: u64) -> String {
        token::sign(&self.claims(now_secs), self.secret.as_bytes())
    }
}

// By hand, so that the secret never reaches a log or a test's output.

/// A bad flag or value; the binary prints it with the usage and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag or environment variable at fault, as the user wrote it.
    pub source: String,
    /// What was wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The flags that take a value, with their environment variable.
const FLAGS: &[&str] = &[
    "--bind",
    "--www",
    "--heartbeat",
    "--history",
    "--max-clients",
    "--max-body",
    "--publish-token",
    "--cors-origin",
    "--journal",
    "--log-level",
    "--stream-buffer",
    "--auth-secret",
    "--visitor-ttl",
    "--redis",
    "--redis-prefix",
];

/// Parses the arguments (without the program name) and the environment,
/// looked up through `env` so tests need not touch the process's own.
/// A first argument `token` parses the `ssehub token` subcommand instead,
/// which reads only `SSEHUB_AUTH_SECRET` from the environment.
///
/// # Errors
/// A [`ConfigError`] naming the flag or variable that is unknown, lacks a
/// value or has a bad one.
///
/// # Examples
/// ```
/// use ssehub::config::{parse, Command};
/// let no_env = |_: &str| None;
/// let Ok(Command::Run(config)) = parse(["--history", "5"].map(String::from), no_env) else {
///     panic!()
/// };
/// assert_eq!(config.history, 5);
/// assert!(parse(["--history", "x"].map(String::from), no_env).is_err());
/// ```
pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|first| first == "token") {
        args.next();
        return parse_token(args, env);
    }
    let mut config = Config::default();
    // Environment first, so flags given on the command line override it.
    for flag in FLAGS {
        let var = format!("SSEHUB_{}", flag[2..].to_uppercase().replace('-', "_"));
        if let Some(value) = env(&var) {
            if *flag == "--cors-origin" {
                config.cors_origins.clear();
                if value.trim().is_empty() {
                    return Err(ConfigError {
                        source: var,
                        message: "needs one or more origins, comma-separated".into(),
                    });
                }
                for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                    apply(&mut config, flag, origin, &var)?;
                }
            } else {
                apply(&mut config, flag, &value, &var)?;
            }
        }
    }
    if let Some(value) = env("SSEHUB_REUSE_PORT") {
        config.reuse_port = match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" | "" => false,
            _ => {
                return Err(ConfigError {
                    source: "SSEHUB_REUSE_PORT".into(),
                    message: format!("expected 1/true/yes/on or 0/false/no/off, got '{value}'"),
                })
            }
        };
    }
    let mut cors_from_flags = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--reuse-port" => {
                config.reuse_port = true;
                continue;
            }
            _ => {}
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        if !FLAGS.contains(&flag.as_str()) {
            return Err(ConfigError {
                source: arg,
                message: "unknown flag".into(),
            });
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => {
                return Err(ConfigError {
                    source: flag,
                    message: "needs a value".into(),
                })
            }
        };
        if flag == "--cors-origin" && !cors_from_flags {
            // Flags replace the environment's list rather than add to it.
            config.cors_origins.clear();
            cors_from_flags = true;
        }
        apply(&mut config, &flag, &value, &flag)?;
    }
    if config.redis.is_some() && config.journal.is_some() {
        return Err(ConfigError {
            source: "--journal".into(),
            message: "cannot be combined with --redis (Redis is the durable log)".into(),
        });
    }
    Ok(Command::Run(Box::new(config)))
}

/// The environment variable `ssehub token` takes the secret from.
const AUTH_SECRET_VAR: &str = "SSEHUB_AUTH_SECRET";

/// Parses the arguments after `token`.
fn parse_token<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: Iterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let mut user = None;
    let mut agent = false;
    let mut rooms: Vec<String> = Vec::new();
    let mut ttl = None;
    let mut secret = None;
    let mut args = args;
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let bad = |message: String| ConfigError {
            source: flag.clone(),
            message,
        };
        if flag == "--agent" {
            if inline.is_some() {
                return Err(bad("takes no value".into()));
            }
            agent = true;
            continue;
        }
        if !["--user", "--room", "--ttl", "--auth-secret"].contains(&flag.as_str()) {
            // The flag without any `=value`, which may be a mistyped secret.
            return Err(bad("unknown flag for 'ssehub token'".into()));
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(bad("needs a value".into()));
        };
        match flag.as_str() {
            "--user" => {
                if !token::valid_sub(&value) {
                    return Err(bad(format!(
                        "must be 1-{} characters",
                        token::MAX_SUB_CHARS
                    )));
                }
                user = Some(value);
            }
            "--room" => {
                if !token::valid_room_name(&value) {
                    return Err(bad(format!(
                        "'{value}' is not a room name (1-64 of A-Z a-z 0-9 _ - .)"
                    )));
                }
                if !rooms.contains(&value) {
                    rooms.push(value);
                }
            }
            "--ttl" => ttl = Some(token::parse_ttl(&value).map_err(bad)?),
            _ => secret = Some((value, flag.clone())),
        }
    }
    let user = user.ok_or_else(|| ConfigError {
        source: "--user".into(),
        message: "needed: the token's display name".into(),
    })?;
    let grant = match (agent, rooms.is_empty()) {
        (true, false) => {
            return Err(ConfigError {
                source: "--agent".into(),
                message: "cannot be combined with --room".into(),
            })
        }
        (false, true) => {
            return Err(ConfigError {
                source: "token".into(),
                message: "needs --agent or at least one --room R".into(),
            })
        }
        (true, true) => Grant::Agent,
        (false, false) => Grant::Rooms(rooms),
    };
    let (secret, source) = secret
        .or_else(|| env(AUTH_SECRET_VAR).map(|s| (s, AUTH_SECRET_VAR.to_string())))
        .ok_or_else(|| ConfigError {
            source: "--auth-secret".into(),
            message: format!("needed, or {AUTH_SECRET_VAR} in the environment"),
        })?;
    let secret = Secret::checked(secret).map_err(|message| ConfigError { source, message })?;
    let ttl = ttl.unwrap_or(match grant {
        Grant::Agent => Duration::from_secs(12 * 3600),
        Grant::Rooms(_) => Duration::from_secs(30 * 86_400),
    });
    Ok(Command::Token(TokenRequest {
        user,
        grant,
        ttl,
        secret,
    }))
}

fn apply(config: &mut Config, flag: &str, value: &str, source: &str) -> Result<(), ConfigError> {
    let bad = |message: String| ConfigError {
        source: source.to_string(),
        message,
    };
    match flag {
        "--bind" => {
            config.bind = value.parse().map_err(|_| {
                bad(format!(
                    "expected ADDR:PORT such as 127.0.0.1:8080, got '{value}'"
                ))
            })?
        }
        "--www" => {
            if value.is_empty() {
                return Err(bad("needs a folder".into()));
            }
            let dir = PathBuf::from(value);
            if !dir.is_dir() {
                return Err(bad(format!("'{value}' is not a folder")));
            }
            config.www = Some(dir);
        }
        "--heartbeat" => {
            let secs: f64 = value
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
                .ok_or_else(|| bad(format!("expected seconds from 0 to 86400, got '{value}'")))?;
            config.heartbeat = Duration::from_secs_f64(secs);
        }
        "--history" => config.history = number(value, 0, 1_000_000).map_err(bad)?,
        "--max-clients" => config.max_clients = number(value, 1, 1_000_000).map_err(bad)?,
        "--max-body" => config.max_body = number(value, 1, 1 << 30).map_err(bad)?,
        "--stream-buffer" => config.stream_buffer = number(value, 1024, 1 << 30).map_err(bad)?,
        "--publish-token" => {
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad("token must be non-empty, without spaces".into()));
            }
            config.publish_token = Some(value.to_string());
        }
        "--cors-origin" => {
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(format!("not an origin: '{value}'")));
            }
            config.cors_origins.push(value.to_string());
        }
        "--auth-secret" => config.auth_secret = Some(Secret::checked(value.into()).map_err(bad)?),
        "--visitor-ttl" => config.visitor_ttl = token::parse_ttl(value).map_err(bad)?,
        "--redis" => config.redis = Some(RedisUrl::parse(value).map_err(bad)?),
        "--redis-prefix" => {
            let fits = (1..=64).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
            if !fits {
                return Err(bad("must be 1-64 of A-Z a-z 0-9 _ - . :".into()));
            }
            config.redis_prefix = value.to_string();
        }
        "--journal" => {
            if value.is_empty() {
                return Err(bad("needs a file".into()));
            }
            config.journal = Some(PathBuf::from(value));
        }
        "--log-level" => {
            config.log_level = match value.to_ascii_lowercase().as_str() {
                "off" => log::LevelFilter::Off,
                "error" => log::LevelFilter::Error,
                "warn" => log::LevelFilter::Warn,
                "info" => log::LevelFilter::Info,
                "debug" => log::LevelFilter::Debug,
                "trace" => log::LevelFilter::Trace,
                _ => {
                    return Err(bad(format!(
                        "expected off, error, warn, info, debug or trace, got '{value}'"
                    )))
                }
            }
        }
        _ => unreachable!("flag list and apply() disagree on {flag}"),
    }
    Ok(())
}

fn number(value: &str, min: usize, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from {min} to {max}, got '{value}'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match parse(args.iter().map(|a| a.to_string()), lookup)? {
            Command::Run(config) => Ok(*config),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.heartbeat, Duration::from_secs(1));
        assert_eq!(
            (c.history, c.max_clients, c.max_body),
            (100, 10_000, 65_536)
        );
        assert_eq!(c.stream_buffer, 262_144);
        assert!(c.cors_origins.is_empty() && c.publish_token.is_none());
    }

    #[test]
    fn flags_and_equals_form() {
        let c = run(
            &[
                "--bind=0.0.0.0:9",
                "--heartbeat",
                "0",
                "--cors-origin",
                "a",
                "--cors-origin=*",
                "--log-level",
                "DEBUG",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.bind.to_string(), "0.0.0.0:9");
        assert_eq!(c.heartbeat, Duration::ZERO);
        assert_eq!(c.cors_origins, ["a", "*"]);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
    }

    /// Every flag the parser takes is named in `--help`'s usage lines and
    /// explained below them.
    #[test]
    fn help_names_every_flag() {
        let (usage, options) = USAGE.split_once("Options:").expect("an Options section");
        for flag in FLAGS.iter().chain(&["--reuse-port"]) {
            assert!(
                usage.contains(&format!("[{flag}")),
                "usage line lacks {flag}"
            );
            assert!(
                options.contains(&format!("  {flag} ")),
                "no explanation of {flag}"
            );
        }
    }

    #[test]
    fn environment_then_flags() {
        let env = [
            ("SSEHUB_BIND", "127.0.0.1:1"),
            ("SSEHUB_CORS_ORIGIN", "x, y"),
            ("SSEHUB_PUBLISH_TOKEN", "t"),
        ];
        let c = run(&[], &env).unwrap();
        assert_eq!(c.bind.port(), 1);
        assert_eq!(c.cors_origins, ["x", "y"]);
        let empty = run(&[], &[("SSEHUB_CORS_ORIGIN", " ")]).unwrap_err();
        assert_eq!(
            empty.source, "SSEHUB_CORS_ORIGIN",
            "a variable set to nothing is an error"
        );
        assert_eq!(c.publish_token.as_deref(), Some("t"));
        let c = run(&["--bind", "127.0.0.1:2", "--cors-origin", "z"], &env).unwrap();
        assert_eq!(c.bind.port(), 2);
        assert_eq!(c.cors_origins, ["z"]);
    }

    #[test]
    fn bad_values_name_their_source() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (&["--nope"], &[], "--nope"),
            (&["--history"], &[], "--history"),
            (&["--history", "-1"], &[], "--history"),
            (&["--max-clients", "0"], &[], "--max-clients"),
            (&["--bind", "localhost"], &[], "--bind"),
            (&["--heartbeat", "nan"], &[], "--heartbeat"),
            (&["--log-level", "loud"], &[], "--log-level"),
            (&[], &[("SSEHUB_MAX_BODY", "big")], "SSEHUB_MAX_BODY"),
        ];
        for (args, env, source) in cases {
            let err = run(args, env).unwrap_err();
            assert_eq!(err.source, *source, "{args:?}");
        }
    }

    #[test]
    fn help_and_version() {
        let none = |_: &str| None;
        assert_eq!(parse(["-h".to_string()], none), Ok(Command::Help));
        assert_eq!(parse(["--version".to_string()], none), Ok(Command::Version));
        let token_help = ["token", "--user", "a", "--help"].map(String::from);
        assert_eq!(parse(token_help, none), Ok(Command::Help));
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn token(args: &[&str], env: &[(&str, &str)]) -> Result<TokenRequest, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let args = std::iter::once("token").chain(args.iter().copied());
        match parse(args.map(String::from), lookup)? {
            Command::Token(request) => Ok(request),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn token_for_an_agent_and_for_rooms_with_default_ttls() {
        let agent = token(
            &["--user", "Grace", "--agent", "--auth-secret", SECRET],
            &[],
        )
        .unwrap();
        assert_eq!(agent.user, "Grace");
        assert_eq!(agent.grant, Grant::Agent);
        assert_eq!(agent.ttl, Duration::from_secs(12 * 3600));
        assert_eq!(agent.secret.as_bytes(), SECRET.as_bytes());
        assert!(
            !format!("{agent:?}").contains(SECRET),
            "Debug shows the secret"
        );
        let rooms = token(
            &["--room=a", "--user=Ada", "--room", "b.c", "--room", "a"],
            &[("SSEHUB_AUTH_SECRET", SECRET)],
        )
        .unwrap();
        assert_eq!(rooms.grant, Grant::Rooms(vec!["a".into(), "b.c".into()]));
        assert_eq!(rooms.ttl, Duration::from_secs(30 * 86_400));
        let short = token(
            &["--user", "x", "--agent", "--ttl", "15m"],
            &[("SSEHUB_AUTH_SECRET", SECRET)],
        )
        .unwrap();
        assert_eq!(short.ttl, Duration::from_secs(900));
    }

    #[test]
    fn the_flag_wins_over_the_environment_for_the_secret() {
        let other = "another secret that is long enough!!";
        let request = token(
            &["--user", "x", "--agent", "--auth-secret", other],
            &[("SSEHUB_AUTH_SECRET", "short")],
        )
        .unwrap();
        assert_eq!(request.secret.as_bytes(), other.as_bytes());
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let request = token(
            &["--user", "Ada", "--room", "r", "--ttl", "60"],
            &[("SSEHUB_AUTH_SECRET", SECRET)],
        )
        .unwrap();
        let now = 1_800_000_000;
        let minted = request.mint(now);
        let claims = token::verify(&minted, SECRET.as_bytes(), now).unwrap();
        assert_eq!(claims, request.claims(now));
        assert_eq!((claims.exp, claims.iat), (now + 60, Some(now)));
        assert_eq!(claims.grant, Grant::Rooms(vec!["r".into()]));
        assert_eq!(
            token::verify(&minted, SECRET.as_bytes(), now + 60),
            Err(token::TokenError::Expired)
        );
    }

    #[test]
    fn bad_token_commands_name_their_flag() {
        let env_secret = [("SSEHUB_AUTH_SECRET", SECRET)];
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (&["--agent"], &env_secret, "--user"),
            (&["--user"], &env_secret, "--user"),
            (&["--user", "", "--agent"], &env_secret, "--user"),
            (
                &["--user", &"x".repeat(65), "--agent"],
                &env_secret,
                "--user",
            ),
            (&["--user", "a"], &env_secret, "token"),
            (
                &["--user", "a", "--agent", "--room", "r"],
                &env_secret,
                "--agent",
            ),
            (&["--user", "a", "--agent=yes"], &env_secret, "--agent"),
            (&["--user", "a", "--room", "a b"], &env_secret, "--room"),
            (&["--user", "a", "--room"], &env_secret, "--room"),
            (
                &["--user", "a", "--agent", "--ttl", "1w"],
                &env_secret,
                "--ttl",
            ),
            (
                &["--user", "a", "--agent", "--ttl", "0"],
                &env_secret,
                "--ttl",
            ),
            (
                &["--user", "a", "--agent", "--bind", "x"],
                &env_secret,
                "--bind",
            ),
            (&["--user", "a", "--agent"], &[], "--auth-secret"),
            (
                &["--user", "a", "--agent", "--auth-secret", "short"],
                &[],
                "--auth-secret",
            ),
            (
                &["--user", "a", "--agent"],
                &[("SSEHUB_AUTH_SECRET", "short")],
                "SSEHUB_AUTH_SECRET",
            ),
        ];
        for (args, env, source) in cases {
            let err = token(args, env).unwrap_err();
            assert_eq!(err.source, *source, "{args:?}: {err}");
        }
        let err = token(&["--user", "a", "--agent", "--auth-secret", "tiny"], &[]).unwrap_err();
        assert!(err.message.contains("at least 32"), "{err}");
        assert!(
            !err.to_string().contains("tiny"),
            "the secret leaked: {err}"
        );
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let request = token(&["--user", "a", "--agent", "--auth-secret", SECRET], &[]).unwrap();
        assert!(!format!("{request:?}").contains(SECRET));
    }

    #[test]
    fn the_server_takes_a_long_secret_and_refuses_a_short_one_without_printing_it() {
        for (args, env) in [
            (&["--auth-secret", SECRET][..], &[][..]),
            (&[&format!("--auth-secret={SECRET}")[..]][..], &[][..]),
            (&[][..], &[("SSEHUB_AUTH_SECRET", SECRET)][..]),
        ] {
            let config = run(args, env).unwrap();
            assert_eq!(config.auth_secret, Some(Secret::from(SECRET)));
            assert!(
                !format!("{config:?}").contains(SECRET),
                "Debug shows the secret"
            );
        }
        let short = "a secret of 31 characters......";
        for (args, env) in [
            (&["--auth-secret", short][..], &[][..]),
            (&[][..], &[("SSEHUB_AUTH_SECRET", short)][..]),
        ] {
            let err = run(args, env).unwrap_err();
            assert!(err.source.contains("AUTH_SECRET") || err.source == "--auth-secret");
            assert!(err.message.contains("at least 32"), "{err}");
            assert!(!err.to_string().contains(short), "the secret leaked: {err}");
        }
        let cluster = run(
            &[
                "--redis",
                "redis://:pw@127.0.0.1:7000/2",
                "--redis-prefix",
                "shop",
                "--reuse-port",
            ],
            &[],
        )
        .unwrap();
        let url = cluster.redis.expect("a redis URL");
        assert_eq!((url.port, url.db), (7000, 2));
        assert_eq!(cluster.redis_prefix, "shop");
        assert!(cluster.reuse_port);
        assert!(run(&[], &[("SSEHUB_REUSE_PORT", "1")]).unwrap().reuse_port);
        assert!(run(&[], &[("SSEHUB_REUSE_PORT", "maybe")]).is_err());
        assert!(run(&["--redis", "http://x"], &[]).is_err());
        assert!(run(&["--redis-prefix", "a b"], &[]).is_err());
        let both = run(&["--redis", "redis://h", "--journal", "j"], &[]).unwrap_err();
        assert_eq!(both.source, "--journal");
        let ttl = run(&["--visitor-ttl", "2h"], &[]).unwrap();
        assert_eq!(ttl.visitor_ttl, Duration::from_secs(7200));
        assert!(run(&["--visitor-ttl", "soon"], &[]).is_err());
    }
}

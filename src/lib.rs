//! # ssehub
//!
//! A small, fast, dependable Server-Sent Events server: one thread, one
//! hand-written `mio` event loop, HTTP parsed with `httparse`, no async
//! runtime. It serves a live chat page and pushes events published by
//! browsers, scripts and devices to every open `EventSource`.
//!
//! Data moves one way:
//!
//! ```text
//! socket → parse (http, request) → route (router, access, app) → log → hub → write buffers (conns) → socket
//! ```
//!
//! # Layout
//! One module owns one thing; only `server` touches mio's registry, and
//! everything below it is plain data in, plain data out, tested without
//! sockets where it can be.
//! - [`config`]: [`Config`], its defaults, flag and environment parsing (pure).
//! - [`server`]: THE event loop — `Poll`, listener, waker, the order of a
//!   turn, accepting, interest changes. The only user of mio's registry,
//!   and the one place where the hub's recipients meet the connections.
//! - `conns` (internal): connection slots, free list, the reply and stream
//!   flush queues, the resume list and the closing list; every close goes
//!   through `mark_closing(token, Close)`.
//! - `conn` (internal): one connection — socket, state, buffers, and the
//!   closed set of reasons it may close for.
//! - `outbuf` (internal): an output buffer that appends without I/O and
//!   writes what the socket takes.
//! - `http` (internal): request framing as a pure state machine — bytes in,
//!   a request, a head awaiting its body, "need more" or a failure out.
//! - `request` (internal): `httparse` wrapper — bytes to a request head,
//!   chunked bodies, limits; incomplete input is a value, not an error.
//! - `router` (internal): what a request asks for, checked for shape.
//! - `session` (internal): the private desk's `/session`, `/login` and
//!   `/logout`, with their rate limits.
//! - `access` (internal): whether it may — who the request is (its token),
//!   the rooms and role it grants, the publish token, CORS and cross-site
//!   requests, the host's authoriser.
//! - `app` (internal): a request and who asks → an answer, a stream, or a
//!   publish held for the log; owns hub, log, page, metrics, request log.
//! - `response` (internal): status line, headers, body and the JSON bodies
//!   as bytes; the stream preamble.
//! - `log` (internal): the event-log seam — append, flush once per turn,
//!   committed or refused verdicts, load, compact; in memory, the
//!   `--journal` file, or Redis for a cluster (`--redis`, two helper
//!   threads). The log assigns ids and encodes each event once.
//! - `hub` (internal): rooms, subscribers (O(1) leave), history, presence;
//!   takes ids from the log; never sees a socket.
//! - `timers` (internal): the deadlines — next one, what is due now.
//! - `static_files` (internal): the page compiled into the binary, or a
//!   folder, with safe path mapping.
//! - `metrics` (internal): counters and their Prometheus text form.
//! - [`sse`]: [`Event`] and the `text/event-stream` encoder the server uses.
//! - [`handle`]: [`Handle`], which publishes and shuts down from other
//!   threads through a queue and one `mio::Waker`.
//! - [`hooks`]: what a host plugs in — stream open/close notices and an
//!   authoriser for subscriptions and publishes.
//! - `token` (internal): access-control tokens — HS256 JWTs signed and
//!   verified strictly, random visitor rooms, token lifetimes (pure).
//! - `resp` (internal): the Redis protocol (RESP2) — commands to bytes,
//!   bytes to replies, the stream commands; no I/O.
//! - `redis_url` (internal): `redis://` URLs, the password kept out of logs.
//!
//! # A first embedded server
//! Build a [`Server`] from a [`Config`] (every field has the contract's
//! default), take a [`Handle`] for other threads, and run the loop:
//!
//! ```no_run
//! use ssehub::{Config, Server};
//!
//! let mut server = Server::bind(Config {
//!     bind: "127.0.0.1:8080".parse().unwrap(),
//!     ..Config::default()
//! })?;
//! let handle = server.handle();
//! std::thread::spawn(move || {
//!     // Publish until the server stops; a browser watching
//!     // /events?room=sensors sees each reading at once.
//!     while handle.publish("sensors", Some("reading"), "temp=21").is_ok() {
//!         std::thread::sleep(std::time::Duration::from_millis(100));
//!     }
//! });
//! server.run()?; // returns after handle.shutdown()
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A host with a loop of its own calls [`Server::poll_once`] between its
//! own work instead of [`Server::run`]; [`Server::publish`] publishes from
//! that same thread without a handle. [`Server::on_stream`] and
//! [`Server::authorize`] plug in the host's bookkeeping and auth;
//! [`Server::stats`] reads the counters. `examples/sensor.rs` and
//! `examples/step.rs` are complete programs.
//!
//! # Rules for embedders
//! - **Threads.** A [`Server`] is `Send` but not `Sync`: one thread drives
//!   it (`run` or `poll_once`); build it where you like and move it there.
//!   Every other thread uses a [`Handle`] (`Send + Sync + Clone`):
//!   `publish`, `stats`, `shutdown`. A handle never blocks on the loop.
//! - **Hooks** ([`Server::on_stream`], [`Server::authorize`]) run on the
//!   loop's thread inside a turn, one at a time, and every other client
//!   waits meanwhile: keep them to microseconds (a map lookup, a counter, a
//!   channel send that cannot block). Never do I/O or wait on a lock held
//!   elsewhere. They must not panic (the panic leaves `run`/`poll_once`).
//!   They must be `Send`. A refusal may carry headers
//!   ([`hooks::Decision::DenyWith`]); an allowance may carry a tag that the
//!   stream's open and close notices repeat ([`hooks::Decision::AllowAs`]).
//! - **Step mode.** Call [`Server::poll_once`] with a timeout; it returns
//!   [`Status::Stopped`] once a shutdown has completed. To wait on your own
//!   sockets too, nest the server's poll in yours: register its file
//!   descriptor (`AsRawFd`) for reading and poll at most
//!   [`Server::timeout`]; `examples/step.rs` shows it.
//! - **Shutdown.** [`Server::shutdown`] or [`Handle::shutdown`] stops
//!   accepting, gives every stream what was queued plus a `retry:` spread
//!   over 1–4 s, and closes everything within [`Config::shutdown_grace`]
//!   (2 s). Publishing afterwards is an error. Dropping a `Server` without a
//!   shutdown closes every connection at once, without flushing.
//! - **Logging** goes through the `log` crate; install any logger you like
//!   (the library installs none).
#![forbid(unsafe_code)]
#![deny(missing_docs, rust_2018_idioms)]

pub mod config;
pub mod handle;
pub mod hooks;
pub mod server;
pub mod sse;

// The request parser, router, token codec and Redis codec are public only
// so the fuzz targets, the binary and the integration tests can reach
// them; they are not part of the supported API.
#[doc(hidden)]
pub mod redis_url;
#[doc(hidden)]
pub mod request;
#[doc(hidden)]
pub mod resp;
#[doc(hidden)]
pub mod router;
#[doc(hidden)]
pub mod token;

mod access;
mod app;
mod conn;
mod conns;
mod http;
mod hub;
mod log;
mod metrics;
mod outbuf;
mod response;
mod session;
mod static_files;
mod timers;

pub use config::Config;
pub use handle::{Handle, HandleError};
pub use server::{Server, Stats, Status};
pub use sse::Event;

/// The README's code blocks, compiled as doc tests, so its embedding
/// snippet stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

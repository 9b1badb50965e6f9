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
//! socket → parse (request) → route (router) → hub → write buffers (outbuf) → socket
//! ```
//!
//! # Layout
//! One module owns one thing; everything below `server` is plain data in,
//! plain data out, tested with byte strings.
//! - [`config`]: [`Config`], its defaults, flag and environment parsing (pure).
//! - [`server`]: THE event loop — `Poll`, listener, connections, hub, timers.
//!   The only module that uses mio's registry, and the one place where the
//!   hub's recipients meet the connections.
//! - `conn` (internal): one connection — socket, state, read buffer, output buffer.
//! - `outbuf` (internal): an output buffer that appends without I/O and
//!   writes what the socket takes.
//! - `request` (internal): `httparse` wrapper — bytes to a request head,
//!   chunked bodies, limits; incomplete input is a value, not an error.
//! - `router` (internal): a request to an action, with the contract's validation.
//! - `response` (internal): status line, headers and body as bytes; the
//!   stream preamble.
//! - `hub` (internal): rooms, subscribers, history, the id sequence,
//!   presence; never sees a socket.
//! - `journal` (internal): `--journal` — retained events appended as JSON
//!   lines, one `fsync` per loop turn, read back and compacted.
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
// One `unsafe` block in the crate: `listen(2)` in server.rs, to raise the
// accept queue above std's 128. Everything else is safe code.
#![deny(unsafe_code)]
#![deny(missing_docs, rust_2018_idioms)]

pub mod config;
pub mod handle;
pub mod hooks;
pub mod server;
pub mod sse;

// The request parser, router and token codec are public only so the fuzz
// targets, the binary and the integration tests can reach them; they are
// not part of the supported API.
#[doc(hidden)]
pub mod request;
#[doc(hidden)]
pub mod router;
#[doc(hidden)]
pub mod token;

mod conn;
mod hub;
mod journal;
mod metrics;
mod outbuf;
mod response;
mod static_files;

pub use config::Config;
pub use handle::{Handle, HandleError};
pub use server::{Server, Stats};
pub use sse::Event;

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
//! - [`config`]: [`Config`], its defaults, flag and environment parsing (pure).
//! - [`server`]: THE event loop — `Poll`, listener, connections, hub, timers.
//!   The only module that uses mio's registry, and the one place where the
//!   hub's recipients meet the connections.
//! - [`conn`]: one connection — socket, state, read buffer, output buffer.
//! - [`outbuf`]: an output buffer that appends without I/O and writes what
//!   the socket takes.
//! - [`request`]: `httparse` wrapper — bytes to a request head, chunked
//!   bodies, limits; incomplete input is a value, not an error.
//! - [`response`]: status line, headers and body as bytes; the stream preamble.
//! - [`router`]: a request to an [`router::Action`], with the contract's validation.
//! - [`sse`]: events to `text/event-stream` bytes.
//! - [`hub`]: rooms, subscribers, history, the id sequence, presence; never
//!   sees a socket.
//! - [`static_files`]: the page compiled into the binary, or a folder, with
//!   safe path mapping.
//! - [`handle`]: a cloneable handle that publishes and shuts down from
//!   other threads through a queue and one `mio::Waker`.
//! - [`hooks`]: what a host plugs in — stream open/close notices and an
//!   authoriser for subscriptions and publishes.
//! - [`journal`]: `--journal`: retained events appended as JSON lines,
//!   one `fsync` per loop turn, read back and compacted.
//! - [`metrics`]: counters and their Prometheus text form.
//!
//! # A first embedded server
//! ```no_run
//! let mut server = ssehub::Server::bind(ssehub::Config::default())?;
//! let handle = server.handle();
//! std::thread::spawn(move || loop {
//!     if handle.publish("sensors", Some("reading"), "temp=21").is_err() {
//!         break; // the server has stopped
//!     }
//!     std::thread::sleep(std::time::Duration::from_millis(100));
//! });
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, rust_2018_idioms)]

pub mod config;
pub mod conn;
pub mod handle;
pub mod hooks;
pub mod hub;
pub mod journal;
pub mod metrics;
pub mod outbuf;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod sse;
pub mod static_files;

pub use config::Config;
pub use handle::{Handle, HandleError};
pub use server::{Server, Stats};
pub use sse::Event;

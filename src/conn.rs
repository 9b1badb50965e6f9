//! One client connection: its socket, what state it is in, and its
//! buffers. The server drives it; this module only holds and reads.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::http::Framer;
use crate::outbuf::OutBuf;

/// A connection, kept by the server under its token.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub socket: TcpStream,
    /// The client's address, for logs and hooks.
    pub peer: SocketAddr,
    /// What the connection is doing; per-state data lives in the variant.
    pub state: State,
    /// Bytes waiting to be written.
    pub out: OutBuf,
    /// `WRITABLE` interest is registered (only while a write fell short).
    pub wants_write: bool,
    /// Waiting in one of the flush queues.
    pub queued: bool,
    /// Marked for closing at the end of the loop turn, and why.
    pub closing: Option<Close>,
    /// When the server gives up on the connection (header, idle or linger
    /// time-out); `None` for streams, which are kept alive by heartbeats.
    pub deadline: Option<Instant>,
}

/// Why a connection is closed: every close goes through one
/// `mark_closing(token, Close)` and is counted per reason in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The last answer went out and the exchange ended (the client closed
    /// after reading it, or the linger time ran out).
    Finished,
    /// The client closed its side first.
    ClientClosed,
    /// The client reset the connection.
    PeerReset,
    /// Reading, writing or changing the socket's interest failed otherwise.
    IoError,
    /// A stream's client sent more than it may (it should send nothing).
    ClientSentData,
    /// A stream's client did not read and its write buffer filled up.
    SlowConsumer,
    /// A header, idle or linger time-out ran out.
    TimedOut,
    /// The server is shutting down.
    Shutdown,
    /// A stream's token expired.
    TokenExpired,
    /// A cluster node started over from Redis's histories: the stream
    /// reconnects and resumes against them.
    Resync,
}

impl Close {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Close; 10] = [
        Close::Finished,
        Close::ClientClosed,
        Close::PeerReset,
        Close::IoError,
        Close::ClientSentData,
        Close::SlowConsumer,
        Close::TimedOut,
        Close::Shutdown,
        Close::TokenExpired,
        Close::Resync,
    ];

    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Close::Finished => "finished",
            Close::ClientClosed => "client_closed",
            Close::PeerReset => "peer_reset",
            Close::IoError => "io_error",
            Close::ClientSentData => "client_sent_data",
            Close::SlowConsumer => "slow_consumer",
            Close::TimedOut => "timed_out",
            Close::Shutdown => "shutdown",
            Close::TokenExpired => "token_expired",
            Close::Resync => "resync",
        }
    }

    /// The reason for a socket error.
    pub fn of_error(error: &io::Error) -> Close {
        match error.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Close::PeerReset,
            _ => Close::IoError,
        }
    }
}

/// The states of a connection.
#[derive(Debug)]
pub enum State {
    /// Reading requests and answering them (keep-alive, pipelining).
    Http(Box<HttpState>),
    /// An event stream: reads are only watched for the close.
    Stream(StreamState),
    /// The last response is being written; then the write side is shut.
    Finishing,
    /// Write side shut; reading and dropping until the client closes or the
    /// deadline passes, so it can read our answer before an RST.
    Lingering,
}

/// Where an ordinary connection stands.
#[derive(Debug, Default)]
pub struct HttpState {
    /// Received bytes and the request framing over them.
    pub framer: Framer,
    /// Reading stopped because too many answers wait to be written; the
    /// next drained flush resumes it.
    pub read_paused: bool,
    /// A publish's answer waits for the event log; later requests wait too,
    /// so answers stay in order.
    pub awaiting_log: bool,
}

/// An open event stream (its rooms live in the hub's subscription).
#[derive(Debug)]
pub struct StreamState {
    /// Bytes of the opening replay still counted beside the slow-consumer
    /// cap: a history larger than the cap must not cut a new stream before
    /// it had a chance to read. Zero once the buffer first drains.
    pub replay_allowance: usize,
    /// When its token expires, in seconds since the epoch (private mode):
    /// the sweep closes it then, and the page renews its token.
    pub expires: Option<std::num::NonZeroU64>,
}

/// What one read achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes arrived.
    Data(usize),
    /// Nothing more for now.
    WouldBlock,
    /// The client closed its side.
    Eof,
}

impl Conn {
    /// A new connection, in the request state, whose head must arrive by `deadline`.
    pub fn new(socket: TcpStream, peer: SocketAddr, deadline: Instant) -> Conn {
        Conn {
            socket,
            peer,
            state: State::Http(Box::default()),
            out: OutBuf::default(),
            wants_write: false,
            queued: false,
            closing: None,
            deadline: Some(deadline),
        }
    }

    /// Whether this connection is an open event stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.state, State::Stream(_))
    }
}

/// Reads once through `scratch` and appends what came to `buf`, keeping
/// `buf` at most `limit` bytes long. Reading through one shared scratch
/// buffer keeps each connection's own buffer as small as its data.
///
/// # Errors
/// Socket errors other than `WouldBlock` and `Interrupted`.
pub fn read_into(
    socket: &mut TcpStream,
    scratch: &mut [u8],
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<ReadOutcome> {
    let room = limit.saturating_sub(buf.len()).min(scratch.len());
    if room == 0 {
        return Ok(ReadOutcome::Data(0));
    }
    loop {
        match socket.read(&mut scratch[..room]) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(n) => {
                buf.extend_from_slice(&scratch[..n]);
                return Ok(ReadOutcome::Data(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads and drops what is available, up to `budget` bytes (streams and
/// lingering closes). `Data(n)` means the budget ran out: a client that
/// sends that much where nothing is expected is dropped by the caller.
///
/// # Errors
/// Socket errors other than `WouldBlock` and `Interrupted`.
pub fn drain_reads(socket: &mut TcpStream, budget: usize) -> io::Result<ReadOutcome> {
    let mut scratch = [0u8; 4096];
    let mut total = 0;
    loop {
        match socket.read(&mut scratch) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(n) => {
                total += n;
                if total >= budget {
                    return Ok(ReadOutcome::Data(total));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// An idle stream costs its slot in the server's connection table plus
    /// its room list and hub entry (BENCHMARKS.md adds them up against the
    /// measured RSS). A field added here is paid ten thousand times over;
    /// this makes it a visible decision.
    #[test]
    fn a_connection_slot_stays_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<OutBuf>(), 32);
        assert_eq!(size_of::<StreamState>(), 16);
        assert!(
            size_of::<Option<Conn>>() <= 136,
            "Option<Conn> grew to {} bytes",
            size_of::<Option<Conn>>()
        );
    }
}

//! The connection table: slots by token, the free list, the two flush
//! queues, the resume list and the closing list. Appending a frame never
//! does I/O; it only queues the connection for the turn's flush. Every
//! close goes through [`Conns::mark_closing`] and happens in one place, at
//! the end of the turn ([`Conns::take_closing`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use log::{debug, info};

use crate::conn::{Close, Conn, State};

/// Connections by token, and what the turn must still do with them.
#[derive(Debug, Default)]
pub struct Conns {
    /// Connections by token index; `None` slots are free.
    slots: Vec<Option<Conn>>,
    /// Free slots, reused last-freed first.
    free: Vec<usize>,
    /// Connections with an answer waiting (responses, stream preambles),
    /// flushed every turn before the streams.
    replies: Vec<usize>,
    /// Streams with broadcast bytes appended since their last flush, with
    /// when the first of those bytes came, flushed oldest first, a slice
    /// per turn.
    streams_due: VecDeque<(usize, Instant)>,
    /// The time of this turn (set by the loop), stamped on new entries of
    /// `streams_due`.
    pub now: Option<Instant>,
    /// Connections whose reading goes on after this turn's flush: a held
    /// answer went out, a paused read may resume, a close lingers.
    resume: Vec<usize>,
    /// Connections marked for closing this turn.
    closing: Vec<usize>,
    /// Open connections.
    pub open: usize,
    /// Open event streams.
    pub streams: usize,
    /// Connections closed since start, per [`Close::ALL`] reason.
    closed: [u64; Close::ALL.len()],
}

impl Conns {
    /// A free token for a new connection (fill it, or give it back).
    pub fn vacant(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        })
    }

    /// Puts a new connection in the slot `token` from [`vacant`](Self::vacant).
    pub fn fill(&mut self, token: usize, conn: Conn) {
        self.slots[token] = Some(conn);
        self.open += 1;
    }

    /// Returns an unused token from [`vacant`](Self::vacant).
    pub fn give_back(&mut self, token: usize) {
        self.free.push(token);
    }

    /// Every token that may hold a connection.
    pub fn tokens(&self) -> std::ops::Range<usize> {
        0..self.slots.len()
    }

    /// The connection under `token`.
    pub fn get(&self, token: usize) -> Option<&Conn> {
        self.slots.get(token).and_then(Option::as_ref)
    }

    /// The connection under `token`, unless it is closing.
    pub fn live(&mut self, token: usize) -> Option<&mut Conn> {
        self.slots
            .get_mut(token)
            .and_then(Option::as_mut)
            .filter(|c| c.closing.is_none())
    }

    /// Queues `token`'s answer for this turn's flush.
    pub fn queue_reply(&mut self, token: usize) {
        if let Some(conn) = self.live(token) {
            if !conn.queued && !conn.wants_write {
                conn.queued = true;
                self.replies.push(token);
            }
        }
    }

    /// Takes the connections with answers waiting.
    pub fn take_replies(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.replies)
    }

    /// The next stream whose bytes have waited at least `delay`.
    pub fn next_stream_due(&mut self, delay: Duration) -> Option<usize> {
        let (_, since) = *self.streams_due.front()?;
        if self.now.is_some_and(|now| now < since + delay) {
            return None;
        }
        self.streams_due.pop_front().map(|(token, _)| token)
    }

    /// How many streams wait for a flush.
    pub fn streams_waiting(&self) -> usize {
        self.streams_due.len()
    }

    /// When the oldest waiting stream has waited `delay`.
    pub fn streams_due_at(&self, delay: Duration) -> Option<Instant> {
        self.streams_due.front().map(|(_, since)| *since + delay)
    }

    /// Whether answers or resumed reads wait (the loop then does not sleep).
    pub fn flush_pending(&self) -> bool {
        !self.replies.is_empty() || !self.resume.is_empty()
    }

    /// Appends `frame` to the stream `token` and queues it for the flush;
    /// a stream whose buffer passes `cap` (plus its replay allowance) is
    /// closed as a slow consumer. Returns whether the frame was taken.
    pub fn append(&mut self, token: usize, frame: &[u8], cap: usize) -> bool {
        let Some(conn) = self.live(token) else {
            return false;
        };
        conn.out.push(frame);
        let allowance = match &conn.state {
            State::Stream(stream) => stream.replay_allowance,
            _ => 0,
        };
        if conn.out.len() > cap + allowance {
            info!(
                "{} cut as a slow consumer ({} bytes waiting)",
                conn.peer,
                conn.out.len()
            );
            self.mark_closing(token, Close::SlowConsumer);
            return false;
        }
        if !conn.queued && !conn.wants_write {
            conn.queued = true;
            let now = self.now.unwrap_or_else(Instant::now);
            self.streams_due.push_back((token, now));
        }
        true
    }

    /// Appends `frame` to every open stream; returns how many took it.
    pub fn append_to_streams(&mut self, frame: &[u8], cap: usize) -> usize {
        let mut sent = 0;
        for token in self.tokens() {
            if self.get(token).is_some_and(|c| c.is_stream()) && self.append(token, frame, cap) {
                sent += 1;
            }
        }
        sent
    }

    /// Asks for `token`'s reading to go on after this turn's flush.
    pub fn resume_later(&mut self, token: usize) {
        self.resume.push(token);
    }

    /// Takes the connections whose reading goes on now.
    pub fn take_resume(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.resume)
    }

    /// Marks `token` for closing at the end of the turn; the first reason counts.
    pub fn mark_closing(&mut self, token: usize, reason: Close) {
        if let Some(conn) = self.live(token) {
            debug!("{} closing: {}", conn.peer, reason.label());
            conn.closing = Some(reason);
            self.closing.push(token);
            self.closed[reason as usize] += 1;
        }
    }

    /// Removes the next connection marked for closing, freeing its token:
    /// called once the turn's events are all handled, so no token is
    /// reused while events for it may still be in the batch.
    pub fn take_closing(&mut self) -> Option<(usize, Conn)> {
        loop {
            let token = self.closing.pop()?;
            if let Some(conn) = self.slots[token].take() {
                self.open -= 1;
                self.free.push(token);
                return Some((token, conn));
            }
        }
    }

    /// Connections closed since start, per [`Close::ALL`] reason.
    pub fn closed_counts(&self) -> [u64; Close::ALL.len()] {
        self.closed
    }

    /// Streams closed as slow consumers since start.
    pub fn slow_consumers(&self) -> u64 {
        self.closed[Close::SlowConsumer as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::StreamState;

    /// A stream connection on a real loopback socket (nothing is written).
    fn stream_conn() -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, peer) = listener.accept().unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut conn = Conn::new(mio::net::TcpStream::from_std(socket), peer, Instant::now());
        conn.state = State::Stream(StreamState {
            replay_allowance: 0,
            expires: None,
        });
        (conn, client)
    }

    /// Broadcast bytes wait their delay, counted from the first of them,
    /// oldest stream first; later bytes of a waiting stream do not move it.
    #[test]
    fn streams_come_due_once_their_first_bytes_waited_the_delay() {
        let mut conns = Conns::default();
        let mut clients = Vec::new();
        let t0 = Instant::now();
        let delay = Duration::from_millis(100);
        for at in [0, 30] {
            let (conn, client) = stream_conn();
            clients.push(client);
            let token = conns.vacant();
            conns.fill(token, conn);
            conns.now = Some(t0 + Duration::from_millis(at));
            assert!(conns.append(token, b"data: x\n\n", 1 << 16));
        }
        // A second event for the first stream, later: it keeps its place.
        conns.now = Some(t0 + Duration::from_millis(60));
        assert!(conns.append(0, b"data: y\n\n", 1 << 16));
        assert_eq!(conns.streams_waiting(), 2);
        assert_eq!(conns.streams_due_at(delay), Some(t0 + delay));

        conns.now = Some(t0 + Duration::from_millis(99));
        assert_eq!(conns.next_stream_due(delay), None, "not yet");
        conns.now = Some(t0 + Duration::from_millis(100));
        assert_eq!(conns.next_stream_due(delay), Some(0));
        assert_eq!(
            conns.next_stream_due(delay),
            None,
            "the second waits until 130 ms"
        );
        assert_eq!(
            conns.next_stream_due(Duration::ZERO),
            Some(1),
            "no delay: due at once"
        );
        assert_eq!(conns.streams_waiting(), 0);
    }
}

//! The read side of the loop: readiness on a connection, reading into its
//! framer, handing each request to the app and moving the connection on by
//! the outcome. Part of [`Server`]'s loop; it never writes to a socket and
//! never calls back into the flush.

use crate::app::{Asker, Load, Outcome};
use crate::conn::{self, Close, ReadOutcome, State, StreamState};
use crate::http::Step;
use crate::request::{HttpError, Limits};
use crate::response;

use super::{Server, LINGER_READ_BUDGET, OUT_HIGH_WATER, STREAM_READ_BUDGET};

impl Server {
    pub(super) fn conn_ready(&mut self, token: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.live(token) else {
            return; // closed or closing; mio promises nothing else
        };
        if writable && conn.wants_write {
            self.flush(token);
        }
        if readable {
            self.read_ready(token);
        }
    }

    pub(super) fn read_ready(&mut self, token: usize) {
        let Some(conn) = self.conns.live(token) else {
            return;
        };
        let close = match &conn.state {
            State::Http(_) => return self.drive(token),
            State::Stream(_) => match conn::drain_reads(&mut conn.socket, STREAM_READ_BUDGET) {
                Ok(ReadOutcome::WouldBlock) => None,
                Ok(ReadOutcome::Eof) => Some(Close::ClientClosed),
                Ok(_) => Some(Close::ClientSentData),
                Err(e) => Some(Close::of_error(&e)),
            },
            // The last answer is still going out; what the client sends now
            // is read (and dropped) once it has gone.
            State::Finishing => None,
            // Each new arrival raises a new edge, so stopping at the budget
            // loses nothing; the linger deadline bounds the whole drain.
            State::Lingering => match conn::drain_reads(&mut conn.socket, LINGER_READ_BUDGET) {
                Ok(ReadOutcome::WouldBlock) | Ok(ReadOutcome::Data(_)) => None,
                Ok(ReadOutcome::Eof) => Some(Close::Finished),
                Err(e) => Some(Close::of_error(&e)),
            },
        };
        if let Some(reason) = close {
            self.conns.mark_closing(token, reason);
        }
    }

    /// Answers the requests of an ordinary connection, reading until the
    /// socket would block, the connection changes state, a publish waits
    /// for the log, or too many answers wait to be written.
    fn drive(&mut self, token: usize) {
        let read_limit = self.app.config.max_head + self.app.config.max_body + 1024;
        while self.answer_buffered(token) {
            let Some(conn) = self.conns.live(token) else {
                return;
            };
            let State::Http(http) = &mut conn.state else {
                return;
            };
            if conn.out.len() > OUT_HIGH_WATER {
                http.read_paused = true;
                return;
            }
            let was_idle = !http.framer.in_request();
            let read = conn::read_into(
                &mut conn.socket,
                &mut self.scratch,
                http.framer.buffer(),
                read_limit,
            );
            match read {
                // The buffer is full and nothing in it could be used.
                Ok(ReadOutcome::Data(0)) => {
                    return self.fail(token, HttpError::HeadersTooLarge, None)
                }
                Ok(ReadOutcome::Data(_)) => {
                    if was_idle {
                        // The first byte of a request starts its header clock.
                        conn.deadline = Some(self.now + self.app.config.header_timeout);
                    }
                }
                Ok(ReadOutcome::WouldBlock) => return,
                Ok(ReadOutcome::Eof) => {
                    // Half-close: answers already queued still go out.
                    if conn.out.is_empty() {
                        self.conns.mark_closing(token, Close::ClientClosed);
                    } else {
                        conn.state = State::Finishing;
                    }
                    return;
                }
                Err(e) => return self.conns.mark_closing(token, Close::of_error(&e)),
            }
        }
    }

    /// Answers every complete request already read. Returns whether the
    /// connection may read more.
    fn answer_buffered(&mut self, token: usize) -> bool {
        let limits = Limits {
            max_head: self.app.config.max_head,
            max_body: self.app.config.max_body,
        };
        loop {
            let load = self.load();
            let Some(conn) = self.conns.live(token) else {
                return false;
            };
            let who = Asker {
                token,
                peer: conn.peer,
            };
            let State::Http(http) = &mut conn.state else {
                return false;
            };
            if http.awaiting_log {
                return false;
            }
            if conn.out.len() > OUT_HIGH_WATER {
                return true;
            }
            match http.framer.next(limits) {
                Step::NeedMore => return true,
                Step::BodyAwaited { send_continue } => {
                    conn.deadline = Some(self.now + self.app.config.idle_timeout);
                    if send_continue {
                        response::write_continue(conn.out.tail());
                        self.conns.queue_reply(token);
                    }
                }
                Step::Fail { error, origin } => {
                    self.fail(token, error, origin.as_deref());
                    return false;
                }
                Step::Request(head, body) => {
                    let outcome = self.app.request(who, &head, &body, load, conn.out.tail());
                    self.carry_out(token, outcome);
                }
            }
        }
    }

    /// Answers a request that can never be accepted, and closes after it.
    fn fail(&mut self, token: usize, error: HttpError, origin: Option<&str>) {
        let Some(conn) = self.conns.live(token) else {
            return;
        };
        let who = Asker {
            token,
            peer: conn.peer,
        };
        self.app.fail(who, error, origin, conn.out.tail());
        self.answered(token, false);
    }

    /// Moves the connection on after the app's answer.
    fn carry_out(&mut self, token: usize, outcome: Outcome) {
        match outcome {
            Outcome::Answered { keep_alive } => self.answered(token, keep_alive),
            Outcome::Stream { expires } => {
                let Some(conn) = self.conns.live(token) else {
                    return;
                };
                let replay_allowance = conn.out.len();
                conn.state = State::Stream(StreamState {
                    replay_allowance,
                    expires: expires.and_then(std::num::NonZeroU64::new),
                });
                conn.deadline = None;
                self.conns.streams += 1;
                self.conns.queue_reply(token);
            }
            Outcome::Held => {
                if let Some(State::Http(http)) = self.conns.live(token).map(|c| &mut c.state) {
                    http.awaiting_log = true;
                }
            }
        }
    }

    /// An answer is in the buffer: queue it, and settle what comes next.
    pub(super) fn answered(&mut self, token: usize, keep_alive: bool) {
        let Some(conn) = self.conns.live(token) else {
            return;
        };
        if !keep_alive {
            conn.state = State::Finishing;
        } else if let State::Http(http) = &conn.state {
            let wait = if http.framer.has_buffered() {
                self.app.config.header_timeout
            } else {
                self.app.config.idle_timeout
            };
            conn.deadline = Some(self.now + wait);
        }
        self.conns.queue_reply(token);
    }

    fn load(&self) -> Load {
        Load {
            streams: self.conns.streams,
            connections: self.conns.open,
            shutting_down: self.timers.shutting_down(),
            closed: self.conns.closed_counts(),
        }
    }
}

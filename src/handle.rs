//! [`Handle`]: publish to, and shut down, a server from any thread.
//!
//! Commands go through a mutex-guarded queue; one `mio::Waker` wakes the
//! loop, and only when the queue goes from empty to not empty, so a burst
//! of publishes costs one wake-up.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::hub::valid_room;
use crate::server::Stats;
use crate::sse::{check_event_name, EventError};

/// A request from another thread, carried out by the loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish an event (line ends already normalised).
    Publish {
        /// Room to publish to.
        room: String,
        /// Event name; `message` when `None`.
        event: Option<String>,
        /// The data.
        data: String,
    },
    /// Begin a graceful shutdown.
    Shutdown,
}

/// What the loop and its handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Commands waiting for the loop.
    pub(crate) queue: Mutex<Vec<Command>>,
    /// Wakes the loop's `poll`.
    pub(crate) waker: mio::Waker,
    /// False once the server has stopped: commands are refused.
    pub(crate) open: AtomicBool,
    /// The counters as of the loop's last turn.
    pub(crate) stats: Mutex<Stats>,
}

impl Shared {
    /// Takes every waiting command.
    pub(crate) fn take(&self) -> Vec<Command> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Refuses further commands.
    pub(crate) fn close(&self) {
        let _queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.open.store(false, Ordering::SeqCst);
    }
}

/// A cloneable, `Send + Sync` handle to a running server.
///
/// # Examples
/// ```
/// let server = ssehub::Server::bind(ssehub::Config {
///     bind: "127.0.0.1:0".parse().unwrap(),
///     ..Default::default()
/// })
/// .unwrap();
/// let handle = server.handle();
/// std::thread::spawn(move || handle.publish("sensors", Some("reading"), "temp=21"))
///     .join()
///     .unwrap()
///     .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

/// Why a command from a [`Handle`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// The server has stopped; nothing will be delivered.
    Closed,
    /// The room name is not 1–64 characters of `A-Z a-z 0-9 _ - .`.
    InvalidRoom,
    /// The event name breaks the contract's rules.
    InvalidEvent(EventError),
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Closed => write!(f, "the server has stopped"),
            HandleError::InvalidRoom => {
                write!(f, "room must be 1-64 characters of A-Z a-z 0-9 _ - .")
            }
            HandleError::InvalidEvent(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HandleError {}

impl Handle {
    /// Publishes `data` to `room` as an event named `event` (`message` when
    /// `None`). The loop assigns the id, retains and broadcasts it.
    ///
    /// # Errors
    /// [`HandleError::InvalidRoom`] or [`HandleError::InvalidEvent`] for bad
    /// names; [`HandleError::Closed`] once the server has stopped.
    pub fn publish(&self, room: &str, event: Option<&str>, data: &str) -> Result<(), HandleError> {
        if !valid_room(room) {
            return Err(HandleError::InvalidRoom);
        }
        if let Some(name) = event {
            check_event_name(name).map_err(HandleError::InvalidEvent)?;
        }
        self.send(Command::Publish {
            room: room.to_string(),
            event: event.map(str::to_string),
            data: crate::sse::normalize_line_ends(data),
        })
    }

    /// Publishes a checked [`Event`](crate::Event) to `room`. The loop
    /// assigns the id (an id set on `event` is not used).
    ///
    /// # Errors
    /// [`HandleError::InvalidRoom`] for a bad room; [`HandleError::Closed`]
    /// once the server has stopped.
    ///
    /// # Examples
    /// ```
    /// use ssehub::{Config, Event, Server};
    /// let server = Server::bind(Config { bind: "127.0.0.1:0".parse().unwrap(), ..Config::default() })
    ///     .unwrap();
    /// let reading = Event::new("reading", "temp=21\nhum=40").expect("a valid name");
    /// server.handle().publish_event("sensors", &reading).unwrap();
    /// ```
    pub fn publish_event(&self, room: &str, event: &crate::Event) -> Result<(), HandleError> {
        self.publish(room, event.name(), event.data())
    }

    /// The server's counters as of its last loop turn (a turn ends at least
    /// every heartbeat, and whenever anything happens). Works while `run`
    /// goes on in another thread, and after it returned.
    pub fn stats(&self) -> Stats {
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the server to shut down gracefully: streams get their pending
    /// bytes flushed (for a bounded time), then every connection closes and
    /// `run` returns.
    ///
    /// # Errors
    /// [`HandleError::Closed`] if the server has already stopped.
    pub fn shutdown(&self) -> Result<(), HandleError> {
        self.send(Command::Shutdown)
    }

    fn send(&self, command: Command) -> Result<(), HandleError> {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if !self.shared.open.load(Ordering::SeqCst) {
            return Err(HandleError::Closed);
        }
        let was_empty = queue.is_empty();
        queue.push(command);
        drop(queue);
        if was_empty {
            // A failed wake means the poll is gone; the server is closing.
            self.shared.waker.wake().map_err(|_| HandleError::Closed)?;
        }
        Ok(())
    }
}

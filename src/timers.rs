//! The loop's deadlines: the heartbeat, the presence round, the time-out
//! sweep, a paused accept and the shutdown. The loop sleeps until
//! [`Timers::next`] and asks [`Timers::due`] what to run after its I/O.
//! Pure: time comes in as an argument.

use std::time::{Duration, Instant};

/// How often time-outs are checked.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// What is due in this turn.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Send every stream a heartbeat.
    pub heartbeat: bool,
    /// Announce changed presence counts.
    pub presence: bool,
    /// Close connections whose deadlines passed.
    pub sweep: bool,
    /// Accept again after running out of file descriptors.
    pub accept: bool,
    /// The shutdown's grace period is over: close everything.
    pub shutdown: bool,
}

/// The deadlines.
#[derive(Debug)]
pub struct Timers {
    /// The heartbeat period; `None` when heartbeats are off.
    heartbeat: Option<Duration>,
    next_heartbeat: Option<Instant>,
    /// At most one presence round per this period.
    presence_period: Duration,
    next_presence: Instant,
    next_sweep: Instant,
    /// Accepting is paused until then.
    accept_resume: Option<Instant>,
    /// Shutdown began; everything is closed by then.
    shutdown_at: Option<Instant>,
}

impl Timers {
    /// Timers starting `now`; `heartbeat` zero turns heartbeats off
    /// (presence is then still coalesced to one round a second).
    pub fn new(now: Instant, heartbeat: Duration) -> Timers {
        let on = !heartbeat.is_zero();
        Timers {
            heartbeat: on.then_some(heartbeat),
            next_heartbeat: on.then(|| now + heartbeat),
            presence_period: if on {
                heartbeat
            } else {
                Duration::from_secs(1)
            },
            next_presence: now,
            next_sweep: now + SWEEP_EVERY,
            accept_resume: None,
            shutdown_at: None,
        }
    }

    /// The nearest deadline; the presence round counts only when
    /// `presence_pending`.
    pub fn next(&self, presence_pending: bool) -> Instant {
        let mut next = self.next_sweep;
        for t in [
            self.next_heartbeat,
            presence_pending.then_some(self.next_presence),
            self.accept_resume,
            self.shutdown_at,
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(t);
        }
        next
    }

    /// What is due at `now`; each due periodic timer is moved to its next time.
    pub fn due(&mut self, now: Instant, presence_pending: bool) -> Due {
        let mut due = Due::default();
        if let (Some(at), Some(period)) = (self.next_heartbeat, self.heartbeat) {
            if now >= at {
                due.heartbeat = true;
                // Skip missed beats rather than send a burst after a stall.
                let next = at + period;
                self.next_heartbeat = Some(if next <= now { now + period } else { next });
            }
        }
        if presence_pending && now >= self.next_presence {
            due.presence = true;
            self.next_presence = now + self.presence_period;
        }
        if now >= self.next_sweep {
            due.sweep = true;
            self.next_sweep = now + SWEEP_EVERY;
        }
        if self.accept_resume.is_some_and(|t| now >= t) {
            due.accept = true;
            self.accept_resume = None;
        }
        due.shutdown = self.shutdown_at.is_some_and(|t| now >= t);
        due
    }

    /// Pauses accepting until `until`.
    pub fn pause_accept(&mut self, until: Instant) {
        self.accept_resume = Some(until);
    }

    /// Whether accepting is paused.
    pub fn accept_paused(&self) -> bool {
        self.accept_resume.is_some()
    }

    /// Starts the shutdown's grace period, ending at `at`.
    pub fn begin_shutdown(&mut self, at: Instant) {
        self.shutdown_at.get_or_insert(at);
    }

    /// Whether a shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.shutdown_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn heartbeats_skip_missed_beats() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, SEC);
        assert_eq!(timers.next(false), t0 + SWEEP_EVERY);
        assert!(!timers.due(t0 + SEC / 2, false).heartbeat);
        assert!(timers.due(t0 + SEC, false).heartbeat);
        assert!(!timers.due(t0 + SEC, false).heartbeat, "once per period");
        // A stall of 3.5 periods: one beat, then back on the grid from now.
        assert!(timers.due(t0 + SEC * 5 + SEC / 2, false).heartbeat);
        assert!(!timers.due(t0 + SEC * 6, false).heartbeat);
        assert!(timers.due(t0 + SEC * 6 + SEC / 2, false).heartbeat);
    }

    #[test]
    fn presence_is_coalesced_and_only_counts_when_pending() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, Duration::ZERO);
        assert_eq!(timers.next(true), t0, "the first round may go at once");
        assert!(timers.due(t0, true).presence);
        assert!(!timers.due(t0 + SEC / 2, true).presence);
        assert!(!timers.due(t0 + SEC, false).presence, "nothing pending");
        assert!(timers.due(t0 + SEC, true).presence);
        assert!(!timers.due(t0 + SEC * 9, false).heartbeat, "heartbeats off");
    }

    #[test]
    fn accept_pause_and_shutdown() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0, SEC);
        timers.pause_accept(t0 + SEC / 10);
        assert!(timers.accept_paused());
        assert_eq!(timers.next(false), t0 + SEC / 10);
        assert!(timers.due(t0 + SEC / 10, false).accept);
        assert!(!timers.accept_paused());
        timers.begin_shutdown(t0 + SEC * 2);
        timers.begin_shutdown(t0 + SEC * 9);
        assert!(timers.shutting_down());
        assert!(!timers.due(t0 + SEC, false).shutdown);
        assert!(
            timers.due(t0 + SEC * 2, false).shutdown,
            "the first deadline holds"
        );
    }
}

//! The log without storage: every append is committed at once.

use super::{Appended, Draft, EventLog, Settled};
use crate::hub::Hub;

/// Ids and nothing else: events live only in the hub's history.
#[derive(Debug)]
pub struct MemoryLog {
    /// The newest id issued.
    last_id: u64,
    /// Reports not yet taken.
    settled: Vec<Settled>,
}

impl MemoryLog {
    /// A log whose first event gets `first_id`. The server passes the start
    /// time in milliseconds × 1000, so a browser resuming after a restart
    /// never holds an id ahead of the server's.
    pub fn new(first_id: u64) -> MemoryLog {
        MemoryLog {
            last_id: first_id.saturating_sub(1),
            settled: Vec::new(),
        }
    }
}

impl EventLog for MemoryLog {
    fn append(&mut self, draft: Draft) -> Appended {
        self.last_id += 1;
        let id = self.last_id;
        self.settled.push(Settled::Committed {
            ticket: Some(id),
            event: draft.encode(id),
        });
        Appended {
            ticket: id,
            id: Some(id),
        }
    }

    fn flush(&mut self) {}

    fn settled(&mut self, out: &mut Vec<Settled>) {
        out.append(&mut self.settled);
    }

    fn has_pending(&self) -> bool {
        !self.settled.is_empty()
    }

    fn last_id(&self) -> u64 {
        self.last_id
    }

    fn load(&mut self, _hub: &mut Hub) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_commit_at_once_in_order() {
        let mut log = MemoryLog::new(1000);
        assert_eq!(log.last_id(), 999);
        let a = log.append(Draft::event("r", "e", "1", 0));
        let b = log.append(Draft::message("r", "u", "2", 0));
        assert_eq!((a.id, b.id), (Some(1000), Some(1001)));
        assert!(log.has_pending());
        let mut out = Vec::new();
        log.settled(&mut out);
        let ids: Vec<u64> = out
            .iter()
            .map(|s| match s {
                Settled::Committed { event, .. } => event.id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, [1000, 1001]);
        assert!(!log.has_pending());
    }
}

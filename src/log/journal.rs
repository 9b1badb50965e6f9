//! The journal (`--journal FILE`): every published event as one line of
//! JSON, written and synced before its `201` goes out, read back on start.
//!
//! Pure file I/O, blocking: it is a local file, and the server pays one
//! write and one `fdatasync` per loop turn however many events the turn
//! published (group commit).
//!
//! # Format
//! UTF-8, one JSON object per line, each line ended by `\n`:
//!
//! ```text
//! {"last_id":1700000000000042}
//! {"id":1700000000000043,"room":"lobby","user":"ann","text":"hi","time":1700000000123}
//! {"id":1700000000000044,"room":"sensors","event":"reading","data":"t=21\nh=40","time":1700000000456}
//! ```
//!
//! - A message is exactly its item of `GET /messages`:
//!   `{"id","room","user","text","time"}`.
//! - A `/publish` event likewise: `{"id","room","event","data","time"}`.
//! - `{"last_id":N,"dropped":{"ROOM":M,…}}` (first line after a
//!   compaction) records the highest id ever issued, so ids never go back
//!   even when the events that held them were dropped from the history, and
//!   per room the highest id dropped from its history (rooms that dropped
//!   none are left out; `dropped` may be absent), so a client resuming from
//!   before it still gets its `gap` event after a restart.
//!
//! On start, events are replayed in id order; the sequence continues above
//! the highest id of any line. A last line cut short (a crash mid-write) is
//! reported and cut off; an unreadable line elsewhere is reported and
//! skipped. Neither stops the server.
//!
//! The server reaches it only through [`JournalLog`], the journal's side
//! of the event-log seam: `append` queues a line, `flush` writes the turn's
//! lines and syncs once, and only then are the events reported committed.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use log::{error, info, warn};
use serde_json::{Map, Value};

use super::{Appended, Draft, EventLog, Role, Settled};
use crate::hub::{self, Hub, Retained};
use crate::sse;

/// Below this many lines a journal is never compacted: rewriting a small
/// file often would cost more syncs than it saves.
pub const MIN_COMPACT_LINES: usize = 1024;

/// A journal is compacted once it holds more than this many lines per
/// retained event.
pub const COMPACT_FACTOR: usize = 4;

/// The highest id a journal line may hold: the contract keeps ids exact
/// in JavaScript. Lines above it are skipped as bad.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// One event read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A chat message (`POST /messages`).
    Message {
        /// Its id in the one sequence.
        id: u64,
        /// Its room.
        room: String,
        /// Who wrote it.
        user: String,
        /// What they wrote.
        text: String,
        /// When, in milliseconds since the Unix epoch.
        time: u64,
        /// `agent` or `customer`, for messages of a private desk.
        role: Option<Role>,
    },
    /// A custom event (`POST /publish` or a handle).
    Event {
        /// Its id in the one sequence.
        id: u64,
        /// Its room.
        room: String,
        /// The event name.
        event: String,
        /// The data, line ends already normalised to LF.
        data: String,
        /// When, in milliseconds since the Unix epoch.
        time: u64,
    },
}

impl Record {
    /// The event's id.
    pub fn id(&self) -> u64 {
        match self {
            Record::Message { id, .. } | Record::Event { id, .. } => *id,
        }
    }
}

/// What [`Journal::open`] read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The events, in id order, each id once.
    pub events: Vec<Record>,
    /// The highest id any line of the journal holds (0 for an empty one).
    pub last_id: u64,
    /// Per room, the highest id dropped from its history before the last
    /// compaction (from the header line), for the `gap` event.
    pub dropped: Vec<(String, u64)>,
    /// Lines at the end left unfinished by an interrupted write: skipped
    /// and cut off the file.
    pub torn_lines: usize,
    /// Complete lines that were not usable events (or repeated an id):
    /// skipped, left in the file until the next compaction.
    pub bad_lines: usize,
}

impl Record {
    /// The record as a draft, to be encoded with its own id: replayed
    /// events are byte-identical to the live ones.
    fn to_draft(&self) -> Draft {
        match self {
            Record::Message {
                room,
                user,
                text,
                time,
                role,
                ..
            } => Draft::message_as(room, user, text, *role, *time),
            Record::Event {
                room,
                event,
                data,
                time,
                ..
            } => Draft::event(room, event, data, *time),
        }
    }
}

/// Puts the journal's events back into `hub`: histories refilled with
/// frames and items byte-identical to those of the live publishes, and the
/// sequence moved above `loaded.last_id`.
///
/// Call it once, on a fresh hub, before anything is published.
pub fn replay_into(loaded: &Loaded, hub: &mut Hub) {
    for record in &loaded.events {
        hub.commit(record.to_draft().encode(record.id()));
    }
    for (room, id) in &loaded.dropped {
        hub.mark_dropped(room, *id);
    }
    hub.advance_to(loaded.last_id);
}

/// The [`EventLog`] over a journal file: ids continue the file's, and a
/// turn's appends are committed by one write and one sync.
#[derive(Debug)]
pub struct JournalLog {
    journal: Journal,
    /// What the file held at start, until [`EventLog::load`] takes it.
    loaded: Option<Loaded>,
    /// The newest id issued (refused ones included: never reused).
    last_id: u64,
    /// Appended since the last flush, encoded, in id order.
    pending: Vec<Retained>,
    /// Reports not yet taken.
    settled: Vec<Settled>,
}

impl JournalLog {
    /// Opens (or creates) the journal at `path` and reads it back; ids
    /// continue above the file's highest, or from `first_id` for a new or
    /// empty file.
    ///
    /// # Errors
    /// As [`Journal::open`].
    pub fn open(path: &Path, first_id: u64) -> io::Result<JournalLog> {
        let (journal, loaded) = Journal::open(path)?;
        let last_id = if loaded.last_id > 0 {
            loaded.last_id
        } else {
            first_id.saturating_sub(1)
        };
        info!(
            "journal {}: {} events restored, ids continue after {last_id}",
            path.display(),
            loaded.events.len(),
        );
        Ok(JournalLog {
            journal,
            loaded: Some(loaded),
            last_id,
            pending: Vec::new(),
            settled: Vec::new(),
        })
    }

    /// Makes the next flush fail as on a full disk (tests of the 503 path).
    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn fail_next_commit(&mut self) {
        self.journal.fail_next_commit();
    }
}

impl EventLog for JournalLog {
    fn append(&mut self, draft: Draft) -> Appended {
        self.last_id += 1;
        let event = draft.encode(self.last_id);
        self.journal.append(&event.json);
        self.pending.push(event);
        Appended {
            ticket: self.last_id,
            id: Some(self.last_id),
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let result = self.journal.commit();
        if let Err(e) = &result {
            error!(
                "journal write failed, {} publishes refused with 503: {e}",
                self.pending.len()
            );
        }
        for event in self.pending.drain(..) {
            self.settled.push(match result {
                Ok(()) => Settled::Committed {
                    ticket: Some(event.id),
                    event,
                },
                Err(_) => Settled::Refused {
                    ticket: event.id,
                    reason: "could not write the journal; try again",
                },
            });
        }
    }

    fn settled(&mut self, out: &mut Vec<Settled>) {
        out.append(&mut self.settled);
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.settled.is_empty()
    }

    fn last_id(&self) -> u64 {
        self.last_id
    }

    fn load(&mut self, hub: &mut Hub) {
        if let Some(loaded) = self.loaded.take() {
            replay_into(&loaded, hub);
        }
    }

    fn compact(&mut self, hub: &Hub) {
        // Cheap first: counting what the hub retains walks every room.
        if self.journal.lines <= MIN_COMPACT_LINES {
            return;
        }
        let (_, retained) = hub.sizes();
        if !self.journal.needs_compaction(retained) {
            return;
        }
        let events = hub.all_retained();
        let dropped = hub.dropped_marks();
        if let Err(e) = self.journal.compact(
            hub.last_id().max(self.last_id),
            &dropped,
            events.iter().map(|e| &*e.json),
        ) {
            error!("journal compaction failed (appending goes on): {e}");
        }
    }
}

/// The open journal file.
pub struct Journal {
    /// The file, positioned at its end; locked against a second server.
    file: File,
    /// Where it lives (compaction writes beside it and renames over it).
    path: PathBuf,
    /// Bytes known complete and synced: a failed write is cut back to here.
    len: u64,
    /// Complete lines in the file, for the compaction threshold.
    lines: usize,
    /// Lines appended since the last commit.
    pending: Vec<u8>,
    /// How many lines `pending` holds.
    pending_lines: usize,
    /// A failed write could not be cut back; the next commit tries first,
    /// so new lines never glue onto a partial one.
    damaged: bool,
    /// After a failed compaction, no new attempt before the file holds
    /// this many lines, so a full disk is not rewritten every loop turn.
    compact_retry_at: usize,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("lines", &self.lines)
            .field("pending_lines", &self.pending_lines)
            .field("damaged", &self.damaged)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens the journal at `path`, creating it if missing (its folder must
    /// exist), and reads it back. A torn last line is logged, counted and
    /// cut off so that new lines start clean; bad lines elsewhere are
    /// logged, counted and skipped. A `PATH.tmp` left by an interrupted
    /// compaction is removed.
    ///
    /// # Errors
    /// The file cannot be created, read, locked (another process has it
    /// open as its journal: [`io::ErrorKind::ResourceBusy`]) or cut back.
    /// The message names the path.
    pub fn open(path: &Path) -> io::Result<(Journal, Loaded)> {
        let named =
            |e: io::Error| io::Error::new(e.kind(), format!("journal {}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(named)?;
        lock(&file, path).map_err(named)?;
        // Only after taking the lock: the temporary file of a running
        // server's compaction is not ours to remove.
        let tmp = tmp_path(path);
        if fs::remove_file(&tmp).is_ok() {
            warn!(
                "journal {}: removed {} left by an interrupted compaction",
                path.display(),
                tmp.display()
            );
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(named)?;
        let scan = scan(&bytes, path);
        let len = scan.good_end as u64;
        if scan.good_end < bytes.len() {
            file.set_len(len).map_err(named)?;
            file.sync_all().map_err(named)?;
        }
        file.seek(SeekFrom::Start(len)).map_err(named)?;
        let journal = Journal {
            file,
            path: path.to_path_buf(),
            len,
            lines: scan.lines,
            pending: Vec::new(),
            pending_lines: 0,
            damaged: false,
            compact_retry_at: 0,
        };
        Ok((journal, scan.loaded))
    }

    /// Complete lines in the file (committed ones, not pending ones).
    #[cfg(test)]
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Queues one line (a retained item's JSON, without line end) for the
    /// next [`Journal::commit`]. No I/O.
    pub fn append(&mut self, json_line: &str) {
        debug_assert!(!json_line.contains('\n'), "a journal line must be one line");
        self.pending.extend_from_slice(json_line.as_bytes());
        self.pending.push(b'\n');
        self.pending_lines += 1;
    }

    /// Whether lines wait for a commit.
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        self.pending_lines > 0
    }

    /// Writes every pending line in one write and syncs once. Nothing
    /// pending: nothing done.
    ///
    /// On error the pending lines are dropped (their publishes must be
    /// answered 503), the file is cut back to its last committed line
    /// (reopened if its descriptor failed), and later commits work again
    /// once the cause is gone.
    ///
    /// # Errors
    /// The write or the sync failed (disk full, I/O error).
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.write_pending();
        let bytes = self.pending.len() as u64;
        let lines = self.pending_lines;
        self.pending.clear();
        self.pending_lines = 0;
        match result {
            Ok(()) => {
                self.len += bytes;
                self.lines += lines;
                Ok(())
            }
            Err(e) => {
                self.cut_back();
                Err(io::Error::new(
                    e.kind(),
                    format!("journal {}: {e}", self.path.display()),
                ))
            }
        }
    }

    /// Makes the next commit fail as on a full disk (tests of the server's
    /// 503 path); the commit after it reopens the real file.
    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn fail_next_commit(&mut self) {
        self.file = OpenOptions::new().write(true).open("/dev/full").unwrap();
    }

    /// Whether the file has grown past [`COMPACT_FACTOR`] lines per
    /// retained event (and past [`MIN_COMPACT_LINES`]).
    pub fn needs_compaction(&self, retained: usize) -> bool {
        let limit = retained
            .saturating_mul(COMPACT_FACTOR)
            .max(MIN_COMPACT_LINES);
        self.lines > limit && self.lines >= self.compact_retry_at
    }

    /// Rewrites the journal to `{"last_id":N,"dropped":{…}}` (from `dropped`,
    /// as [`Hub::dropped_marks`] gives it) and the `retained` items (in
    /// id order, as [`Hub::all_retained`] gives them), atomically: written
    /// to `PATH.tmp`, synced, renamed over `PATH`, the folder synced. Later
    /// commits append to the new file.
    ///
    /// Lines still pending are kept and go to the new file at the next
    /// commit, so `retained` must not hold them (it does not: the hub
    /// retains an event only once the log has committed it). Were one in
    /// both, loading would keep one copy.
    ///
    /// # Errors
    /// Writing, syncing or renaming failed. The journal stays usable: until the
    /// rename it is the old file, whole; after it, the new one. A failed
    /// attempt is not retried before [`MIN_COMPACT_LINES`] more lines.
    pub fn compact<I>(
        &mut self,
        last_id: u64,
        dropped: &[(std::sync::Arc<str>, u64)],
        retained: I,
    ) -> io::Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let before = self.lines;
        let tmp = tmp_path(&self.path);
        match self.rewrite(&tmp, header_line(last_id, dropped), retained) {
            Ok(()) => {
                info!(
                    "journal {}: compacted from {before} to {} lines",
                    self.path.display(),
                    self.lines
                );
                Ok(())
            }
            Err(e) => {
                self.compact_retry_at = self.lines + MIN_COMPACT_LINES;
                // After a successful rename there is nothing to remove.
                let _ = fs::remove_file(&tmp);
                Err(io::Error::new(
                    e.kind(),
                    format!("journal {}: compaction failed: {e}", self.path.display()),
                ))
            }
        }
    }

    fn rewrite<I>(&mut self, tmp: &Path, header: String, retained: I) -> io::Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)?;
        // Locked before it takes the journal's name, so a second server
        // never finds the new file unlocked.
        lock(&file, tmp)?;
        let mut lines = 1;
        let mut out = BufWriter::with_capacity(64 * 1024, &mut file);
        writeln!(out, "{header}")?;
        for item in retained {
            let item = item.as_ref();
            debug_assert!(!item.contains('\n'), "a journal line must be one line");
            out.write_all(item.as_bytes())?;
            out.write_all(b"\n")?;
            lines += 1;
        }
        out.flush()?;
        drop(out);
        let len = file.stream_position()?;
        file.sync_data()?;
        fs::rename(tmp, &self.path)?;
        self.file = file;
        self.len = len;
        self.lines = lines;
        self.damaged = false;
        self.compact_retry_at = 0;
        sync_parent(&self.path)
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if self.damaged {
            self.repair()?;
        }
        self.file.write_all(&self.pending)?;
        self.file.sync_data()
    }

    /// After a failed write: part of a line may be in the file, and would
    /// glue itself to the next line; the failed sync may also have lost
    /// what it covered. Cutting back to the last committed byte (and
    /// syncing that) removes both.
    fn cut_back(&mut self) {
        if let Err(e) = self.repair() {
            warn!(
                "journal {}: cannot cut back a failed write ({e}); retrying at the next commit",
                self.path.display()
            );
            self.damaged = true;
        }
    }

    fn repair(&mut self) -> io::Result<()> {
        if truncate_to(&mut self.file, self.len).is_err() {
            // The descriptor itself may be what failed: try a fresh one.
            let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
            if file.metadata()?.len() < self.len {
                return Err(io::Error::other(
                    "the file is shorter than what was committed",
                ));
            }
            // The old descriptor's lock must go before the new one can
            // take it (locks belong to the open file, not the process).
            self.file = file;
            lock(&self.file, &self.path)?;
            truncate_to(&mut self.file, self.len)?;
        }
        self.damaged = false;
        Ok(())
    }
}

/// Cuts `file` to `len` bytes, durably, and moves to its end.
fn truncate_to(file: &mut File, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    file.seek(SeekFrom::Start(len))?;
    file.sync_data()
}

/// Takes an exclusive advisory lock: two servers appending to one journal
/// would interleave their lines and reuse each other's ids.
fn lock(file: &File, path: &Path) -> io::Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "in use by another process (is another ssehub running with it?)",
        )),
        Err(fs::TryLockError::Error(e)) => {
            // Some file systems cannot lock; the journal still works.
            warn!(
                "journal {}: cannot lock it ({e}); continuing",
                path.display()
            );
            Ok(())
        }
    }
}

/// `PATH.tmp`: beside the journal, so the rename stays in one file system.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Syncs the folder holding `path`, so a rename in it survives a crash.
#[cfg(unix)]
fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Folders cannot be opened for syncing here; the rename is as durable as
/// the platform makes it.
#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// What reading a journal's bytes found.
#[derive(Debug)]
struct Scan {
    loaded: Loaded,
    /// Just past the last complete JSON line: the file is cut to this.
    good_end: usize,
    /// Complete lines before `good_end`.
    lines: usize,
}

/// The first line of a compacted journal.
fn header_line(last_id: u64, dropped: &[(std::sync::Arc<str>, u64)]) -> String {
    let mut line = format!("{{\"last_id\":{last_id}");
    if !dropped.is_empty() {
        line.push_str(",\"dropped\":{");
        for (n, (room, id)) in dropped.iter().enumerate() {
            if n > 0 {
                line.push(',');
            }
            line.push_str(&hub::json_string(room));
            line.push(':');
            line.push_str(&id.to_string());
        }
        line.push('}');
    }
    line.push('}');
    line
}

/// One line, classified.
enum Line {
    /// Only white space: ignored.
    Blank,
    /// Not JSON at all: bad in the middle, torn at the end.
    NotJson,
    /// `{"last_id":N,"dropped":{…}}`.
    Header(u64, Vec<(String, u64)>),
    /// A usable event.
    Record(Record),
    /// JSON but not an event; its id (if any) still counts as issued.
    Unusable(Option<u64>, &'static str),
}

fn scan(bytes: &[u8], path: &Path) -> Scan {
    let mut loaded = Loaded::default();
    let mut good_end = 0;
    let mut lines = 0;
    // Non-JSON lines since the last JSON one: bad if a JSON line follows,
    // torn if the file ends first.
    let mut suspects: Vec<usize> = Vec::new();
    let mut unfinished = false;
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let Some(at) = bytes[start..].iter().position(|&b| b == b'\n') else {
            unfinished = true;
            break;
        };
        let end = start + at;
        match parse_line(&bytes[start..end]) {
            Line::Blank => {}
            Line::NotJson => suspects.push(number),
            line => {
                for n in suspects.drain(..) {
                    warn!("journal {}: line {n} is not JSON; skipped", path.display());
                    loaded.bad_lines += 1;
                }
                match line {
                    Line::Header(id, dropped) => {
                        loaded.last_id = loaded.last_id.max(id);
                        loaded.dropped.extend(dropped);
                    }
                    Line::Record(record) => {
                        loaded.last_id = loaded.last_id.max(record.id());
                        loaded.events.push(record);
                    }
                    Line::Unusable(id, why) => {
                        warn!("journal {}: line {number}: {why}; skipped", path.display());
                        loaded.bad_lines += 1;
                        loaded.last_id = loaded.last_id.max(id.unwrap_or(0));
                    }
                    Line::Blank | Line::NotJson => unreachable!("handled above"),
                }
                good_end = end + 1;
                lines = number;
            }
        }
        start = end + 1;
    }
    loaded.torn_lines = suspects.len() + usize::from(unfinished);
    if loaded.torn_lines > 0 {
        let first = suspects.first().copied().unwrap_or(number);
        warn!(
            "journal {}: {} torn line(s) from line {first} on (an interrupted write): skipped, {} bytes cut off",
            path.display(),
            loaded.torn_lines,
            bytes.len() - good_end
        );
    }
    // Stable: of two lines with one id, the first written wins.
    loaded.events.sort_by_key(Record::id);
    let before = loaded.events.len();
    loaded.events.dedup_by_key(|r| r.id());
    let repeated = before - loaded.events.len();
    if repeated > 0 {
        warn!(
            "journal {}: {repeated} line(s) repeat an earlier id; skipped",
            path.display()
        );
        loaded.bad_lines += repeated;
    }
    Scan {
        loaded,
        good_end,
        lines,
    }
}

fn parse_line(line: &[u8]) -> Line {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Line::Blank;
    }
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return Line::NotJson;
    };
    let Value::Object(map) = value else {
        return Line::Unusable(None, "not a JSON object");
    };
    let id = map.get("id").and_then(Value::as_u64);
    if id.is_none() {
        if let Some(last) = map.get("last_id").and_then(Value::as_u64) {
            if last > MAX_ID {
                return Line::Unusable(None, "\"last_id\" beyond 2^53 - 1");
            }
            let dropped = map
                .get("dropped")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(room, id)| {
                    let id = id.as_u64().filter(|&id| id <= last)?;
                    hub::valid_room(room).then(|| (room.clone(), id))
                })
                .collect();
            return Line::Header(last, dropped);
        }
    }
    // Such an id would push the sequence where JavaScript loses precision
    // (and, near u64::MAX, overflow it): ignored rather than obeyed.
    let id = id.filter(|&id| id <= MAX_ID);
    match record(&map) {
        Ok(record) => Line::Record(record),
        Err(why) => Line::Unusable(id, why),
    }
}

/// Checks what a replayed frame depends on: an id in the sequence, a room
/// the hub accepts, an event name that cannot break the frame.
fn record(map: &Map<String, Value>) -> Result<Record, &'static str> {
    let text = |key: &str| map.get(key).and_then(Value::as_str);
    let id = map
        .get("id")
        .and_then(Value::as_u64)
        .filter(|&id| id > 0)
        .ok_or("no positive integer \"id\"")?;
    if id > MAX_ID {
        return Err("\"id\" beyond 2^53 - 1");
    }
    let room = text("room").ok_or("no string \"room\"")?;
    if !hub::valid_room(room) {
        return Err("invalid room name");
    }
    let time = map
        .get("time")
        .and_then(Value::as_u64)
        .ok_or("no integer \"time\"")?;
    let room = room.to_string();
    if let (Some(user), Some(text)) = (text("user"), text("text")) {
        let role = match map.get("role").and_then(Value::as_str) {
            None => None,
            Some("agent") => Some(Role::Agent),
            Some("customer") => Some(Role::Customer),
            Some(_) => return Err("\"role\" is neither agent nor customer"),
        };
        return Ok(Record::Message {
            id,
            room,
            user: user.to_string(),
            text: text.to_string(),
            time,
            role,
        });
    }
    if let (Some(event), Some(data)) = (text("event"), text("data")) {
        if sse::check_event_name(event).is_err() {
            return Err("invalid event name");
        }
        return Ok(Record::Event {
            id,
            room,
            event: event.to_string(),
            data: data.to_string(),
            time,
        });
    }
    Err("neither a message (user, text) nor an event (event, data)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A unique path under the temp folder, removed (with its `.tmp`) on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str) -> TempPath {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            TempPath(std::env::temp_dir().join(format!(
                "ssehub-journal-{}-{n}-{name}.jsonl",
                std::process::id()
            )))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
            let _ = fs::remove_file(tmp_path(&self.0));
        }
    }

    fn read(path: &Path) -> String {
        String::from_utf8(fs::read(path).unwrap()).unwrap()
    }

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|n| Arc::from(*n)).collect()
    }

    fn message(id: u64, room: &str, text: &str) -> String {
        format!(
            "{{\"id\":{id},\"room\":\"{room}\",\"user\":\"u\",\"text\":\"{text}\",\"time\":{id}}}"
        )
    }

    /// Publishes `count` messages to `room` on `hub` and journals them,
    /// committing every `batch`.
    fn publish(hub: &mut Hub, journal: &mut Journal, room: &str, count: usize, batch: usize) {
        for n in 0..count {
            let published = hub.publish_message(room, "u", &n.to_string(), n as u64);
            journal.append(&published.json);
            if (n + 1) % batch == 0 {
                journal.commit().unwrap();
            }
        }
        journal.commit().unwrap();
    }

    #[test]
    fn restored_hub_matches_the_live_one_byte_for_byte() {
        let path = TempPath::new("roundtrip");
        let (mut journal, loaded) = Journal::open(&path.0).unwrap();
        assert_eq!(loaded, Loaded::default());
        let mut live = Hub::new(3, 1000);
        let awkward = [
            "say \"hi\" \\ back",
            "two\nlines",
            "carriage\rreturn and\r\nCRLF",
            "unicode: é 漢字 🎉 \u{2028} \u{0} \t",
            "",
            "data: not a field\n\nid: 7",
        ];
        for (n, text) in awkward.iter().enumerate() {
            let time = 1_700_000_000_000 + n as u64;
            let message = live.publish_message("a", "ann \"x\"\n", text, time);
            journal.append(&message.json);
            let event = live.publish_event(["a", "b.c-d_9"][n % 2], "reading", text, time);
            journal.append(&event.json);
        }
        journal.commit().unwrap();
        drop(journal);

        let (_journal, loaded) = Journal::open(&path.0).unwrap();
        assert_eq!((loaded.torn_lines, loaded.bad_lines), (0, 0));
        assert_eq!(loaded.events.len(), 12);
        assert_eq!(loaded.last_id, 1012);
        assert_eq!(
            loaded.events[1],
            Record::Event {
                id: 1002,
                room: "a".into(),
                event: "reading".into(),
                data: awkward[0].into(),
                time: 1_700_000_000_000,
            }
        );
        let mut restored = Hub::new(3, 0);
        replay_into(&loaded, &mut restored);

        let (a, b) = (live.all_retained(), restored.all_retained());
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(
                (a.id, &a.room, &a.frame, &a.json),
                (b.id, &b.room, &b.frame, &b.json)
            );
        }
        for room in ["a", "b.c-d_9"] {
            assert_eq!(
                live.history_json(room, 0, None),
                restored.history_json(room, 0, None)
            );
        }
        assert_eq!(live.rooms_json(), restored.rooms_json());
        // Replay (gaps included: history 3 dropped events) is the same too.
        for last in [None, Some(0), Some(1003), Some(1009), Some(1012)] {
            let rooms = names(&["a", "b.c-d_9"]);
            let (mut x, mut y) = (Vec::new(), Vec::new());
            live.replay(&rooms, last, true, &mut x);
            restored.replay(&rooms, last, true, &mut y);
            assert_eq!(x, y, "replay after {last:?}");
        }
        assert_eq!(restored.last_id(), live.last_id());
        assert_eq!(
            restored.publish_event("a", "e", "x", 0).id,
            live.publish_event("a", "e", "x", 0).id
        );
    }

    #[test]
    fn group_commit_writes_nothing_until_commit() {
        let path = TempPath::new("group");
        let (mut journal, _) = Journal::open(&path.0).unwrap();
        assert!(!journal.has_pending());
        for id in 1..=50 {
            journal.append(&message(id, "a", "x"));
        }
        assert!(journal.has_pending());
        assert_eq!(fs::metadata(&path.0).unwrap().len(), 0);
        journal.commit().unwrap();
        assert!(!journal.has_pending());
        assert_eq!(journal.lines(), 50);
        assert_eq!(read(&path.0).lines().count(), 50);
        // An empty commit is free and harmless.
        journal.commit().unwrap();
        assert_eq!(journal.lines(), 50);
    }

    #[test]
    fn torn_last_line_is_skipped_and_cut_off() {
        let path = TempPath::new("torn");
        let good = format!("{}\n{}\n", message(1, "a", "one"), message(2, "a", "two"));
        for tail in [
            "{\"id\":3,\"room\":\"a\",\"us".to_string(),
            // Complete JSON but no line end: its sync never finished.
            message(3, "a", "three"),
            // Zeros from a file extended but never written.
            "\0\0\0\0\0\0".to_string(),
            // Garbage lines at the end, the last one unfinished.
            "garbage\n{\"id\":3".to_string(),
        ] {
            fs::write(&path.0, format!("{good}{tail}")).unwrap();
            let (mut journal, loaded) = Journal::open(&path.0).unwrap();
            assert_eq!(loaded.events.len(), 2, "tail {tail:?}");
            assert_eq!(loaded.last_id, 2);
            assert_eq!(loaded.bad_lines, 0);
            assert!(loaded.torn_lines >= 1);
            assert_eq!(read(&path.0), good, "cut back to the last good line");
            assert_eq!(journal.lines(), 2);
            journal.append(&message(3, "a", "new"));
            journal.commit().unwrap();
            drop(journal);
            let (_journal, loaded) = Journal::open(&path.0).unwrap();
            assert_eq!(
                (loaded.events.len(), loaded.torn_lines, loaded.bad_lines),
                (3, 0, 0)
            );
            assert_eq!(loaded.last_id, 3);
        }
    }

    /// A message's role comes back from the journal; a line with a role
    /// that is neither is skipped as bad, not read as a role-less message.
    #[test]
    fn roles_are_read_back_and_an_unknown_role_is_a_bad_line() {
        let path = TempPath::new("roles");
        let line = |id: u64, role: &str| {
            format!("{{\"id\":{id},\"room\":\"a\",\"user\":\"Sam\",\"text\":\"t\",\"time\":{id},\"role\":\"{role}\"}}")
        };
        let text = [line(1, "agent"), line(2, "customer"), line(3, "boss")].join("\n") + "\n";
        fs::write(&path.0, &text).unwrap();
        let (_journal, loaded) = Journal::open(&path.0).unwrap();
        let roles: Vec<Option<Role>> = loaded
            .events
            .iter()
            .map(|record| match record {
                Record::Message { role, .. } => *role,
                Record::Event { .. } => panic!("a message was read as an event"),
            })
            .collect();
        assert_eq!(roles, [Some(Role::Agent), Some(Role::Customer)]);
        assert_eq!(loaded.bad_lines, 1);
    }

    #[test]
    fn bad_lines_in_the_middle_are_skipped_and_kept() {
        let path = TempPath::new("bad");
        let text = [
            message(1, "a", "one"),
            "not json at all".into(),
            "".into(),
            message(2, "a", "two"),
            "{\"id\":\"x\",\"room\":\"a\"}".into(),
            "[1,2]".into(),
            // Usable but for its event name (a ':' would break the frame):
            // skipped, yet its id counts as issued.
            "{\"id\":9,\"room\":\"a\",\"event\":\"a:b\",\"data\":\"x\",\"time\":0}".into(),
            "{\"id\":4,\"room\":\"bad room\",\"user\":\"u\",\"text\":\"t\",\"time\":0}".into(),
            message(3, "a", "three"),
            message(2, "a", "again"),
            format!("{{\"last_id\":{}}}", MAX_ID + 1),
            message(MAX_ID + 1, "a", "too far"),
        ]
        .join("\n")
            + "\n";
        fs::write(&path.0, &text).unwrap();
        let (journal, loaded) = Journal::open(&path.0).unwrap();
        let ids: Vec<u64> = loaded.events.iter().map(Record::id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(
            loaded.events[1],
            Record::Message {
                id: 2,
                room: "a".into(),
                user: "u".into(),
                text: "two".into(),
                time: 2,
                role: None,
            },
            "the first line of an id wins"
        );
        assert_eq!((loaded.bad_lines, loaded.torn_lines), (8, 0));
        assert_eq!(loaded.last_id, 9);
        assert_eq!(read(&path.0), text, "a complete file is never cut");
        assert_eq!(journal.lines(), 12);
    }

    #[test]
    fn last_id_line_beats_the_events_ids() {
        let path = TempPath::new("lastid");
        let text = format!(
            "{{\"last_id\":500}}\n{}\n{}\n",
            message(10, "a", "x"),
            message(11, "b", "y")
        );
        fs::write(&path.0, text).unwrap();
        let (_journal, loaded) = Journal::open(&path.0).unwrap();
        assert_eq!((loaded.events.len(), loaded.last_id), (2, 500));
        let mut hub = Hub::new(10, 0);
        replay_into(&loaded, &mut hub);
        assert_eq!(hub.last_id(), 500);
        assert_eq!(hub.publish_event("a", "e", "z", 0).id, 501);
        assert_eq!(hub.all_retained().len(), 3);
    }

    #[test]
    fn compaction_keeps_the_retained_items_and_the_last_id() {
        let path = TempPath::new("compact");
        let (mut journal, _) = Journal::open(&path.0).unwrap();
        let mut hub = Hub::new(3, 0);
        publish(&mut hub, &mut journal, "a", MIN_COMPACT_LINES, 100);
        assert_eq!(journal.lines(), MIN_COMPACT_LINES);
        assert!(!journal.needs_compaction(3), "not past the minimum yet");
        publish(&mut hub, &mut journal, "b", 10, 100);
        assert!(journal.needs_compaction(3));
        assert!(
            !journal.needs_compaction(1000),
            "small against what is retained"
        );

        let retained = hub.all_retained();
        journal
            .compact(
                hub.last_id(),
                &hub.dropped_marks(),
                retained.iter().map(|r| r.json.clone()),
            )
            .unwrap();
        assert!(!tmp_path(&path.0).exists());
        assert_eq!(journal.lines(), 7);
        assert!(!journal.needs_compaction(3));
        // Room a dropped 1..=1021 and b 1025..=1031: kept for `gap`.
        let mut expected = String::from("{\"last_id\":1034,\"dropped\":{\"a\":1021,\"b\":1031}}\n");
        for r in &retained {
            expected.push_str(&r.json);
            expected.push('\n');
        }
        assert_eq!(read(&path.0), expected);

        // Appends go to the new file.
        publish(&mut hub, &mut journal, "a", 2, 100);
        assert_eq!(journal.lines(), 9);
        drop(journal);
        let (_journal, loaded) = Journal::open(&path.0).unwrap();
        assert_eq!((loaded.torn_lines, loaded.bad_lines), (0, 0));
        assert_eq!(loaded.last_id, 1036);
        let mut restored = Hub::new(3, 0);
        replay_into(&loaded, &mut restored);
        for room in ["a", "b"] {
            assert_eq!(
                restored.history_json(room, 0, None),
                hub.history_json(room, 0, None)
            );
        }
        assert_eq!(restored.last_id(), 1036);
        // A client that last saw 1000 (or 1026 in b) learns of the gap.
        assert_eq!(restored.dropped_marks(), hub.dropped_marks());
        for (room, last) in [("a", 1000), ("b", 1026)] {
            let rooms = [restored.room_name(room)];
            let (mut before, mut after) = (Vec::new(), Vec::new());
            hub.replay(&rooms, Some(last), true, &mut before);
            restored.replay(&rooms, Some(last), true, &mut after);
            let after = String::from_utf8(after).unwrap();
            assert!(after.starts_with("event: gap\n"), "{after}");
            assert_eq!(after, String::from_utf8(before).unwrap());
        }
    }

    #[test]
    fn compaction_keeps_ids_going_when_nothing_is_retained() {
        let path = TempPath::new("compact-empty");
        let (mut journal, _) = Journal::open(&path.0).unwrap();
        journal
            .compact(77, &[], std::iter::empty::<&str>())
            .unwrap();
        assert_eq!(read(&path.0), "{\"last_id\":77}\n");
        drop(journal);
        let (_journal, loaded) = Journal::open(&path.0).unwrap();
        assert_eq!((loaded.events.len(), loaded.last_id), (0, 77));
    }

    #[test]
    fn pending_lines_survive_a_compaction() {
        let path = TempPath::new("compact-pending");
        let (mut journal, _) = Journal::open(&path.0).unwrap();
        journal.append(&message(1, "a", "x"));
        journal.commit().unwrap();
        journal.append(&message(2, "a", "held"));
        journal.compact(2, &[], [message(1, "a", "x")]).unwrap();
        assert!(journal.has_pending());
        assert_eq!(
            read(&path.0),
            format!("{{\"last_id\":2}}\n{}\n", message(1, "a", "x"))
        );
        journal.commit().unwrap();
        assert_eq!(journal.lines(), 3);
        drop(journal);
        let (_journal, loaded) = Journal::open(&path.0).unwrap();
        let ids: Vec<u64> = loaded.events.iter().map(Record::id).collect();
        assert_eq!((ids, loaded.bad_lines), (vec![1, 2], 0));
    }

    #[test]
    fn open_removes_a_stale_tmp_file() {
        let path = TempPath::new("stale");
        fs::write(tmp_path(&path.0), "{\"last_id\":1}\n{\"id\":").unwrap();
        let (_journal, loaded) = Journal::open(&path.0).unwrap();
        assert_eq!(loaded, Loaded::default());
        assert!(!tmp_path(&path.0).exists());
    }

    #[test]
    fn open_errors_are_errors_not_panics() {
        let missing = std::env::temp_dir()
            .join(format!("ssehub-no-such-dir-{}", std::process::id()))
            .join("journal.jsonl");
        let err = Journal::open(&missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("journal.jsonl"), "{err}");
        // A folder is not a journal.
        assert!(Journal::open(&std::env::temp_dir()).is_err());
    }

    #[test]
    fn a_journal_in_use_is_refused() {
        let path = TempPath::new("locked");
        let (_journal, _) = Journal::open(&path.0).unwrap();
        let err = Journal::open(&path.0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy, "{err}");
    }

    #[test]
    fn commits_work_after_the_folder_is_removed() {
        let dir = std::env::temp_dir().join(format!(
            "ssehub-journal-dir-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&dir).unwrap();
        let (mut journal, _) = Journal::open(&dir.join("j.jsonl")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        journal.append(&message(1, "a", "x"));
        journal.commit().unwrap();
        assert_eq!(journal.lines(), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_is_an_error_and_drops_the_pending_lines() {
        let path = TempPath::new("full");
        let (mut journal, _) = Journal::open(&path.0).unwrap();
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        journal.file = OpenOptions::new().write(true).open("/dev/full").unwrap();
        journal.append(&message(1, "a", "x"));
        let err = journal.commit().unwrap_err();
        assert!(
            err.to_string().contains(&*path.0.to_string_lossy()),
            "{err}"
        );
        assert!(!journal.has_pending());
        assert_eq!(journal.lines(), 0);
        // The next commit reopens the real file and carries on.
        journal.append(&message(2, "a", "y"));
        journal.commit().unwrap();
        assert_eq!(read(&path.0), format!("{}\n", message(2, "a", "y")));
    }

    #[test]
    fn a_failed_descriptor_is_replaced_by_a_fresh_one() {
        let path = TempPath::new("reopen");
        let (mut journal, _) = Journal::open(&path.0).unwrap();
        journal.append(&message(1, "a", "x"));
        journal.commit().unwrap();
        // A descriptor that cannot write (nor be cut back).
        journal.file = File::open(&path.0).unwrap();
        journal.append(&message(2, "a", "lost"));
        assert!(journal.commit().is_err());
        journal.append(&message(3, "a", "z"));
        journal.commit().unwrap();
        drop(journal);
        let (_journal, loaded) = Journal::open(&path.0).unwrap();
        let ids: Vec<u64> = loaded.events.iter().map(Record::id).collect();
        assert_eq!(
            (ids, loaded.bad_lines, loaded.torn_lines),
            (vec![1, 3], 0, 0)
        );
    }

    #[test]
    fn a_partial_write_is_cut_back() {
        let path = TempPath::new("partial");
        let (mut journal, _) = Journal::open(&path.0).unwrap();
        journal.append(&message(1, "a", "x"));
        journal.commit().unwrap();
        // As if a write had stopped half-way through a line.
        OpenOptions::new()
            .append(true)
            .open(&path.0)
            .unwrap()
            .write_all(b"{\"id\":2,\"ro")
            .unwrap();
        journal.cut_back();
        journal.append(&message(3, "a", "z"));
        journal.commit().unwrap();
        assert_eq!(
            read(&path.0),
            format!("{}\n{}\n", message(1, "a", "x"), message(3, "a", "z"))
        );
    }
}

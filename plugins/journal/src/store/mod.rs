//! The message store: an in-memory index over the journal file (`file.rs`).
//! Plain `std::fs`, no WIT types: the tests run it on the build machine.
//!
//! Durability: `enqueue`, `nack`, `dead_letter` and `requeue` write their
//! records and `sync_data` before returning; a batch is one write and one
//! sync. `lease` and `ack` write theirs without syncing: the next synced
//! write makes them durable too, and an ack lost in a crash only means the
//! message is delivered again, which at-least-once delivery allows. (A sync
//! per ack made acknowledging the bottleneck of a busy inbox.)
//!
//! `enqueue` can store messages already leased (their `put` record carries
//! the lease), for a host that delivers them from its memory at once.
//!
//! Leases live in memory. While the store is open a lease runs out by time
//! (`now >= leased-at + lease-ms`, noticed by the next `lease` call), and
//! when the store is opened again every lease is gone: leased messages are
//! pending again, keeping the attempts their lease records counted (a
//! crash can lose the last, unsynced increments).
//!
//! Memory: only pending and leased messages keep their body, source and
//! metadata in memory. A done or dead message keeps its place in the index
//! (id, status, times, where its `put` record is) and is read back from the
//! file when asked for, so the finished receipts a busy inbox keeps for the
//! retention period cost tens of bytes each, whatever their size. Opening
//! reads the file one record at a time. Done messages beyond `max_done`
//! are forgotten early, oldest first, so memory stays bounded whatever the
//! traffic: this store must never grow until the host's memory limit traps it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::FxHashMap;
use std::path::Path;
use std::sync::Arc;

use crate::file::Journal;
use crate::record::{At, Op, Status};

mod compact;

use compact::SLACK;

#[derive(Debug, PartialEq)]
pub enum Error {
    /// The caller asked for something that cannot be done (unknown id,
    /// wrong state).
    Reject(String),
    /// The disk failed us.
    Unavailable(String),
    /// The file is not a journal, or a record in it is unreadable.
    Other(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Msg {
    pub body: String,
    pub source: String,
    pub metadata: Vec<(String, String)>,
}

/// A message as the store's callers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: String,
    pub msg: Msg,
    pub status: Status,
    pub attempts: u32,
    pub enqueued_at: u64,
    pub not_before: u64,
    pub last_error: Option<String>,
    /// While leased: when the lease runs out.
    pub lease_until: u64,
    /// While done or dead: since when.
    pub finished_at: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub pending: u64,
    pub leased: u64,
    pub done: u64,
    pub dead: u64,
    pub skipped: u64,
}

/// What `open` found, for the log.
#[derive(Debug, Default, PartialEq)]
pub struct OpenReport {
    pub records: usize,
    /// Bytes cut off the end of the file.
    pub cut_bytes: u64,
    pub skipped: u64,
    /// Records naming a message the journal does not have (ignored).
    pub orphans: u64,
    pub created: bool,
}

/// One message in the index.
struct Slot {
    id: Arc<str>,
    status: Status,
    attempts: u32,
    enqueued_at: u64,
    not_before: u64,
    lease_until: u64,
    finished_at: u64,
    last_error: Option<Box<str>>,
    /// Where its `put` record is in the file (its only one: a message is
    /// put once, and a rewrite puts each message once in the new file).
    put: At,
    /// Where its `put` record is in the file a rewrite under way is writing,
    /// once it is there (see `compact.rs`).
    moved: Option<At>,
    /// While pending or leased; otherwise read back from `put`.
    msg: Option<Box<Msg>>,
}

/// The in-memory state, apart from the file so replaying one can fill the other.
#[derive(Default)]
struct Index {
    /// By enqueue order.
    slots: BTreeMap<u64, Slot>,
    ids: FxHashMap<Arc<str>, u64>,
    /// Pending messages, by enqueue order.
    pending: BTreeSet<u64>,
    /// Leased messages by (lease end, enqueue order).
    leased: BTreeSet<(u64, u64)>,
    counts: [u64; 4],
    next_seq: u64,
    /// The size of the `put` records of the messages here: what a rewrite
    /// of the file would write.
    live_bytes: u64,
}

pub struct Store {
    file: Journal,
    index: Index,
    nonce: u64,
    counter: u64,
    skipped: u64,
    max_done: u64,
    /// [`SLACK`], but for the tests.
    rewrite_slack: u64,
    /// A compaction under way, moved on a step at a time.
    rewriting: Option<compact::Rewriting>,
    /// How much a step copies: [`compact::STEP`], but for the tests.
    step_bytes: u64,
    /// Why the last compaction was given up, for the next `compact` to report.
    rewrite_failed: Option<Error>,
    /// Done messages forgotten early (see `trim_done`), not yet reported.
    trimmed: u64,
}

/// Done messages kept by default: about 200 bytes of memory and one `put`
/// record on disk each.
pub const DEFAULT_MAX_DONE: u64 = 200_000;

impl Index {
    /// Moves `seq` to `status`, keeping counts and indexes right. A message
    /// that is finished lets go of its body.
    fn set_status(&mut self, seq: u64, status: Status, lease_until: u64) {
        let slot = self.slots.get_mut(&seq).expect("indexed slot");
        match slot.status {
            Status::Pending => {
                self.pending.remove(&seq);
            }
            Status::Leased => {
                self.leased.remove(&(slot.lease_until, seq));
            }
            Status::Done | Status::Dead => {}
        }
        self.counts[slot.status.index()] -= 1;
        slot.status = status;
        slot.lease_until = if status == Status::Leased {
            lease_until
        } else {
            0
        };
        self.counts[status.index()] += 1;
        match status {
            Status::Pending => {
                self.pending.insert(seq);
            }
            Status::Leased => {
                self.leased.insert((lease_until, seq));
            }
            Status::Done | Status::Dead => slot.msg = None,
        }
    }

    /// Applies a journaled op, its record at `offset`. Ops are checked
    /// before they are written, so replay applies them as they come.
    /// Returns the message's place in the index; `None` when the op names
    /// an unknown message.
    fn apply(&mut self, op: Op, at: At) -> Option<u64> {
        if let Op::Put {
            id,
            body,
            source,
            meta,
            t,
            st,
            n,
            nb,
            err,
            fin,
            lu,
        } = op
        {
            let slot = |id: Arc<str>| Slot {
                id,
                status: Status::Pending,
                attempts: n,
                enqueued_at: t,
                not_before: nb,
                lease_until: 0,
                finished_at: fin,
                last_error: err.map(String::into_boxed_str),
                put: at,
                moved: None,
                msg: Some(Box::new(Msg {
                    body,
                    source,
                    metadata: meta,
                })),
            };
            let seq = match self.ids.get(id.as_str()) {
                Some(&seq) => {
                    self.set_status(seq, Status::Pending, 0);
                    let old = &self.slots[&seq];
                    self.live_bytes -= old.put.len;
                    let id = old.id.clone();
                    self.slots.insert(seq, slot(id));
                    seq
                }
                None => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let id: Arc<str> = id.into();
                    self.ids.insert(id.clone(), seq);
                    self.slots.insert(seq, slot(id));
                    self.counts[Status::Pending.index()] += 1;
                    self.pending.insert(seq);
                    seq
                }
            };
            self.live_bytes += at.len;
            self.set_status(seq, st, lu);
            return Some(seq);
        }
        let &seq = self.ids.get(op.id())?;
        match op {
            Op::Put { .. } => unreachable!(),
            Op::Lease { until, .. } => {
                self.set_status(seq, Status::Leased, until);
                let s = self.slots.get_mut(&seq).unwrap();
                s.attempts = s.attempts.saturating_add(1);
            }
            Op::Ack { t, .. } => {
                self.set_status(seq, Status::Done, 0);
                self.slots.get_mut(&seq).unwrap().finished_at = t;
            }
            Op::Nack { nb, err, .. } => {
                self.set_status(seq, Status::Pending, 0);
                let s = self.slots.get_mut(&seq).unwrap();
                s.not_before = nb;
                s.last_error = Some(err.into_boxed_str());
                s.finished_at = 0;
            }
            Op::Dead { t, err, .. } => {
                self.set_status(seq, Status::Dead, 0);
                let s = self.slots.get_mut(&seq).unwrap();
                s.last_error = Some(err.into_boxed_str());
                s.finished_at = t;
            }
            Op::Requeue { t, .. } => {
                self.set_status(seq, Status::Pending, 0);
                let s = self.slots.get_mut(&seq).unwrap();
                s.attempts = 0;
                s.not_before = t;
                s.finished_at = 0;
            }
        }
        Some(seq)
    }

    /// Takes done message `seq` out of memory.
    fn forget(&mut self, seq: u64) {
        let slot = self.slots.remove(&seq).expect("indexed slot");
        self.ids.remove(&slot.id);
        self.counts[Status::Done.index()] -= 1;
        self.live_bytes -= slot.put.len;
    }

    fn status_of(&self, seq: u64) -> Status {
        self.slots[&seq].status
    }
}

impl Store {
    /// Opens (creating it if need be) the journal in `dir` and replays it.
    /// `nonce` makes this instance's ids unique: pass fresh randomness.
    pub fn open(dir: &Path, nonce: u64) -> Result<(Store, OpenReport), Error> {
        let mut index = Index::default();
        let mut orphans = 0;
        let (file, opened) = Journal::open(dir, |op, at| {
            if index.apply(op, at).is_none() {
                orphans += 1;
            }
        })?;
        // Leases do not outlive the instance that took them.
        let leased: Vec<u64> = index.leased.iter().map(|&(_, seq)| seq).collect();
        for seq in leased {
            index.set_status(seq, Status::Pending, 0);
        }
        let report = OpenReport {
            records: opened.records,
            cut_bytes: opened.cut_bytes,
            skipped: opened.skipped,
            orphans,
            created: opened.created,
        };
        let old_format = opened.old_format;
        let mut store = Store {
            file,
            index,
            nonce,
            counter: 0,
            skipped: opened.skipped,
            rewrite_slack: SLACK,
            rewriting: None,
            step_bytes: compact::STEP,
            rewrite_failed: None,
            max_done: DEFAULT_MAX_DONE,
            trimmed: 0,
        };
        if old_format {
            // Written by an earlier build: appends go in the current format only.
            store.rewrite()?;
        }
        // A file written under a higher `max_done` (or not compacted for a
        // while) may hold more: keep memory as bounded as it was.
        store.trim_done();
        Ok((store, report))
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn max_done(&self) -> u64 {
        self.max_done
    }

    /// Keep at most `max` done messages (at least one).
    pub fn set_max_done(&mut self, max: u64) {
        self.max_done = max.max(1);
        self.trim_done();
    }

    fn new_id(&mut self, now_ms: u64) -> String {
        self.counter += 1;
        format!(
            "{now_ms:013}-{:012x}-{:x}",
            self.nonce & 0xFFFF_FFFF_FFFF,
            self.counter
        )
    }

    /// Journals `ops` (one write, one sync if `sync`), then applies them.
    fn commit(&mut self, ops: Vec<Op>, sync: bool) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut spans = Vec::with_capacity(ops.len());
        for op in &ops {
            let start = buf.len() as u64;
            crate::record::encode(op, &mut buf);
            spans.push((start, buf.len() as u64 - start));
        }
        let base = self.file.append(&buf, sync)?;
        // Only a compaction under way needs to know what was applied.
        let following = self.rewriting.is_some();
        let mut applied = Vec::new();
        for (op, (start, len)) in ops.into_iter().zip(spans) {
            let at = At {
                offset: base + start,
                len,
            };
            let is_put = matches!(op, Op::Put { .. });
            let seq = self.index.apply(op, at);
            if following {
                applied.push(compact::Applied {
                    seq,
                    is_put,
                    start: start as usize,
                    len: len as usize,
                });
            }
        }
        // A compaction under way gets the same records, and moves on a step.
        self.follow_commit(&buf, &applied);
        Ok(())
    }

    fn seq_of(&self, id: &str) -> Result<u64, Error> {
        self.index
            .ids
            .get(id)
            .copied()
            .ok_or_else(|| Error::Reject(format!("no message with id `{id}`")))
    }

    /// The message as callers see it, its body read back from the file if
    /// it is not in memory.
    fn entry(&mut self, seq: u64) -> Result<Entry, Error> {
        let slot = &self.index.slots[&seq];
        let msg = match &slot.msg {
            Some(msg) => Msg::clone(msg),
            None => {
                let op = self.file.read_at(slot.put.offset)?;
                self.msg_of(seq, op)?
            }
        };
        Ok(self.entry_with(seq, msg))
    }

    /// `entry` for many messages. Past a few bodies to read back, one pass
    /// over the file beats a seek and a read for each.
    fn entries(&mut self, seqs: &[u64]) -> Result<Vec<Entry>, Error> {
        const SEEKS: usize = 64;
        let on_disk: HashMap<u64, usize> = seqs
            .iter()
            .enumerate()
            .filter_map(|(i, seq)| {
                let slot = &self.index.slots[seq];
                slot.msg.is_none().then_some((slot.put.offset, i))
            })
            .collect();
        if on_disk.len() <= SEEKS {
            return seqs.iter().map(|&seq| self.entry(seq)).collect();
        }
        let mut read: Vec<Option<Op>> = vec![None; seqs.len()];
        self.file.for_each(|op, at| {
            if let Some(&i) = on_disk.get(&at.offset) {
                read[i] = Some(op);
            }
        })?;
        seqs.iter()
            .zip(read)
            .map(|(&seq, op)| {
                let msg = match (&self.index.slots[&seq].msg, op) {
                    (Some(msg), _) => Msg::clone(msg),
                    (None, Some(op)) => self.msg_of(seq, op)?,
                    (None, None) => return Err(self.misplaced(seq)),
                };
                Ok(self.entry_with(seq, msg))
            })
            .collect()
    }

    /// The message in `op`, read at message `seq`'s `put` offset.
    fn msg_of(&self, seq: u64, op: Op) -> Result<Msg, Error> {
        match op {
            Op::Put {
                id,
                body,
                source,
                meta,
                ..
            } if *id == *self.index.slots[&seq].id => Ok(Msg {
                body,
                source,
                metadata: meta,
            }),
            _ => Err(self.misplaced(seq)),
        }
    }

    fn misplaced(&self, seq: u64) -> Error {
        Error::Other(format!(
            "{}: the record of message `{}` is not where the index says",
            self.file.path().display(),
            self.index.slots[&seq].id
        ))
    }

    fn entry_with(&self, seq: u64, msg: Msg) -> Entry {
        let slot = &self.index.slots[&seq];
        Entry {
            id: slot.id.to_string(),
            msg,
            status: slot.status,
            attempts: slot.attempts,
            enqueued_at: slot.enqueued_at,
            not_before: slot.not_before,
            last_error: slot.last_error.as_deref().map(str::to_string),
            lease_until: slot.lease_until,
            finished_at: slot.finished_at,
        }
    }

    /// Stores `messages`; the first `lease_first` of them already leased
    /// for `lease_ms` (one attempt counted), the rest pending.
    pub fn enqueue(
        &mut self,
        messages: Vec<Msg>,
        lease_first: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<String>, Error> {
        let mut ids = Vec::with_capacity(messages.len());
        let mut ops = Vec::with_capacity(messages.len());
        let until = now_ms.saturating_add(lease_ms);
        for (i, msg) in messages.into_iter().enumerate() {
            let id = self.new_id(now_ms);
            ids.push(id.clone());
            let leased = (i as u64) < u64::from(lease_first);
            ops.push(Op::Put {
                id,
                body: msg.body,
                source: msg.source,
                meta: msg.metadata,
                t: now_ms,
                st: if leased {
                    Status::Leased
                } else {
                    Status::Pending
                },
                n: u32::from(leased),
                nb: now_ms,
                err: None,
                fin: 0,
                lu: if leased { until } else { 0 },
            });
        }
        self.commit(ops, true)?;
        Ok(ids)
    }

    /// Leases up to `max` pending messages whose `not_before` has passed, in
    /// enqueue order. Leases that ran out are pending again first.
    pub fn lease(&mut self, max: u32, lease_ms: u64, now_ms: u64) -> Result<Vec<Entry>, Error> {
        let index = &mut self.index;
        let expired: Vec<u64> = index
            .leased
            .range(..(now_ms.saturating_add(1), 0))
            .map(|&(_, seq)| seq)
            .collect();
        for seq in expired {
            index.set_status(seq, Status::Pending, 0);
        }
        let chosen: Vec<u64> = index
            .pending
            .iter()
            .copied()
            .filter(|seq| index.slots[seq].not_before <= now_ms)
            .take(max as usize)
            .collect();
        // Entries first: a requeued message's body is read back from the
        // file, and one that cannot be read is not leased.
        let entries = self.entries(&chosen)?;
        let until = now_ms.saturating_add(lease_ms);
        let ops = entries
            .iter()
            .map(|e| Op::Lease {
                id: e.id.clone(),
                t: now_ms,
                until,
            })
            .collect();
        self.commit(ops, false)?;
        // Leased now: bodies read back stay in memory while it is out, and
        // the entries say what the lease made of them.
        Ok(chosen
            .iter()
            .zip(entries)
            .map(|(seq, mut e)| {
                let slot = self.index.slots.get_mut(seq).unwrap();
                if slot.msg.is_none() {
                    slot.msg = Some(Box::new(e.msg.clone()));
                }
                (e.status, e.attempts, e.lease_until) =
                    (slot.status, slot.attempts, slot.lease_until);
                e
            })
            .collect())
    }

    /// Done. Acknowledging a done message again is a no-op.
    pub fn ack(&mut self, id: &str, now_ms: u64) -> Result<(), Error> {
        let seq = self.seq_of(id)?;
        if self.index.status_of(seq) == Status::Done {
            return Ok(());
        }
        self.commit(
            vec![Op::Ack {
                id: id.to_string(),
                t: now_ms,
            }],
            false,
        )?;
        self.trim_done();
        Ok(())
    }

    /// `ack` for many messages in one write; unknown or done ids are skipped.
    pub fn ack_many(&mut self, ids: &[String], now_ms: u64) -> Result<(), Error> {
        let ops: Vec<Op> = ids
            .iter()
            .filter(|id| {
                self.index
                    .ids
                    .get(id.as_str())
                    .is_some_and(|seq| self.index.status_of(*seq) != Status::Done)
            })
            .map(|id| Op::Ack {
                id: id.clone(),
                t: now_ms,
            })
            .collect();
        self.commit(ops, false)?;
        self.trim_done();
        Ok(())
    }

    /// Pending again after `retry_after_ms`; only for a pending or leased message.
    pub fn nack(
        &mut self,
        id: &str,
        retry_after_ms: u64,
        error: &str,
        now_ms: u64,
    ) -> Result<(), Error> {
        let seq = self.seq_of(id)?;
        let status = self.index.status_of(seq);
        if matches!(status, Status::Done | Status::Dead) {
            return Err(Error::Reject(format!(
                "message `{id}` is {}: nothing to retry",
                status.name()
            )));
        }
        let nb = now_ms.saturating_add(retry_after_ms);
        self.commit(
            vec![Op::Nack {
                id: id.to_string(),
                t: now_ms,
                nb,
                err: error.to_string(),
            }],
            true,
        )
    }

    /// Dead. A dead message stays dead (no-op); a done one cannot die.
    pub fn dead_letter(&mut self, id: &str, reason: &str, now_ms: u64) -> Result<(), Error> {
        let seq = self.seq_of(id)?;
        match self.index.status_of(seq) {
            Status::Dead => Ok(()),
            Status::Done => Err(Error::Reject(format!("message `{id}` is done"))),
            Status::Pending | Status::Leased => self.commit(
                vec![Op::Dead {
                    id: id.to_string(),
                    t: now_ms,
                    err: reason.to_string(),
                }],
                true,
            ),
        }
    }

    /// A done or dead message pending again, attempts reset. Its body stays
    /// on disk until it is leased.
    pub fn requeue(&mut self, id: &str, now_ms: u64) -> Result<(), Error> {
        let seq = self.seq_of(id)?;
        let status = self.index.status_of(seq);
        if matches!(status, Status::Pending | Status::Leased) {
            return Err(Error::Reject(format!(
                "message `{id}` is {}: only done or dead ones are requeued",
                status.name()
            )));
        }
        self.commit(
            vec![Op::Requeue {
                id: id.to_string(),
                t: now_ms,
            }],
            true,
        )
    }

    /// Messages with `status`, in enqueue order.
    pub fn list(&mut self, status: Status, limit: u32) -> Result<Vec<Entry>, Error> {
        let limit = limit as usize;
        let seqs: Vec<u64> = match status {
            Status::Pending => self.index.pending.iter().take(limit).copied().collect(),
            _ => self
                .index
                .slots
                .iter()
                .filter(|(_, s)| s.status == status)
                .take(limit)
                .map(|(&seq, _)| seq)
                .collect(),
        };
        self.entries(&seqs)
    }

    pub fn get(&mut self, id: &str) -> Result<Option<Entry>, Error> {
        match self.index.ids.get(id) {
            Some(&seq) => self.entry(seq).map(Some),
            None => Ok(None),
        }
    }

    pub fn stats(&self) -> Stats {
        let counts = &self.index.counts;
        Stats {
            pending: counts[Status::Pending.index()],
            leased: counts[Status::Leased.index()],
            done: counts[Status::Done.index()],
            dead: counts[Status::Dead.index()],
            skipped: self.skipped,
        }
    }

    /// How many done messages were forgotten early since the last call.
    pub fn take_trimmed(&mut self) -> u64 {
        std::mem::take(&mut self.trimmed)
    }

    /// Forgets the oldest done messages while there are more than
    /// `max_done` (a tenth more at once, so this is not paid on every ack).
    fn trim_done(&mut self) {
        let done = self.index.counts[Status::Done.index()];
        if done <= self.max_done {
            return;
        }
        let excess = done - self.max_done + self.max_done / 10;
        let oldest: Vec<u64> = self
            .index
            .slots
            .iter()
            .filter(|(_, s)| s.status == Status::Done)
            .take(excess as usize)
            .map(|(&seq, _)| seq)
            .collect();
        for &seq in &oldest {
            self.index.forget(seq);
        }
        self.trimmed += oldest.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::FILE_NAME;
    use crate::record::{self, MAGIC};
    use std::fs;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub(super) struct TempDir(pub(super) PathBuf);

    impl TempDir {
        pub(super) fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "journal-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        pub(super) fn file(&self) -> PathBuf {
            self.0.join(FILE_NAME)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(super) fn msg(body: &str) -> Msg {
        Msg {
            body: body.to_string(),
            source: "inbox".to_string(),
            metadata: vec![("k".into(), "v".into())],
        }
    }

    pub(super) fn open(dir: &TempDir) -> (Store, OpenReport) {
        Store::open(&dir.0, 7).unwrap()
    }

    pub(super) fn bodies(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.msg.body.as_str()).collect()
    }

    #[test]
    fn a_new_store_is_empty_and_starts_with_the_magic() {
        let dir = TempDir::new();
        let (store, report) = open(&dir);
        assert!(report.created);
        assert_eq!(store.stats(), Stats::default());
        assert_eq!(fs::read(dir.file()).unwrap(), MAGIC);
    }

    #[test]
    fn enqueue_lease_ack_and_replay() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store
            .enqueue(vec![msg("1"), msg("2"), msg("3")], 0, 0, 1000)
            .unwrap();
        assert_eq!(ids.len(), 3);
        assert!(ids[0] != ids[1] && ids[1] != ids[2]);
        assert!(ids[0].starts_with("0000000001000-"));

        let leased = store.lease(2, 500, 1000).unwrap();
        assert_eq!(bodies(&leased), ["1", "2"]);
        assert!(
            leased
                .iter()
                .all(|e| e.status == Status::Leased && e.attempts == 1)
        );
        store.ack(&ids[0], 1100).unwrap();
        store.ack(&ids[0], 1200).unwrap(); // idempotent
        assert_eq!(
            store.stats(),
            Stats {
                pending: 1,
                leased: 1,
                done: 1,
                dead: 0,
                skipped: 0
            }
        );

        drop(store);
        let (mut store, report) = open(&dir);
        assert_eq!(report.skipped, 0);
        // The lease on "2" did not survive; its attempt did.
        assert_eq!(
            store.stats(),
            Stats {
                pending: 2,
                leased: 0,
                done: 1,
                dead: 0,
                skipped: 0
            }
        );
        let two = store.get(&ids[1]).unwrap().unwrap();
        assert_eq!((two.status, two.attempts), (Status::Pending, 1));
        let one = store.get(&ids[0]).unwrap().unwrap();
        assert_eq!((one.status, one.finished_at), (Status::Done, 1100));
        assert_eq!(one.msg, msg("1"));
        assert_eq!(
            bodies(&store.list(Status::Pending, 10).unwrap()),
            ["2", "3"]
        );
    }

    #[test]
    fn ids_differ_across_instances_at_the_same_millisecond() {
        let a = TempDir::new();
        let b = TempDir::new();
        let (mut sa, _) = Store::open(&a.0, 1).unwrap();
        let (mut sb, _) = Store::open(&b.0, 2).unwrap();
        assert_ne!(
            sa.enqueue(vec![msg("x")], 0, 0, 5).unwrap(),
            sb.enqueue(vec![msg("x")], 0, 0, 5).unwrap()
        );
    }

    #[test]
    fn lease_skips_delayed_messages_and_takes_back_expired_leases() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store
            .enqueue(vec![msg("a"), msg("b"), msg("c")], 0, 0, 0)
            .unwrap();
        assert_eq!(bodies(&store.lease(1, 100, 10).unwrap()), ["a"]);
        store.nack(&ids[0], 1000, "busy", 20).unwrap();
        let a = store.get(&ids[0]).unwrap().unwrap();
        assert_eq!(
            (a.status, a.not_before, a.last_error.as_deref()),
            (Status::Pending, 1020, Some("busy"))
        );
        // "a" waits until 1020.
        assert_eq!(bodies(&store.lease(10, 100, 30).unwrap()), ["b", "c"]);
        assert!(store.lease(10, 100, 40).unwrap().is_empty());
        // The leases of b and c run out at 130.
        assert!(store.lease(10, 100, 129).unwrap().is_empty());
        let again = store.lease(10, 100, 130).unwrap();
        assert_eq!(bodies(&again), ["b", "c"]);
        assert!(again.iter().all(|e| e.attempts == 2));
        // At 1020, all three: "a" first (enqueue order).
        let all = store.lease(10, 100, 1020).unwrap();
        assert_eq!(bodies(&all), ["a", "b", "c"]);
        assert_eq!(
            all.iter().map(|e| e.attempts).collect::<Vec<_>>(),
            [2, 3, 3]
        );
    }

    #[test]
    fn ack_many_acknowledges_in_one_write_and_skips_unknown_ids() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store
            .enqueue(vec![msg("a"), msg("b"), msg("c")], 0, 0, 0)
            .unwrap();
        store.lease(3, 1000, 1).unwrap();
        store.ack(&ids[0], 2).unwrap();
        let batch = vec![ids[0].clone(), ids[1].clone(), "nope".to_string()];
        store.ack_many(&batch, 3).unwrap();
        assert_eq!(store.get(&ids[1]).unwrap().unwrap().status, Status::Done);
        assert_eq!(store.get(&ids[2]).unwrap().unwrap().status, Status::Leased);
        drop(store);
        let (store, _) = open(&dir);
        assert_eq!(store.stats().done, 2);
    }

    #[test]
    fn dead_letter_requeue_and_their_rules() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store.enqueue(vec![msg("a"), msg("b")], 0, 0, 0).unwrap();
        store.lease(1, 100, 1).unwrap();
        store.dead_letter(&ids[0], "too many attempts", 2).unwrap();
        store.dead_letter(&ids[0], "again", 3).unwrap();
        assert_eq!(
            store.get(&ids[0]).unwrap().unwrap().last_error.as_deref(),
            Some("too many attempts")
        );
        assert!(matches!(
            store.nack(&ids[0], 0, "x", 4),
            Err(Error::Reject(_))
        ));
        assert!(matches!(store.requeue(&ids[1], 4), Err(Error::Reject(_))));
        assert!(matches!(store.ack("nope", 4), Err(Error::Reject(_))));
        assert_eq!(bodies(&store.list(Status::Dead, 10).unwrap()), ["a"]);

        store.requeue(&ids[0], 5).unwrap();
        let a = store.get(&ids[0]).unwrap().unwrap();
        assert_eq!(
            (a.status, a.attempts, a.not_before),
            (Status::Pending, 0, 5)
        );
        store.ack(&ids[1], 6).unwrap();
        assert!(matches!(
            store.dead_letter(&ids[1], "x", 7),
            Err(Error::Reject(_))
        ));
        store.requeue(&ids[1], 8).unwrap();

        drop(store);
        let (mut store, _) = open(&dir);
        assert_eq!(
            store.stats(),
            Stats {
                pending: 2,
                leased: 0,
                done: 0,
                dead: 0,
                skipped: 0
            }
        );
        assert_eq!(store.get(&ids[0]).unwrap().unwrap().attempts, 0);
    }

    #[test]
    fn a_torn_tail_is_cut_counted_and_the_store_goes_on() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store.enqueue(vec![msg("a"), msg("b")], 0, 0, 1).unwrap();
        drop(store);
        let good = fs::read(dir.file()).unwrap();
        // A crash in the middle of writing the next record.
        let mut torn = good.clone();
        record::encode(
            &Op::Ack {
                id: ids[0].clone(),
                t: 2,
            },
            &mut torn,
        );
        torn.truncate(torn.len() - 3);
        fs::write(dir.file(), &torn).unwrap();

        let (mut store, report) = open(&dir);
        assert_eq!(report.skipped, 1);
        assert_eq!(report.cut_bytes, (torn.len() - good.len()) as u64);
        assert_eq!(store.stats().skipped, 1);
        assert_eq!(store.stats().pending, 2);
        assert_eq!(fs::read(dir.file()).unwrap(), good);
        // New records land right after the good ones.
        store.ack(&ids[1], 3).unwrap();
        drop(store);
        let (store, report) = open(&dir);
        assert_eq!(report.skipped, 0);
        assert_eq!(
            store.stats(),
            Stats {
                pending: 1,
                leased: 0,
                done: 1,
                dead: 0,
                skipped: 0
            }
        );
    }

    #[test]
    fn a_corrupt_record_drops_it_and_what_follows() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store.enqueue(vec![msg("a")], 0, 0, 1).unwrap();
        let after_put = fs::metadata(dir.file()).unwrap().len() as usize;
        store.lease(1, 10, 2).unwrap();
        store.ack(&ids[0], 3).unwrap();
        drop(store);
        let mut bytes = fs::read(dir.file()).unwrap();
        bytes[after_put + 12] ^= 0xFF; // inside the lease record's payload
        fs::write(dir.file(), &bytes).unwrap();
        let (mut store, report) = open(&dir);
        assert_eq!(report.skipped, 2);
        let a = store.get(&ids[0]).unwrap().unwrap();
        assert_eq!((a.status, a.attempts), (Status::Pending, 0));
        assert_eq!(fs::metadata(dir.file()).unwrap().len() as usize, after_put);
    }

    #[test]
    fn a_foreign_file_is_refused_not_truncated() {
        let dir = TempDir::new();
        fs::write(dir.file(), b"hello, world").unwrap();
        assert!(matches!(Store::open(&dir.0, 1), Err(Error::Other(_))));
        assert_eq!(fs::read(dir.file()).unwrap(), b"hello, world");
        // A torn magic is a journal being created.
        fs::write(dir.file(), &MAGIC[..3]).unwrap();
        let (store, report) = Store::open(&dir.0, 1).unwrap();
        assert!(report.created);
        assert_eq!(store.stats(), Stats::default());
    }

    #[test]
    fn enqueue_can_store_the_first_messages_leased() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store
            .enqueue(vec![msg("a"), msg("b"), msg("c")], 2, 500, 100)
            .unwrap();
        let a = store.get(&ids[0]).unwrap().unwrap();
        assert_eq!(
            (a.status, a.attempts, a.lease_until),
            (Status::Leased, 1, 600)
        );
        assert_eq!(store.get(&ids[1]).unwrap().unwrap().status, Status::Leased);
        let c = store.get(&ids[2]).unwrap().unwrap();
        assert_eq!((c.status, c.attempts), (Status::Pending, 0));
        // Only the pending one is leased out; the others come back when
        // their lease runs out, as if `lease` had returned them.
        assert_eq!(bodies(&store.lease(10, 500, 200).unwrap()), ["c"]);
        store.ack(&ids[0], 300).unwrap();
        let again = store.lease(10, 500, 600).unwrap();
        assert_eq!(bodies(&again), ["b"]);
        assert_eq!(again[0].attempts, 2);
        // After a crash, a message stored leased is pending with its attempt.
        drop(store);
        let (mut store, _) = open(&dir);
        let after = store.lease(10, 500, 700).unwrap();
        assert_eq!(bodies(&after), ["b", "c"]);
        assert_eq!(store.get(&ids[0]).unwrap().unwrap().status, Status::Done);
    }

    #[test]
    fn finished_messages_leave_their_body_on_disk_and_it_reads_back() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store
            .enqueue(vec![msg("a"), msg("b"), msg("c")], 3, 1000, 0)
            .unwrap();
        store.ack_many(&ids[0..2], 5).unwrap();
        store.dead_letter(&ids[2], "bad", 6).unwrap();
        let in_memory = |s: &Store, id: &str| s.index.slots[&s.index.ids[id]].msg.is_some();
        assert!(ids.iter().all(|id| !in_memory(&store, id)));
        // Read back for `get` and `list`...
        assert_eq!(store.get(&ids[1]).unwrap().unwrap().msg, msg("b"));
        assert_eq!(bodies(&store.list(Status::Done, 10).unwrap()), ["a", "b"]);
        // ...for a requeued message, once it is leased again...
        store.requeue(&ids[0], 7).unwrap();
        store.requeue(&ids[2], 7).unwrap();
        assert!(!in_memory(&store, &ids[0]));
        let again = store.lease(10, 100, 8).unwrap();
        assert_eq!(bodies(&again), ["a", "c"]);
        assert!(in_memory(&store, &ids[0]));
        store.ack_many(&ids, 9).unwrap();
        // ...and by a rewrite, which moves every record.
        store.rewrite().unwrap();
        assert_eq!(
            bodies(&store.list(Status::Done, 10).unwrap()),
            ["a", "b", "c"]
        );
        drop(store);
        let (mut store, _) = open(&dir);
        assert_eq!(store.get(&ids[2]).unwrap().unwrap().msg, msg("c"));
    }

    #[test]
    fn done_messages_beyond_max_done_are_forgotten_oldest_first() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        store.set_max_done(10);
        let msgs = (0..30).map(|i| msg(&i.to_string())).collect();
        let ids = store.enqueue(msgs, 30, 1000, 0).unwrap();
        for id in &ids {
            store.ack(id, 5).unwrap();
        }
        let done = store.stats().done;
        assert!((1..=10).contains(&done), "{done} done kept");
        assert_eq!(store.take_trimmed(), 30 - done);
        assert_eq!(store.take_trimmed(), 0);
        assert!(store.get(&ids[0]).unwrap().is_none());
        assert!(store.get(&ids[29]).unwrap().is_some());
        // A journal holding more than `max_done` is trimmed when opened.
        drop(store);
        let (mut store, _) = open(&dir);
        store.set_max_done(5);
        assert!(store.stats().done <= 5);
        assert!(store.take_trimmed() > 0);
    }

    #[test]
    fn listing_many_finished_messages_reads_them_in_one_pass() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let msgs = (0..300).map(|i| msg(&i.to_string())).collect();
        let ids = store.enqueue(msgs, 300, 1000, 0).unwrap();
        store.ack_many(&ids[..250], 5).unwrap();
        let done = store.list(Status::Done, 1000).unwrap();
        let expected: Vec<String> = (0..250).map(|i| i.to_string()).collect();
        assert_eq!(
            bodies(&done),
            expected.iter().map(String::as_str).collect::<Vec<_>>()
        );
        // A mix of bodies in memory and on disk, past the few-seeks threshold.
        for id in &ids[..100] {
            store.requeue(id, 6).unwrap();
        }
        // The first 100 from disk, the last 50 (their lease ran out) from memory.
        let leased = store.lease(1000, 1000, 1001).unwrap();
        assert_eq!(leased.len(), 150);
        assert_eq!(leased[0].msg.body, "0");
        assert_eq!(leased[149].msg.body, "299");
    }

    #[test]
    fn a_journal_of_the_first_format_is_read_and_rewritten_in_the_current_one() {
        let dir = TempDir::new();
        let id = |n: u32| format!("0000000000001-000000000001-{n:x}");
        let ops = [
            Op::Put {
                id: id(1),
                body: "{\"a\":1}".into(),
                source: "inbox".into(),
                meta: vec![("k".into(), "v".into())],
                t: 1,
                st: Status::Pending,
                n: 0,
                nb: 1,
                err: None,
                fin: 0,
                lu: 0,
            },
            Op::Put {
                id: id(2),
                body: "2".into(),
                source: "inbox".into(),
                meta: vec![],
                t: 1,
                st: Status::Pending,
                n: 0,
                nb: 1,
                err: None,
                fin: 0,
                lu: 0,
            },
            Op::Lease {
                id: id(2),
                t: 2,
                until: 9,
            },
            Op::Ack { id: id(2), t: 3 },
        ];
        let mut v1 = record::MAGIC_V1.to_vec();
        for op in &ops {
            let payload = serde_json::to_vec(op).unwrap();
            v1.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            v1.extend_from_slice(&record::crc32(&payload).to_le_bytes());
            v1.extend_from_slice(&payload);
        }
        fs::write(dir.file(), &v1).unwrap();
        let (mut store, report) = open(&dir);
        assert_eq!((report.records, report.skipped), (4, 0));
        assert!(fs::read(dir.file()).unwrap().starts_with(MAGIC));
        let one = store.get(&id(1)).unwrap().unwrap();
        assert_eq!((one.status, one.msg.metadata.len()), (Status::Pending, 1));
        let two = store.get(&id(2)).unwrap().unwrap();
        assert_eq!(
            (two.status, two.attempts, two.finished_at),
            (Status::Done, 1, 3)
        );
        assert_eq!(two.msg.body, "2");
        store.ack(&id(1), 4).unwrap();
        drop(store);
        let (mut store, report) = open(&dir);
        assert_eq!(report.skipped, 0);
        assert_eq!(store.stats().done, 2);
        assert_eq!(store.get(&id(1)).unwrap().unwrap().msg.body, "{\"a\":1}");
    }

    #[test]
    fn many_messages_replay_in_order() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        for batch in 0..20 {
            let msgs = (0..50)
                .map(|i| msg(&format!("{}", batch * 50 + i)))
                .collect();
            store.enqueue(msgs, 0, 0, batch).unwrap();
        }
        drop(store);
        let (mut store, report) = open(&dir);
        assert_eq!(report.records, 1000);
        let leased = store.lease(1000, 10, 100).unwrap();
        let expected: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        assert_eq!(
            bodies(&leased),
            expected.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
}

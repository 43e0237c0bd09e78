//! The message store: an in-memory index over an append-only journal file.
//! Plain `std::fs`, no WIT types: the tests run it on the build machine.
//!
//! Durability: `enqueue`, `nack`, `dead_letter` and `requeue` write their
//! records and `sync_data` before returning; a batch is one write and one
//! sync. `lease` and `ack` write theirs without syncing: the next synced
//! write makes them durable too, and an ack lost in a crash only means the
//! message is delivered again, which at-least-once delivery allows. (A sync
//! per ack made acknowledging the bottleneck of a busy inbox.)
//!
//! Leases live in memory. While the store is open a lease runs out by time
//! (`now >= leased-at + lease-ms`, noticed by the next `lease` call), and
//! when the store is opened again every lease is gone: leased messages are
//! pending again, keeping the attempts their lease records counted (a
//! crash can lose the last, unsynced increments).
//!
//! Writes go at the end of the last good record: when a write or sync fails
//! the file is cut back there (now, or before the next write if that fails
//! too), so a half-written record never sits in front of later ones.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::record::{self, MAGIC, Op, Status};

pub const FILE_NAME: &str = "messages.journal";
const COMPACT_NAME: &str = "messages.journal.compact";

#[derive(Debug, PartialEq)]
pub enum Error {
    /// The caller asked for something that cannot be done (unknown id,
    /// wrong state).
    Reject(String),
    /// The disk failed us.
    Unavailable(String),
    /// The file is not a journal.
    Other(String),
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let msg = format!("{what} {}", path.display());
    move |e| Error::Unavailable(format!("{msg}: {e}"))
}

#[derive(Clone, Debug, PartialEq)]
pub struct Msg {
    pub body: String,
    pub source: String,
    pub metadata: Vec<(String, String)>,
}

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

pub struct Store {
    dir: PathBuf,
    path: PathBuf,
    /// `None` after a failed reopen (compaction): the next write retries.
    file: Option<File>,
    /// The file's length up to the end of its last good record.
    good_len: u64,
    /// A write failed and the file may hold a partial record after `good_len`.
    needs_repair: bool,
    /// By enqueue order.
    entries: BTreeMap<u64, Entry>,
    ids: HashMap<String, u64>,
    /// Pending messages, by enqueue order.
    pending: BTreeSet<u64>,
    /// Leased messages by (lease end, enqueue order).
    leased: BTreeSet<(u64, u64)>,
    counts: [u64; 4],
    next_seq: u64,
    nonce: u64,
    counter: u64,
    skipped: u64,
}

fn sync_dir(dir: &Path) {
    // Not every platform lets a directory be opened and synced: best effort.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Store {
    /// Opens (creating it if need be) the journal in `dir` and replays it.
    /// `nonce` makes this instance's ids unique: pass fresh randomness.
    pub fn open(dir: &Path, nonce: u64) -> Result<(Store, OpenReport), Error> {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(io_err("reading", &path))?;

        let mut report = OpenReport::default();
        if buf.len() < MAGIC.len() {
            if !MAGIC.starts_with(&buf) {
                return Err(Error::Other(format!(
                    "{} is not a message journal",
                    path.display()
                )));
            }
            // New, or torn while being created.
            file.set_len(0).map_err(io_err("truncating", &path))?;
            file.seek(SeekFrom::Start(0))
                .map_err(io_err("seeking", &path))?;
            file.write_all(MAGIC).map_err(io_err("writing", &path))?;
            file.sync_data().map_err(io_err("syncing", &path))?;
            sync_dir(dir);
            buf = MAGIC.to_vec();
            report.created = true;
        } else if &buf[..MAGIC.len()] != MAGIC {
            return Err(Error::Other(format!(
                "{} is not a message journal (bad magic)",
                path.display()
            )));
        }

        let scan = record::scan(&buf, MAGIC.len());
        let good_len = scan.good_len as u64;
        if good_len < buf.len() as u64 {
            file.set_len(good_len)
                .map_err(io_err("truncating", &path))?;
            file.sync_data().map_err(io_err("syncing", &path))?;
            report.cut_bytes = buf.len() as u64 - good_len;
        }
        file.seek(SeekFrom::Start(good_len))
            .map_err(io_err("seeking", &path))?;
        drop(buf);

        let mut store = Store {
            dir: dir.to_path_buf(),
            path,
            file: Some(file),
            good_len,
            needs_repair: false,
            entries: BTreeMap::new(),
            ids: HashMap::new(),
            pending: BTreeSet::new(),
            leased: BTreeSet::new(),
            counts: [0; 4],
            next_seq: 0,
            nonce,
            counter: 0,
            skipped: scan.skipped,
        };
        report.records = scan.ops.len();
        report.skipped = scan.skipped;
        for op in scan.ops {
            if !store.apply(op) {
                report.orphans += 1;
            }
        }
        // Leases do not outlive the instance that took them.
        let leased: Vec<u64> = store.leased.iter().map(|&(_, seq)| seq).collect();
        for seq in leased {
            store.set_status(seq, Status::Pending, 0);
        }
        Ok((store, report))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn new_id(&mut self, now_ms: u64) -> String {
        self.counter += 1;
        format!(
            "{now_ms:013}-{:012x}-{:x}",
            self.nonce & 0xFFFF_FFFF_FFFF,
            self.counter
        )
    }

    /// Moves entry `seq` to `status`, keeping counts and indexes right.
    fn set_status(&mut self, seq: u64, status: Status, lease_until: u64) {
        let entry = self.entries.get_mut(&seq).expect("indexed entry");
        match entry.status {
            Status::Pending => {
                self.pending.remove(&seq);
            }
            Status::Leased => {
                self.leased.remove(&(entry.lease_until, seq));
            }
            Status::Done | Status::Dead => {}
        }
        self.counts[entry.status.index()] -= 1;
        entry.status = status;
        entry.lease_until = if status == Status::Leased {
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
            Status::Done | Status::Dead => {}
        }
    }

    /// Applies a journaled op to the index. Ops are checked before they are
    /// written, so replay applies them as they come; `false` when the op
    /// names an unknown message.
    fn apply(&mut self, op: Op) -> bool {
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
        } = op
        {
            let entry = Entry {
                id: id.clone(),
                msg: Msg {
                    body,
                    source,
                    metadata: meta,
                },
                status: Status::Pending,
                attempts: n,
                enqueued_at: t,
                not_before: nb,
                last_error: err,
                lease_until: 0,
                finished_at: fin,
            };
            let seq = match self.ids.get(&id) {
                Some(&seq) => {
                    self.set_status(seq, Status::Pending, 0);
                    self.entries.insert(seq, entry);
                    seq
                }
                None => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.ids.insert(id, seq);
                    self.entries.insert(seq, entry);
                    self.counts[Status::Pending.index()] += 1;
                    self.pending.insert(seq);
                    seq
                }
            };
            self.set_status(seq, st, 0);
            return true;
        }
        let Some(&seq) = self.ids.get(op.id()) else {
            return false;
        };
        match op {
            Op::Put { .. } => unreachable!(),
            Op::Lease { until, .. } => {
                self.set_status(seq, Status::Leased, until);
                let e = self.entries.get_mut(&seq).unwrap();
                e.attempts = e.attempts.saturating_add(1);
            }
            Op::Ack { t, .. } => {
                self.set_status(seq, Status::Done, 0);
                self.entries.get_mut(&seq).unwrap().finished_at = t;
            }
            Op::Nack { nb, err, .. } => {
                self.set_status(seq, Status::Pending, 0);
                let e = self.entries.get_mut(&seq).unwrap();
                e.not_before = nb;
                e.last_error = Some(err);
                e.finished_at = 0;
            }
            Op::Dead { t, err, .. } => {
                self.set_status(seq, Status::Dead, 0);
                let e = self.entries.get_mut(&seq).unwrap();
                e.last_error = Some(err);
                e.finished_at = t;
            }
            Op::Requeue { t, .. } => {
                self.set_status(seq, Status::Pending, 0);
                let e = self.entries.get_mut(&seq).unwrap();
                e.attempts = 0;
                e.not_before = t;
                e.finished_at = 0;
            }
        }
        true
    }

    /// Writes `bytes` after the last good record (and syncs if asked). On
    /// failure the file is cut back, now or before the next write.
    fn append(&mut self, bytes: &[u8], sync: bool) -> Result<(), Error> {
        if self.file.is_none() {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(io_err("reopening", &self.path))?;
            self.good_len = file
                .seek(SeekFrom::End(0))
                .map_err(io_err("seeking", &self.path))?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().unwrap();
        if self.needs_repair {
            file.set_len(self.good_len)
                .and_then(|()| file.seek(SeekFrom::Start(self.good_len)).map(drop))
                .map_err(io_err("repairing", &self.path))?;
            self.needs_repair = false;
        }
        let written = file
            .write_all(bytes)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                self.good_len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.needs_repair = true;
                let repaired = file
                    .set_len(self.good_len)
                    .and_then(|()| file.seek(SeekFrom::Start(self.good_len)));
                if repaired.is_ok() {
                    self.needs_repair = false;
                }
                Err(Error::Unavailable(format!(
                    "writing {}: {e}",
                    self.path.display()
                )))
            }
        }
    }

    /// Journals `ops` (one write, one sync if `sync`), then applies them.
    fn commit(&mut self, ops: Vec<Op>, sync: bool) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for op in &ops {
            record::encode(op, &mut buf);
        }
        self.append(&buf, sync)?;
        for op in ops {
            self.apply(op);
        }
        Ok(())
    }

    fn seq_of(&self, id: &str) -> Result<u64, Error> {
        self.ids
            .get(id)
            .copied()
            .ok_or_else(|| Error::Reject(format!("no message with id `{id}`")))
    }

    fn status_of(&self, seq: u64) -> Status {
        self.entries[&seq].status
    }

    pub fn enqueue(&mut self, messages: Vec<Msg>, now_ms: u64) -> Result<Vec<String>, Error> {
        let mut ids = Vec::with_capacity(messages.len());
        let mut ops = Vec::with_capacity(messages.len());
        for msg in messages {
            let id = self.new_id(now_ms);
            ids.push(id.clone());
            ops.push(Op::Put {
                id,
                body: msg.body,
                source: msg.source,
                meta: msg.metadata,
                t: now_ms,
                st: Status::Pending,
                n: 0,
                nb: now_ms,
                err: None,
                fin: 0,
            });
        }
        self.commit(ops, true)?;
        Ok(ids)
    }

    /// Leases up to `max` pending messages whose `not_before` has passed, in
    /// enqueue order. Leases that ran out are pending again first.
    pub fn lease(&mut self, max: u32, lease_ms: u64, now_ms: u64) -> Result<Vec<Entry>, Error> {
        let expired: Vec<u64> = self
            .leased
            .range(..(now_ms.saturating_add(1), 0))
            .map(|&(_, seq)| seq)
            .collect();
        for seq in expired {
            self.set_status(seq, Status::Pending, 0);
        }
        let chosen: Vec<u64> = self
            .pending
            .iter()
            .copied()
            .filter(|seq| self.entries[seq].not_before <= now_ms)
            .take(max as usize)
            .collect();
        let until = now_ms.saturating_add(lease_ms);
        let ops = chosen
            .iter()
            .map(|seq| Op::Lease {
                id: self.entries[seq].id.clone(),
                t: now_ms,
                until,
            })
            .collect();
        self.commit(ops, false)?;
        Ok(chosen.iter().map(|seq| self.entries[seq].clone()).collect())
    }

    /// Done. Acknowledging a done message again is a no-op.
    pub fn ack(&mut self, id: &str, now_ms: u64) -> Result<(), Error> {
        let seq = self.seq_of(id)?;
        if self.status_of(seq) == Status::Done {
            return Ok(());
        }
        self.commit(
            vec![Op::Ack {
                id: id.to_string(),
                t: now_ms,
            }],
            false,
        )
    }

    /// `ack` for many messages in one write; unknown or done ids are skipped.
    pub fn ack_many(&mut self, ids: &[String], now_ms: u64) -> Result<(), Error> {
        let ops: Vec<Op> = ids
            .iter()
            .filter(|id| {
                self.ids
                    .get(id.as_str())
                    .is_some_and(|seq| self.status_of(*seq) != Status::Done)
            })
            .map(|id| Op::Ack {
                id: id.clone(),
                t: now_ms,
            })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        self.commit(ops, false)
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
        let status = self.status_of(seq);
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
        match self.status_of(seq) {
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

    /// A done or dead message pending again, attempts reset.
    pub fn requeue(&mut self, id: &str, now_ms: u64) -> Result<(), Error> {
        let seq = self.seq_of(id)?;
        let status = self.status_of(seq);
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
    pub fn list(&self, status: Status, limit: u32) -> Vec<Entry> {
        let limit = limit as usize;
        match status {
            Status::Pending => self
                .pending
                .iter()
                .take(limit)
                .map(|seq| self.entries[seq].clone())
                .collect(),
            _ => self
                .entries
                .values()
                .filter(|e| e.status == status)
                .take(limit)
                .cloned()
                .collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.ids.get(id).map(|seq| self.entries[seq].clone())
    }

    pub fn stats(&self) -> Stats {
        Stats {
            pending: self.counts[Status::Pending.index()],
            leased: self.counts[Status::Leased.index()],
            done: self.counts[Status::Done.index()],
            dead: self.counts[Status::Dead.index()],
            skipped: self.skipped,
        }
    }

    /// Rewrites the journal without the messages done before `before_ms`
    /// (one `put` record per message left); returns how many went.
    pub fn compact(&mut self, before_ms: u64) -> Result<u64, Error> {
        let gone: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.status == Status::Done && e.finished_at < before_ms)
            .map(|(&seq, _)| seq)
            .collect();
        let gone_set: BTreeSet<u64> = gone.iter().copied().collect();

        let mut buf = MAGIC.to_vec();
        for (seq, e) in &self.entries {
            if gone_set.contains(seq) {
                continue;
            }
            record::encode(
                &Op::Put {
                    id: e.id.clone(),
                    body: e.msg.body.clone(),
                    source: e.msg.source.clone(),
                    meta: e.msg.metadata.clone(),
                    t: e.enqueued_at,
                    st: e.status,
                    n: e.attempts,
                    nb: e.not_before,
                    err: e.last_error.clone(),
                    fin: e.finished_at,
                },
                &mut buf,
            );
        }

        let tmp = self.dir.join(COMPACT_NAME);
        let written = File::create(&tmp)
            .and_then(|mut f| f.write_all(&buf).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::Unavailable(format!(
                "compacting {}: {e}",
                self.path.display()
            )));
        }
        sync_dir(&self.dir);
        // The old handle points at the replaced file.
        self.file = None;
        self.needs_repair = false;
        let reopened = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.seek(SeekFrom::End(0))?;
                Ok(f)
            });
        if let Ok(file) = reopened {
            self.file = Some(file);
        }
        self.good_len = buf.len() as u64;

        for seq in &gone {
            let e = self.entries.remove(seq).expect("indexed entry");
            self.ids.remove(&e.id);
            self.counts[Status::Done.index()] -= 1;
        }
        Ok(gone.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
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
        fn file(&self) -> PathBuf {
            self.0.join(FILE_NAME)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn msg(body: &str) -> Msg {
        Msg {
            body: body.to_string(),
            source: "inbox".to_string(),
            metadata: vec![("k".into(), "v".into())],
        }
    }

    fn open(dir: &TempDir) -> (Store, OpenReport) {
        Store::open(&dir.0, 7).unwrap()
    }

    fn bodies(entries: &[Entry]) -> Vec<&str> {
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
            .enqueue(vec![msg("1"), msg("2"), msg("3")], 1000)
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
        let (store, report) = open(&dir);
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
        let two = store.get(&ids[1]).unwrap();
        assert_eq!((two.status, two.attempts), (Status::Pending, 1));
        let one = store.get(&ids[0]).unwrap();
        assert_eq!((one.status, one.finished_at), (Status::Done, 1100));
        assert_eq!(one.msg, msg("1"));
        assert_eq!(bodies(&store.list(Status::Pending, 10)), ["2", "3"]);
    }

    #[test]
    fn ids_differ_across_instances_at_the_same_millisecond() {
        let a = TempDir::new();
        let b = TempDir::new();
        let (mut sa, _) = Store::open(&a.0, 1).unwrap();
        let (mut sb, _) = Store::open(&b.0, 2).unwrap();
        assert_ne!(
            sa.enqueue(vec![msg("x")], 5).unwrap(),
            sb.enqueue(vec![msg("x")], 5).unwrap()
        );
    }

    #[test]
    fn lease_skips_delayed_messages_and_takes_back_expired_leases() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store
            .enqueue(vec![msg("a"), msg("b"), msg("c")], 0)
            .unwrap();
        assert_eq!(bodies(&store.lease(1, 100, 10).unwrap()), ["a"]);
        store.nack(&ids[0], 1000, "busy", 20).unwrap();
        let a = store.get(&ids[0]).unwrap();
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
            .enqueue(vec![msg("a"), msg("b"), msg("c")], 0)
            .unwrap();
        store.lease(3, 1000, 1).unwrap();
        store.ack(&ids[0], 2).unwrap();
        let batch = vec![ids[0].clone(), ids[1].clone(), "nope".to_string()];
        store.ack_many(&batch, 3).unwrap();
        assert_eq!(store.get(&ids[1]).unwrap().status, Status::Done);
        assert_eq!(store.get(&ids[2]).unwrap().status, Status::Leased);
        drop(store);
        let (store, _) = open(&dir);
        assert_eq!(store.stats().done, 2);
    }

    #[test]
    fn dead_letter_requeue_and_their_rules() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store.enqueue(vec![msg("a"), msg("b")], 0).unwrap();
        store.lease(1, 100, 1).unwrap();
        store.dead_letter(&ids[0], "too many attempts", 2).unwrap();
        store.dead_letter(&ids[0], "again", 3).unwrap();
        assert_eq!(
            store.get(&ids[0]).unwrap().last_error.as_deref(),
            Some("too many attempts")
        );
        assert!(matches!(
            store.nack(&ids[0], 0, "x", 4),
            Err(Error::Reject(_))
        ));
        assert!(matches!(store.requeue(&ids[1], 4), Err(Error::Reject(_))));
        assert!(matches!(store.ack("nope", 4), Err(Error::Reject(_))));
        assert_eq!(bodies(&store.list(Status::Dead, 10)), ["a"]);

        store.requeue(&ids[0], 5).unwrap();
        let a = store.get(&ids[0]).unwrap();
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
        let (store, _) = open(&dir);
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
        assert_eq!(store.get(&ids[0]).unwrap().attempts, 0);
    }

    #[test]
    fn a_torn_tail_is_cut_counted_and_the_store_goes_on() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store.enqueue(vec![msg("a"), msg("b")], 1).unwrap();
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
        let ids = store.enqueue(vec![msg("a")], 1).unwrap();
        let after_put = fs::metadata(dir.file()).unwrap().len() as usize;
        store.lease(1, 10, 2).unwrap();
        store.ack(&ids[0], 3).unwrap();
        drop(store);
        let mut bytes = fs::read(dir.file()).unwrap();
        bytes[after_put + 12] ^= 0xFF; // inside the lease record's payload
        fs::write(dir.file(), &bytes).unwrap();
        let (store, report) = open(&dir);
        assert_eq!(report.skipped, 2);
        let a = store.get(&ids[0]).unwrap();
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
    fn compact_drops_old_done_messages_and_keeps_the_rest() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        let ids = store
            .enqueue(vec![msg("a"), msg("b"), msg("c"), msg("d"), msg("e")], 0)
            .unwrap();
        store.lease(5, 1000, 1).unwrap();
        store.ack(&ids[0], 10).unwrap();
        store.ack(&ids[1], 20).unwrap();
        store.nack(&ids[2], 50, "later", 21).unwrap();
        store.dead_letter(&ids[3], "bad", 22).unwrap();
        let before = fs::metadata(dir.file()).unwrap().len();
        assert_eq!(store.compact(15).unwrap(), 1);
        assert!(fs::metadata(dir.file()).unwrap().len() < before);
        assert!(!dir.0.join(COMPACT_NAME).exists());
        assert!(store.get(&ids[0]).is_none());
        assert_eq!(
            store.stats(),
            Stats {
                pending: 1,
                leased: 1,
                done: 1,
                dead: 1,
                skipped: 0
            }
        );
        // The store keeps working on the new file.
        store.ack(&ids[4], 30).unwrap();
        let expect = |s: &Store| {
            let c = s.get(&ids[2]).unwrap();
            assert_eq!(
                (c.status, c.attempts, c.not_before, c.last_error.as_deref()),
                (Status::Pending, 1, 71, Some("later"))
            );
            let d = s.get(&ids[3]).unwrap();
            assert_eq!(
                (d.status, d.finished_at, d.last_error.as_deref()),
                (Status::Dead, 22, Some("bad"))
            );
            assert_eq!(s.get(&ids[1]).unwrap().finished_at, 20);
        };
        expect(&store);
        drop(store);
        let (mut store, report) = open(&dir);
        assert_eq!(report.skipped, 0);
        expect(&store);
        assert_eq!(
            store.stats(),
            Stats {
                pending: 1,
                leased: 0,
                done: 2,
                dead: 1,
                skipped: 0
            }
        );
        assert_eq!(bodies(&store.list(Status::Done, 10)), ["b", "e"]);
        assert_eq!(store.compact(u64::MAX).unwrap(), 2);
        drop(store);
        let (store, _) = open(&dir);
        assert_eq!(
            store.stats(),
            Stats {
                pending: 1,
                leased: 0,
                done: 0,
                dead: 1,
                skipped: 0
            }
        );
    }

    #[test]
    fn many_messages_replay_in_order() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        for batch in 0..20 {
            let msgs = (0..50)
                .map(|i| msg(&format!("{}", batch * 50 + i)))
                .collect();
            store.enqueue(msgs, batch).unwrap();
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

//! Compaction: finished messages forgotten, and the file rewritten once it
//! is mostly the past, a step at a time.
//!
//! A rewrite copies each message's `put` record, with the message's current
//! state, into a new file, in the order the records sit in the old one,
//! [`STEP`] bytes per step. `compact` takes a step and so does every commit,
//! so a busy store moves a rewrite along between its other calls instead of
//! stopping for all of it (done in one go, rewriting a 200 MB journal held a
//! busy inbox up for one to three seconds). Meanwhile each commit still goes
//! to the old file first, and its records then to the new one too, except
//! those of messages not copied yet: their copy will carry their state.
//! Replaying the new file therefore gives what replaying the old one gives,
//! and once the last message is copied it takes the old one's place. A crash
//! before that leaves the old file as complete as ever. This module must
//! never put the new file in place unless every message in the index is in
//! it, and a failed step gives up the rewrite, never the commit it followed.

use std::path::Path;

use super::{Error, Index, Store};
use crate::file::Rewrite;
use crate::record::{At, Op, Status};

/// A rewrite starts once the file is more than this many times the size of
/// what it would write (the `put` records of the messages kept)...
pub const GROWTH: u64 = 3;
/// ...plus this much, so a small file is left alone.
pub const SLACK: u64 = 1 << 20;
/// Bytes of `put` records one step copies: about a millisecond of work.
pub const STEP: u64 = 256 << 10;

/// A rewrite under way. The messages to copy are those in the index when
/// it began, in index order, which is the order of their `put` records in
/// the file (a message is put when it enters the index, and a rewrite keeps
/// the order): the old file is read front to back.
pub(super) struct Rewriting {
    out: Rewrite,
    /// The next message to copy...
    next: u64,
    /// ...up to this one, the first to enter the index after the rewrite began.
    end: u64,
}

impl Rewriting {
    /// Not copied yet: records about it are not copied either.
    fn waiting(&self, seq: u64) -> bool {
        (self.next..self.end).contains(&seq)
    }
}

/// A record of a commit, for a rewrite to follow: the message it is about,
/// whether it is a `put`, and where it sits in the commit's bytes.
pub(super) struct Applied {
    pub seq: Option<u64>,
    pub is_put: bool,
    pub start: usize,
    pub len: usize,
}

impl Store {
    /// Forgets the messages done before `before_ms`; returns how many went.
    ///
    /// They leave memory at once. The file is rewritten (one `put` record
    /// per message kept; the lease, ack and retry records of the past gone)
    /// only once it is more than [`GROWTH`] times what that would write:
    /// rewriting a busy journal each time a few old messages expire would
    /// copy all of it each minute. Until a rewrite, a reopened store sees
    /// the forgotten messages again, done, and the next `compact` forgets
    /// them again. A rewrite that failed since the last call is reported
    /// here, and the next call starts another.
    pub fn compact(&mut self, before_ms: u64) -> Result<u64, Error> {
        let gone: Vec<u64> = self
            .index
            .slots
            .iter()
            .filter(|(_, s)| s.status == Status::Done && s.finished_at < before_ms)
            .map(|(&seq, _)| seq)
            .collect();
        for &seq in &gone {
            self.index.forget(seq);
        }
        self.file.shrink_retired();
        if let Some(failed) = self.rewrite_failed.take() {
            return Err(failed);
        }
        if self.rewriting.is_none()
            && self.file.len() > GROWTH * self.index.live_bytes + self.rewrite_slack
        {
            self.begin_rewrite()?;
        }
        self.rewrite_step(self.step_bytes)?;
        Ok(gone.len() as u64)
    }

    /// Rewrites the whole file now (or finishes the rewrite under way).
    pub(super) fn rewrite(&mut self) -> Result<(), Error> {
        if self.rewriting.is_none() {
            self.begin_rewrite()?;
        }
        self.rewrite_step(u64::MAX)
    }

    /// After a commit of `bytes` to the old file: its records go to the
    /// new one too, and the rewrite moves on a step.
    pub(super) fn follow_commit(&mut self, bytes: &[u8], applied: &[Applied]) {
        let Some(rw) = self.rewriting.as_mut() else {
            self.file.shrink_retired();
            return;
        };
        let mut copied = Ok(());
        for a in applied {
            let Some(seq) = a.seq else { continue };
            if !a.is_put && rw.waiting(seq) {
                continue;
            }
            match rw.out.push_encoded(&bytes[a.start..a.start + a.len]) {
                Ok(offset) if a.is_put => {
                    let len = a.len as u64;
                    if let Some(slot) = self.index.slots.get_mut(&seq) {
                        slot.moved = Some(At { offset, len });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    copied = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = copied {
            self.give_up_rewrite();
            self.rewrite_failed = Some(e);
        } else if let Err(e) = self.rewrite_step(self.step_bytes) {
            self.rewrite_failed = Some(e);
        }
    }

    fn begin_rewrite(&mut self) -> Result<(), Error> {
        let out = self.file.begin_rewrite()?;
        // Left over from a rewrite given up.
        for slot in self.index.slots.values_mut() {
            slot.moved = None;
        }
        self.rewriting = Some(Rewriting {
            out,
            next: 0,
            end: self.index.next_seq,
        });
        Ok(())
    }

    /// Copies up to `budget` bytes of `put` records, and puts the new file
    /// in place once every message is in it. A failure gives the rewrite up.
    fn rewrite_step(&mut self, budget: u64) -> Result<(), Error> {
        let Some(rw) = self.rewriting.as_mut() else {
            return Ok(());
        };
        let stepped = copy(rw, &mut self.index, budget, self.file.path());
        let finished = match stepped {
            Ok(true) => self.finish_rewrite(),
            Ok(false) => return Ok(()),
            Err(e) => Err(e),
        };
        if finished.is_err() {
            self.give_up_rewrite();
        }
        finished
    }

    fn finish_rewrite(&mut self) -> Result<(), Error> {
        let Some(rw) = self.rewriting.take() else {
            return Ok(());
        };
        let slots = &self.index.slots;
        let found = slots.values().filter(|s| s.moved.is_some()).count();
        if found != slots.len() {
            let e = Error::Other(format!(
                "{}: {found} of {} messages found while compacting",
                self.file.path().display(),
                slots.len()
            ));
            self.file.abandon_rewrite(rw.out);
            return Err(e);
        }
        self.file.finish_rewrite(rw.out)?;
        self.index.live_bytes = 0;
        for slot in self.index.slots.values_mut() {
            slot.put = slot.moved.take().expect("checked above");
            self.index.live_bytes += slot.put.len;
        }
        Ok(())
    }

    fn give_up_rewrite(&mut self) {
        if let Some(rw) = self.rewriting.take() {
            self.file.abandon_rewrite(rw.out);
        }
    }
}

/// One step: copies `put` records until `budget` bytes are copied; true
/// when no message is left to copy.
fn copy(rw: &mut Rewriting, index: &mut Index, budget: u64, path: &Path) -> Result<bool, Error> {
    let mut copied = 0;
    // Messages forgotten since the rewrite began are not there to copy.
    let mut left = index.slots.range_mut(rw.next..rw.end);
    while copied < budget {
        let Some((&seq, s)) = left.next() else {
            rw.next = rw.end;
            break;
        };
        rw.next = seq + 1;
        let offset = s.put.offset;
        let (id, body, source, meta) = match rw.out.read_old(offset)? {
            Op::Put {
                id,
                body,
                source,
                meta,
                ..
            } if *id == *s.id => (id, body, source, meta),
            _ => {
                return Err(Error::Other(format!(
                    "{}: the record at offset {offset} is not message {}'s",
                    path.display(),
                    s.id
                )));
            }
        };
        let at = rw.out.push(&Op::Put {
            id,
            body,
            source,
            meta,
            t: s.enqueued_at,
            st: s.status,
            n: s.attempts,
            nb: s.not_before,
            err: s.last_error.as_deref().map(str::to_string),
            fin: s.finished_at,
            lu: s.lease_until,
        })?;
        s.moved = Some(at);
        copied += at.len;
    }
    Ok(rw.next >= rw.end || index.slots.range(rw.next..rw.end).next().is_none())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::file::COMPACT_NAME;
    use crate::store::tests::{TempDir, bodies, msg, open};
    use crate::store::{Entry, Msg, Stats};

    #[test]
    fn compact_rewrites_once_the_file_is_mostly_the_past() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        store.rewrite_slack = 0;
        let ids = store
            .enqueue(
                vec![msg("a"), msg("b"), msg("c"), msg("d"), msg("e"), msg("f")],
                0,
                0,
                0,
            )
            .unwrap();
        store.lease(6, 1000, 1).unwrap();
        store.ack_many(&ids[0..3], 10).unwrap();
        store.nack(&ids[3], 50, "later", 21).unwrap();
        store.dead_letter(&ids[4], "bad", 22).unwrap();
        let before = fs::metadata(dir.file()).unwrap().len();
        // Three done messages go, three are kept: the file (six puts, six
        // leases, three acks, a nack and a dead-letter) is now more than
        // three times the three puts a rewrite writes.
        assert_eq!(store.compact(15).unwrap(), 3);
        assert!(fs::metadata(dir.file()).unwrap().len() < before);
        assert!(!dir.0.join(COMPACT_NAME).exists());
        assert!(store.get(&ids[0]).unwrap().is_none());
        assert_eq!(
            store.stats(),
            Stats {
                pending: 1,
                leased: 1,
                done: 0,
                dead: 1,
                skipped: 0
            }
        );
        // The lease is kept across the rewrite, and the store keeps working
        // on the new file.
        assert_eq!(store.get(&ids[5]).unwrap().unwrap().lease_until, 1001);
        store.ack(&ids[5], 30).unwrap();
        let expect = |s: &mut Store| {
            let d = s.get(&ids[3]).unwrap().unwrap();
            assert_eq!(
                (d.status, d.attempts, d.not_before, d.last_error.as_deref()),
                (Status::Pending, 1, 71, Some("later"))
            );
            let e = s.get(&ids[4]).unwrap().unwrap();
            assert_eq!(
                (e.status, e.finished_at, e.last_error.as_deref()),
                (Status::Dead, 22, Some("bad"))
            );
            assert_eq!(s.get(&ids[5]).unwrap().unwrap().finished_at, 30);
        };
        expect(&mut store);
        drop(store);
        let (mut store, report) = open(&dir);
        assert_eq!(report.skipped, 0);
        expect(&mut store);
        assert_eq!(
            store.stats(),
            Stats {
                pending: 1,
                leased: 0,
                done: 1,
                dead: 1,
                skipped: 0
            }
        );
        assert_eq!(bodies(&store.list(Status::Done, 10).unwrap()), ["f"]);
    }

    #[test]
    fn compact_forgets_at_once_but_rewrites_only_when_worth_it() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        store.rewrite_slack = 0;
        let ids = store
            .enqueue(vec![msg("a"), msg("b"), msg("c"), msg("d")], 0, 0, 0)
            .unwrap();
        store.lease(4, 1000, 1).unwrap();
        store.ack(&ids[0], 10).unwrap();
        let before = fs::metadata(dir.file()).unwrap().len();
        // One of four: gone from memory, the file (four puts, four leases,
        // an ack) left as it is: less than three times three puts.
        assert_eq!(store.compact(15).unwrap(), 1);
        assert_eq!(fs::metadata(dir.file()).unwrap().len(), before);
        assert!(store.get(&ids[0]).unwrap().is_none());
        assert_eq!(store.stats().done, 0);
        // A reopened store sees it again, done, and forgets it again.
        drop(store);
        let (mut store, _) = open(&dir);
        assert_eq!(store.get(&ids[0]).unwrap().unwrap().status, Status::Done);
        assert_eq!(store.compact(15).unwrap(), 1);
        // A file grown far past its last rewrite is rewritten even when
        // nothing is forgotten: here, retries with long errors.
        let long = "x".repeat(100_000);
        for i in 0..90 {
            store.nack(&ids[1], 0, &long, 20 + i).unwrap();
        }
        let grown = fs::metadata(dir.file()).unwrap().len();
        assert!(grown > GROWTH * store.index.live_bytes + SLACK);
        assert_eq!(store.compact(15).unwrap(), 0);
        let rewritten = fs::metadata(dir.file()).unwrap().len();
        assert!(rewritten < grown / 50, "{rewritten} of {grown}");
        drop(store);
        let (mut store, _) = open(&dir);
        assert!(store.get(&ids[0]).unwrap().is_none());
        assert_eq!(
            store.get(&ids[1]).unwrap().unwrap().last_error.as_deref(),
            Some(long.as_str())
        );
        assert_eq!(store.stats().pending, 3);
    }

    /// A small xorshift generator: the same cases on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Everything callers can see of the messages with `ids`.
    fn seen(store: &mut Store, ids: &[String]) -> Vec<Option<Entry>> {
        ids.iter().map(|id| store.get(id).unwrap()).collect()
    }

    /// As `seen` after a reopen: leases do not outlive an instance.
    fn reopened(entries: Vec<Option<Entry>>) -> Vec<Option<Entry>> {
        entries
            .into_iter()
            .map(|e| {
                e.map(|mut e| {
                    if e.status == Status::Leased {
                        e.status = Status::Pending;
                        e.lease_until = 0;
                    }
                    e
                })
            })
            .collect()
    }

    /// The same random calls on two stores, one of them rewriting its file
    /// a few records per step all along, the other never; both must show the
    /// same messages at every turn, and after a reopen.
    fn run_both(turns: usize, finish: bool) {
        let (steps_dir, plain_dir) = (TempDir::new(), TempDir::new());
        let (mut steps, _) = open(&steps_dir);
        let (mut plain, _) = open(&plain_dir);
        steps.step_bytes = 300;
        steps.set_max_done(40);
        plain.set_max_done(40);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let first: Vec<Msg> = (0..5).map(|i| msg(&format!("first-{i}"))).collect();
        let mut ids = steps.enqueue(first.clone(), 2, 500, 999).unwrap();
        assert_eq!(plain.enqueue(first, 2, 500, 999).unwrap(), ids);
        let mut rewrites = 0;
        for turn in 0..turns {
            let now = 1000 + turn as u64;
            if steps.rewriting.is_none() && (turn % 150 == 20) {
                steps.begin_rewrite().unwrap();
                rewrites += 1;
            }
            let pick = |rng: &mut Rng| ids[rng.below(ids.len())].clone();
            let (a, b) = match rng.below(8) {
                0 | 1 => {
                    let n = 1 + rng.below(3);
                    let lease_first = rng.below(n + 1) as u32;
                    let msgs: Vec<Msg> = (0..n).map(|i| msg(&format!("{turn}-{i}"))).collect();
                    let a = steps.enqueue(msgs.clone(), lease_first, 500, now);
                    let b = plain.enqueue(msgs, lease_first, 500, now);
                    let a = a.unwrap();
                    assert_eq!(Ok(&a), b.as_ref(), "turn {turn}");
                    ids.extend(a);
                    (Ok(()), Ok(()))
                }
                2 => {
                    let max = rng.below(4) as u32;
                    let a = steps.lease(max, 500, now).map(|e| e.len());
                    let b = plain.lease(max, 500, now).map(|e| e.len());
                    assert_eq!(a, b);
                    (Ok(()), Ok(()))
                }
                3 | 4 => {
                    let id = pick(&mut rng);
                    (steps.ack(&id, now), plain.ack(&id, now))
                }
                5 => {
                    let id = pick(&mut rng);
                    (
                        steps.nack(&id, 3, "again", now),
                        plain.nack(&id, 3, "again", now),
                    )
                }
                6 => {
                    let id = pick(&mut rng);
                    (
                        steps.dead_letter(&id, "bad", now),
                        plain.dead_letter(&id, "bad", now),
                    )
                }
                _ => {
                    let id = pick(&mut rng);
                    (steps.requeue(&id, now), plain.requeue(&id, now))
                }
            };
            assert_eq!(a, b, "turn {turn}");
            if turn % 97 == 0 {
                assert_eq!(
                    steps.compact(now - 50).unwrap(),
                    plain.compact(now - 50).unwrap()
                );
            }
            assert_eq!(
                seen(&mut steps, &ids),
                seen(&mut plain, &ids),
                "turn {turn}"
            );
        }
        assert!(rewrites >= 2, "{rewrites}");
        if finish {
            steps.rewrite().unwrap();
            assert!(!steps_dir.0.join(COMPACT_NAME).exists());
        } else {
            assert!(
                steps.rewriting.is_some(),
                "the last rewrite is to be cut short"
            );
        }
        let before = seen(&mut steps, &ids);
        drop((steps, plain));
        let (mut steps, report) = open(&steps_dir);
        assert_eq!((report.skipped, report.orphans), (0, 0));
        let (mut plain, _) = open(&plain_dir);
        let (after, plain_after) = (seen(&mut steps, &ids), seen(&mut plain, &ids));
        for (i, ((was, now), plain)) in reopened(before)
            .into_iter()
            .zip(after)
            .zip(plain_after)
            .enumerate()
        {
            match was {
                Some(was) => {
                    assert_eq!(Some(&was), now.as_ref(), "message {i} after a reopen");
                    assert_eq!(now, plain, "message {i} against the store never rewritten");
                }
                // Forgotten: back, done, only if its record was still there.
                None => assert!(now.is_none_or(|e| e.status == Status::Done), "message {i}"),
            }
        }
        let (a, b) = (steps.stats(), plain.stats());
        assert_eq!((a.pending, a.leased, a.dead), (b.pending, b.leased, b.dead));
    }

    #[test]
    fn a_rewrite_in_steps_keeps_every_change_made_meanwhile() {
        run_both(700, true);
    }

    #[test]
    fn a_rewrite_cut_short_leaves_the_old_file_whole() {
        run_both(640, false);
    }

    #[test]
    fn a_busy_store_finishes_its_rewrite_between_calls() {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        store.rewrite_slack = 0;
        store.step_bytes = 1000;
        let ids = store
            .enqueue((0..200).map(|i| msg(&format!("m{i}"))).collect(), 0, 0, 1)
            .unwrap();
        for id in &ids {
            store.lease(1, 100, 2).unwrap();
            store.ack(id, 3).unwrap();
        }
        let grown = fs::metadata(dir.file()).unwrap().len();
        // One step copies about a thousand bytes of the 200 puts...
        store.begin_rewrite().unwrap();
        assert_eq!(store.compact(0).unwrap(), 0);
        assert!(store.rewriting.is_some());
        // ...and every commit after it takes another.
        let mut commits = 0;
        while store.rewriting.is_some() {
            store.enqueue(vec![msg("more")], 0, 0, 4).unwrap();
            commits += 1;
            assert!(commits < 100, "the rewrite does not finish");
        }
        assert!(commits > 3, "{commits}");
        // The replaced file is freed by the next call (it is small).
        assert!(store.file.is_retiring());
        store.enqueue(vec![msg("more")], 0, 0, 4).unwrap();
        commits += 1;
        assert!(!store.file.is_retiring());
        // The leases and acks are gone from it.
        assert!(fs::metadata(dir.file()).unwrap().len() < grown);
        drop(store);
        let (mut store, report) = open(&dir);
        assert_eq!((report.skipped, report.orphans), (0, 0));
        assert_eq!(store.stats().done, 200);
        assert_eq!(store.stats().pending, commits);
        assert_eq!(store.get(&ids[7]).unwrap().unwrap().msg.body, "m7");
    }
}

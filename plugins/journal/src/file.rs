//! The journal file: records appended after the last good one, read back by
//! offset, and the whole file replaced atomically by a compaction.
//!
//! It knows the framing (`record.rs`), not what the records mean. It must
//! never leave a partial record in front of a later one: when a write or
//! sync fails the file is cut back to the end of the last good record, now
//! or before the next write if that fails too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::record::{self, At, Format, MAGIC, Op};
use crate::store::Error;

pub const FILE_NAME: &str = "messages.journal";
pub const COMPACT_NAME: &str = "messages.journal.compact";

pub fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let msg = format!("{what} {}", path.display());
    move |e| Error::Unavailable(format!("{msg}: {e}"))
}

/// Writes all of `bytes` at `offset`. Positional writes, because a host may
/// run them (and syncs) on the calling thread, while a streamed `write` is
/// always handed to a blocking pool and waited for: a thread hop per batch.
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    positional(bytes.len(), offset, io::ErrorKind::WriteZero, |done, at| {
        let rest = &bytes[done..];
        // SAFETY: `rest` is a live slice of `rest.len()` bytes, and the
        // descriptor belongs to `file`, which is borrowed for the call.
        unsafe { libc::pwrite(file.as_raw_fd(), rest.as_ptr().cast(), rest.len(), at) }
    })
}

/// Fills `buf` from `offset`, positionally (as [`write_all_at`]).
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    positional(
        buf.len(),
        offset,
        io::ErrorKind::UnexpectedEof,
        |done, at| {
            let rest = &mut buf[done..];
            // SAFETY: `rest` is a live, writable slice of `rest.len()` bytes, and
            // the descriptor belongs to `file`, which is borrowed for the call.
            unsafe { libc::pread(file.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), at) }
        },
    )
}

/// Repeats a positional read or write until `len` bytes from `offset` are
/// moved: `call(done, at)` moves the bytes from `done` on at file offset
/// `at` and returns what the system call returned. A call that moves
/// nothing fails with `short`.
fn positional(
    len: usize,
    offset: u64,
    short: io::ErrorKind,
    mut call: impl FnMut(usize, libc::off_t) -> isize,
) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let at = libc::off_t::try_from(offset + done as u64)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let n = call(done, at);
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(short.into());
        }
        done += n as usize;
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Not every platform lets a directory be opened and synced: best effort.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What opening found.
#[derive(Debug, Default, PartialEq)]
pub struct Opened {
    pub created: bool,
    pub records: usize,
    /// Bytes cut off the end.
    pub cut_bytes: u64,
    /// Bad records at the end (the first bad one and the intact ones behind it).
    pub skipped: u64,
    /// The file is of the first format: appends must wait for a rewrite.
    pub old_format: bool,
}

pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    /// For appends. `None` after a failed reopen (compaction): the next
    /// write retries.
    file: Option<File>,
    /// For reading records back, apart from `file` so appends keep their place.
    reader: Option<File>,
    /// The file the last rewrite replaced, being freed a piece at a time.
    retired: Option<File>,
    /// The length up to the end of the last good record.
    good_len: u64,
    /// A write failed and the file may hold a partial record after `good_len`.
    needs_repair: bool,
    format: Format,
    scratch: Vec<u8>,
}

/// A compaction in progress: the new file being written, and the old one
/// read back by offset. Both by positional reads and writes (see
/// [`write_all_at`]), so a compaction step never waits on a thread hop.
pub struct Rewrite {
    out: File,
    tmp: PathBuf,
    /// The new file's length, `pending` included.
    len: u64,
    /// Records encoded but not yet written.
    pending: Vec<u8>,
    /// Written since the last sync.
    unsynced: u64,
    old: File,
    old_path: PathBuf,
    old_format: Format,
    /// The old file's length when the rewrite began: what can be read back.
    old_len: u64,
    /// A slice of the old file, from `window_at`.
    window: Vec<u8>,
    window_at: u64,
    scratch: Vec<u8>,
}

/// How much of the old file one read brings in, and how much encoded
/// output is gathered before one write.
const CHUNK: usize = 1 << 20;
/// A rewrite syncs the new file after each this many bytes, and a retired
/// file is cut by this much at a time: the disk work of replacing a large
/// file comes in pieces of a few milliseconds, not all at once when it is
/// put in place (or when the old one's blocks are freed).
const PIECE: u64 = 16 << 20;

impl Rewrite {
    /// Appends `op`; returns where its record is in the new file.
    pub fn push(&mut self, op: &Op) -> Result<At, Error> {
        let start = self.pending.len();
        record::encode(op, &mut self.pending);
        let at = At {
            offset: self.len,
            len: (self.pending.len() - start) as u64,
        };
        self.len += at.len;
        self.write_if_full()?;
        Ok(at)
    }

    /// Appends records already encoded; returns the offset they start at.
    pub fn push_encoded(&mut self, bytes: &[u8]) -> Result<u64, Error> {
        let at = self.len;
        self.pending.extend_from_slice(bytes);
        self.len += bytes.len() as u64;
        self.write_if_full()?;
        Ok(at)
    }

    fn write_if_full(&mut self) -> Result<(), Error> {
        if self.pending.len() >= CHUNK {
            self.write()?;
        }
        Ok(())
    }

    /// Writes what is gathered (no sync: that is for [`Journal::finish_rewrite`]).
    pub fn write(&mut self) -> Result<(), Error> {
        let at = self.len - self.pending.len() as u64;
        write_all_at(&self.out, &self.pending, at).map_err(io_err("writing", &self.tmp))?;
        self.unsynced += self.pending.len() as u64;
        self.pending.clear();
        if self.unsynced >= PIECE {
            self.out.sync_data().map_err(io_err("syncing", &self.tmp))?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// The record at `offset` in the old file (one that was there when the
    /// rewrite began). Reads in order of offset cost one read per [`CHUNK`].
    pub fn read_old(&mut self, offset: u64) -> Result<Op, Error> {
        let unreadable = || {
            Error::Other(format!(
                "{}: the record at offset {offset} is unreadable",
                self.old_path.display()
            ))
        };
        if offset >= self.old_len {
            return Err(unreadable());
        }
        let mut want = CHUNK as u64;
        loop {
            let end = self.window_at + self.window.len() as u64;
            if (self.window_at..end).contains(&offset) {
                let mut rest = &self.window[(offset - self.window_at) as usize..];
                let read = record::read(
                    &mut rest,
                    self.old_format,
                    offset,
                    self.old_len,
                    &mut self.scratch,
                );
                match read {
                    Ok(Some((op, _))) => return Ok(op),
                    Ok(None) => return Err(unreadable()),
                    // The record runs past the window: read again from it,
                    // at least twice as far.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && end < self.old_len => {
                        want = want.max(2 * (end - offset));
                    }
                    Err(e) => return Err(io_err("reading", &self.old_path)(e)),
                }
            }
            let n = (self.old_len - offset).min(want) as usize;
            self.window.resize(n, 0);
            read_exact_at(&self.old, &mut self.window, offset)
                .map_err(io_err("reading", &self.old_path))?;
            self.window_at = offset;
        }
    }
}

impl Journal {
    /// Opens (creating it if need be) `dir/messages.journal` and hands each
    /// record to `on_op` with where it is. A torn or garbled tail is cut off.
    pub fn open(dir: &Path, mut on_op: impl FnMut(Op, At)) -> Result<(Journal, Opened), Error> {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(io_err("seeking", &path))?;
        let mut head = Vec::with_capacity(MAGIC.len());
        file.seek(SeekFrom::Start(0))
            .and_then(|_| (&mut file).take(MAGIC.len() as u64).read_to_end(&mut head))
            .map_err(io_err("reading", &path))?;

        let mut opened = Opened::default();
        if head.len() < MAGIC.len() {
            if !MAGIC.starts_with(&head) {
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
            opened.created = true;
            let journal = Journal::with(dir, path, file, MAGIC.len() as u64, Format::Binary);
            return Ok((journal, opened));
        }
        let Some(format) = Format::of_magic(&head) else {
            return Err(Error::Other(format!(
                "{} is not a message journal (bad magic)",
                path.display()
            )));
        };
        opened.old_format = format != Format::Binary;

        let mut records = 0;
        let mut counted = |op, at| {
            records += 1;
            on_op(op, at)
        };
        let scanned = {
            let mut reader = BufReader::with_capacity(1 << 16, &mut file);
            record::scan(&mut reader, format, MAGIC.len() as u64, len, &mut counted)
                .map_err(io_err("reading", &path))?
        };
        opened.records = records;
        opened.skipped = scanned.skipped;
        if scanned.good_len < len {
            file.set_len(scanned.good_len)
                .map_err(io_err("truncating", &path))?;
            file.sync_data().map_err(io_err("syncing", &path))?;
            opened.cut_bytes = len - scanned.good_len;
        }
        file.seek(SeekFrom::Start(scanned.good_len))
            .map_err(io_err("seeking", &path))?;
        let journal = Journal::with(dir, path, file, scanned.good_len, format);
        Ok((journal, opened))
    }

    fn with(dir: &Path, path: PathBuf, file: File, good_len: u64, format: Format) -> Journal {
        Journal {
            dir: dir.to_path_buf(),
            path,
            file: Some(file),
            reader: None,
            retired: None,
            good_len,
            needs_repair: false,
            format,
            scratch: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The length up to the end of the last good record.
    pub fn len(&self) -> u64 {
        self.good_len
    }

    /// Writes `bytes` after the last good record (and syncs if asked);
    /// returns the offset they start at. On failure the file is cut back,
    /// now or before the next write.
    pub fn append(&mut self, bytes: &[u8], sync: bool) -> Result<u64, Error> {
        if self.format != Format::Binary {
            return Err(Error::Other(format!(
                "{} is in an older format and was not rewritten",
                self.path.display()
            )));
        }
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
        let written = write_all_at(file, bytes, self.good_len)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                let at = self.good_len;
                self.good_len += bytes.len() as u64;
                Ok(at)
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

    /// The record at `offset` (one this journal wrote or replayed).
    pub fn read_at(&mut self, offset: u64) -> Result<Op, Error> {
        if self.reader.is_none() {
            self.reader = Some(File::open(&self.path).map_err(io_err("opening", &self.path))?);
        }
        let reader = self.reader.as_mut().unwrap();
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(io_err("seeking", &self.path))?;
        match record::read(
            reader,
            self.format,
            offset,
            self.good_len,
            &mut self.scratch,
        ) {
            Ok(Some((op, _))) => Ok(op),
            Ok(None) => Err(Error::Other(format!(
                "{}: the record at offset {offset} is unreadable",
                self.path.display()
            ))),
            Err(e) => Err(io_err("reading", &self.path)(e)),
        }
    }

    /// Hands every record, from the first, to `on_op`: one pass, one
    /// record in memory at a time.
    pub fn for_each(&mut self, on_op: impl FnMut(Op, At)) -> Result<(), Error> {
        let file = File::open(&self.path).map_err(io_err("opening", &self.path))?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        record::scan(
            &mut reader,
            self.format,
            MAGIC.len() as u64,
            self.good_len,
            on_op,
        )
        .map_err(io_err("reading", &self.path))?;
        Ok(())
    }

    /// Starts a new file beside this one.
    pub fn begin_rewrite(&self) -> Result<Rewrite, Error> {
        let tmp = self.dir.join(COMPACT_NAME);
        let out = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        write_all_at(&out, MAGIC, 0).map_err(io_err("writing", &tmp))?;
        // Writable: once replaced, it is cut down before it is closed.
        let old = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(io_err("opening", &self.path))?;
        Ok(Rewrite {
            out,
            tmp,
            len: MAGIC.len() as u64,
            pending: Vec::new(),
            unsynced: 0,
            old,
            old_path: self.path.clone(),
            old_format: self.format,
            old_len: self.good_len,
            window: Vec::new(),
            window_at: 0,
            scratch: Vec::new(),
        })
    }

    /// Syncs the new file and puts it in place of this one.
    pub fn finish_rewrite(&mut self, mut rewrite: Rewrite) -> Result<(), Error> {
        let written = rewrite.write().and_then(|()| {
            rewrite
                .out
                .sync_all()
                .and_then(|()| fs::rename(&rewrite.tmp, &self.path))
                .map_err(|e| Error::Unavailable(format!("compacting {}: {e}", self.path.display())))
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&rewrite.tmp);
            return Err(e);
        }
        sync_dir(&self.dir);
        // The old handles point at the replaced file. One stays open so that
        // its blocks are freed a piece at a time (see `shrink_retired`).
        self.retired = Some(rewrite.old);
        self.reader = None;
        self.needs_repair = false;
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.seek(SeekFrom::End(0))?;
                Ok(f)
            })
            .ok();
        self.good_len = rewrite.len;
        self.format = Format::Binary;
        Ok(())
    }

    /// Frees up to [`PIECE`] bytes of the file a rewrite replaced, from its
    /// end; closes it once it is empty. Best effort: the blocks are freed
    /// when it is closed anyway.
    pub fn shrink_retired(&mut self) {
        let Some(old) = &self.retired else { return };
        let shrunk = old
            .metadata()
            .and_then(|m| {
                let len = m.len().saturating_sub(PIECE);
                old.set_len(len).map(|()| len)
            })
            .unwrap_or(0);
        if shrunk == 0 {
            self.retired = None;
        }
    }

    #[cfg(test)]
    pub fn is_retiring(&self) -> bool {
        self.retired.is_some()
    }

    /// Drops a rewrite that failed half way.
    pub fn abandon_rewrite(&self, rewrite: Rewrite) {
        // The file is closed before it is removed.
        let Rewrite { out, tmp, .. } = rewrite;
        drop(out);
        let _ = fs::remove_file(tmp);
    }
}

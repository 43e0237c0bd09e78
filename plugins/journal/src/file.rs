//! The journal file: records appended after the last good one, read back by
//! offset, and the whole file replaced atomically by a compaction.
//!
//! It knows the framing (`record.rs`), not what the records mean. It must
//! never leave a partial record in front of a later one: when a write or
//! sync fails the file is cut back to the end of the last good record, now
//! or before the next write if that fails too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
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
fn write_all_at(file: &File, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    while !bytes.is_empty() {
        let at = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: the buffer is a live slice of `bytes.len()` bytes, and the
        // descriptor belongs to `file`, which is borrowed for the call.
        let n = unsafe { libc::pwrite(file.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), at) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n as usize..];
        offset += n as u64;
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
    /// The length up to the end of the last good record.
    good_len: u64,
    /// A write failed and the file may hold a partial record after `good_len`.
    needs_repair: bool,
    format: Format,
    scratch: Vec<u8>,
}

/// A compaction in progress: the new file being written.
pub struct Rewrite {
    out: BufWriter<File>,
    tmp: PathBuf,
    len: u64,
    buf: Vec<u8>,
}

impl Rewrite {
    /// Appends `op`; returns where its record is in the new file.
    pub fn push(&mut self, op: &Op) -> Result<At, Error> {
        self.buf.clear();
        record::encode(op, &mut self.buf);
        self.out
            .write_all(&self.buf)
            .map_err(io_err("writing", &self.tmp))?;
        let at = At {
            offset: self.len,
            len: self.buf.len() as u64,
        };
        self.len += at.len;
        Ok(at)
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
        let mut out = BufWriter::with_capacity(
            1 << 16,
            File::create(&tmp).map_err(io_err("creating", &tmp))?,
        );
        out.write_all(MAGIC).map_err(io_err("writing", &tmp))?;
        Ok(Rewrite {
            out,
            tmp,
            len: MAGIC.len() as u64,
            buf: Vec::new(),
        })
    }

    /// Syncs the new file and puts it in place of this one.
    pub fn finish_rewrite(&mut self, rewrite: Rewrite) -> Result<(), Error> {
        let Rewrite { out, tmp, len, .. } = rewrite;
        let written = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::Unavailable(format!(
                "compacting {}: {e}",
                self.path.display()
            )));
        }
        sync_dir(&self.dir);
        // The old handles point at the replaced file.
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
        self.good_len = len;
        self.format = Format::Binary;
        Ok(())
    }

    /// Drops a rewrite that failed half way.
    pub fn abandon_rewrite(&self, rewrite: Rewrite) {
        // The file is closed before it is removed.
        let Rewrite { out, tmp, .. } = rewrite;
        drop(out);
        let _ = fs::remove_file(tmp);
    }
}

//! The journal's on-disk format.
//!
//! A journal file is the 8-byte magic `MAGIC` followed by records, each
//!
//! ```text
//! [u32 LE payload length][u32 LE CRC-32 (IEEE) of the payload][payload]
//! ```
//!
//! where the payload is one [`Op`] in the binary layout of `codec.rs`.
//! Records are only ever appended; `compact` writes a new file of `put`
//! records and renames it over the old one. A file of the first format
//! (`OFNJRNL1`, JSON payloads, same framing) is still read; the store
//! rewrites it in the current one when it opens it.

use std::io::{self, Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use crate::codec;

pub const MAGIC: &[u8; 8] = b"OFNJRNL2";
/// The magic of the first format: JSON payloads.
pub const MAGIC_V1: &[u8; 8] = b"OFNJRNL1";

/// How a file's payloads are written, told by its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `OFNJRNL1`: JSON.
    Json,
    /// `OFNJRNL2`: binary, the current one.
    Binary,
}

impl Format {
    pub fn of_magic(magic: &[u8]) -> Option<Format> {
        if magic == MAGIC {
            Some(Format::Binary)
        } else if magic == MAGIC_V1 {
            Some(Format::Json)
        } else {
            None
        }
    }
}
pub const HEADER_LEN: usize = 8;
/// A payload longer than this is taken as a garbled length.
pub const MAX_PAYLOAD: usize = 1 << 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Leased,
    Done,
    Dead,
}

impl Status {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Leased => "leased",
            Status::Done => "done",
            Status::Dead => "dead",
        }
    }
}

fn pending() -> Status {
    Status::Pending
}

fn is_pending(s: &Status) -> bool {
    *s == Status::Pending
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// One operation on the store, as journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// A message with its whole state: written by `enqueue` (pending, no
    /// attempts) and by `compact` (whatever state it had).
    Put {
        id: String,
        body: String,
        source: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        meta: Vec<(String, String)>,
        /// Enqueued at (Unix ms).
        t: u64,
        #[serde(default = "pending", skip_serializing_if = "is_pending")]
        st: Status,
        #[serde(default, skip_serializing_if = "is_zero_u32")]
        n: u32,
        #[serde(default, skip_serializing_if = "is_zero_u64")]
        nb: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        err: Option<String>,
        /// Finished (done or dead) at.
        #[serde(default, skip_serializing_if = "is_zero_u64")]
        fin: u64,
        /// Leased until (when `st` is leased: stored already leased by `enqueue`).
        #[serde(default, skip_serializing_if = "is_zero_u64")]
        lu: u64,
    },
    /// Leased until `until`; counts an attempt.
    Lease {
        id: String,
        t: u64,
        until: u64,
    },
    Ack {
        id: String,
        t: u64,
    },
    /// Pending again, not before `nb`.
    Nack {
        id: String,
        t: u64,
        nb: u64,
        err: String,
    },
    Dead {
        id: String,
        t: u64,
        err: String,
    },
    /// Pending again with attempts reset.
    Requeue {
        id: String,
        t: u64,
    },
}

impl Op {
    pub fn id(&self) -> &str {
        match self {
            Op::Put { id, .. }
            | Op::Lease { id, .. }
            | Op::Ack { id, .. }
            | Op::Nack { id, .. }
            | Op::Dead { id, .. }
            | Op::Requeue { id, .. } => id,
        }
    }
}

/// CRC-32 (IEEE 802.3, the one of zip and PNG).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Appends `op` as one framed record, in the current format, to `out`.
pub fn encode(op: &Op, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    codec::encode(op, out);
    let payload = &out[start + HEADER_LEN..];
    let (len, crc) = (payload.len() as u32, crc32(payload));
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the record at `offset`, where `reader` stands, in a file of
/// `file_len` bytes: the op and the offset after it, or `None` if it is
/// torn (short header or payload), garbled (length out of range, CRC
/// mismatch) or undecodable. `buf` is scratch space, reused across calls.
pub fn read<R: Read>(
    reader: &mut R,
    format: Format,
    offset: u64,
    file_len: u64,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(Op, u64)>> {
    let rest = file_len.saturating_sub(offset);
    if rest < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    reader.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
    if len > MAX_PAYLOAD || rest - (HEADER_LEN as u64) < len as u64 {
        return Ok(None);
    }
    buf.clear();
    buf.resize(len, 0);
    reader.read_exact(buf)?;
    if crc32(buf) != crc {
        return Ok(None);
    }
    let next = offset + (HEADER_LEN + len) as u64;
    let op = match format {
        Format::Binary => codec::decode(buf),
        Format::Json => codec::decode_json(buf),
    };
    Ok(op.map(|op| (op, next)))
}

/// Where a record sits in the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct At {
    pub offset: u64,
    /// Header included.
    pub len: u64,
}

/// Where a scan stopped.
#[derive(Debug, Default, PartialEq)]
pub struct Scanned {
    /// Where the last good record ends: the file is cut there.
    pub good_len: u64,
    /// The bad record at `good_len`, if any, plus the intact records that
    /// follow it and are dropped with it.
    pub skipped: u64,
}

/// Hands each record from `start` to `on_op` (with where it is), until the
/// end or the first bad one. One record is in memory at a time, so opening
/// a large journal costs its index, not its size.
pub fn scan<R: Read + Seek>(
    reader: &mut R,
    format: Format,
    start: u64,
    file_len: u64,
    mut on_op: impl FnMut(Op, At),
) -> io::Result<Scanned> {
    let mut buf = Vec::new();
    let mut offset = start;
    reader.seek(SeekFrom::Start(start))?;
    while offset < file_len {
        match read(reader, format, offset, file_len, &mut buf)? {
            Some((op, next)) => {
                on_op(
                    op,
                    At {
                        offset,
                        len: next - offset,
                    },
                );
                offset = next;
            }
            None => break,
        }
    }
    let good_len = offset;
    let mut skipped = 0;
    if offset < file_len {
        skipped = 1;
        // Count the intact records behind the bad one, if its length field
        // still frames them: they go too, the journal being append-only.
        if file_len - offset >= HEADER_LEN as u64 {
            reader.seek(SeekFrom::Start(offset))?;
            let mut len = [0u8; 4];
            reader.read_exact(&mut len)?;
            let len = u32::from_le_bytes(len) as u64;
            let mut next = offset + HEADER_LEN as u64 + len;
            if len <= MAX_PAYLOAD as u64 && next < file_len {
                reader.seek(SeekFrom::Start(next))?;
                while next < file_len {
                    match read(reader, format, next, file_len, &mut buf)? {
                        Some((_, after)) => {
                            skipped += 1;
                            next = after;
                        }
                        None => break,
                    }
                }
            }
        }
    }
    Ok(Scanned { good_len, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scan of a whole buffer: the ops kept, where the good part ends,
    /// how many records were skipped.
    struct Scan {
        ops: Vec<Op>,
        good_len: usize,
        skipped: u64,
    }

    fn scan(buf: &[u8], start: usize) -> Scan {
        let mut ops = Vec::new();
        let mut reader = io::Cursor::new(buf);
        let end = buf.len() as u64;
        let scanned = super::scan(&mut reader, Format::Binary, start as u64, end, |op, _at| {
            ops.push(op)
        })
        .unwrap();
        Scan {
            ops,
            good_len: scanned.good_len as usize,
            skipped: scanned.skipped,
        }
    }

    fn ack(id: &str, t: u64) -> Op {
        Op::Ack {
            id: id.to_string(),
            t,
        }
    }

    #[test]
    fn crc32_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn records_round_trip() {
        let ops = crate::codec::tests::every_op();
        let mut buf = MAGIC.to_vec();
        for op in &ops {
            encode(op, &mut buf);
        }
        let scan = scan(&buf, MAGIC.len());
        assert_eq!(scan.ops, ops);
        assert_eq!(scan.good_len, buf.len());
        assert_eq!(scan.skipped, 0);
    }

    #[test]
    fn every_torn_tail_is_cut_at_the_last_good_record() {
        let mut buf = Vec::new();
        encode(&ack("a", 1), &mut buf);
        let first = buf.len();
        encode(&ack("b", 2), &mut buf);
        for cut in first + 1..buf.len() {
            let scan = scan(&buf[..cut], 0);
            assert_eq!(scan.ops, vec![ack("a", 1)], "cut at {cut}");
            assert_eq!(scan.good_len, first);
            assert_eq!(scan.skipped, 1);
        }
    }

    #[test]
    fn a_bad_crc_drops_the_record_and_the_ones_behind_it() {
        let mut buf = Vec::new();
        encode(&ack("a", 1), &mut buf);
        let first = buf.len();
        encode(&ack("b", 2), &mut buf);
        encode(&ack("c", 3), &mut buf);
        encode(&ack("d", 4), &mut buf);
        buf[first + HEADER_LEN + 3] ^= 0x20;
        let scan = scan(&buf, 0);
        assert_eq!(scan.ops, vec![ack("a", 1)]);
        assert_eq!(scan.good_len, first);
        assert_eq!(scan.skipped, 3);
    }

    #[test]
    fn garbage_and_zeros_are_bad_records() {
        let mut buf = Vec::new();
        encode(&ack("a", 1), &mut buf);
        let first = buf.len();
        // A preallocated, never written tail: a zero length has CRC 0, but
        // an empty payload does not decode.
        let mut zeros = buf.clone();
        zeros.extend_from_slice(&[0u8; 4096]);
        let s = scan(&zeros, 0);
        assert_eq!((s.good_len, s.skipped), (first, 1));
        // A huge length.
        let mut huge = buf.clone();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let s = scan(&huge, 0);
        assert_eq!((s.good_len, s.skipped), (first, 1));
        // A valid frame around a payload that is not an op.
        let mut alien = buf.clone();
        let payload = br#"{"op":"explode"}"#;
        alien.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        alien.extend_from_slice(&crc32(payload).to_le_bytes());
        alien.extend_from_slice(payload);
        let s = scan(&alien, 0);
        assert_eq!((s.ops.len(), s.good_len, s.skipped), (1, first, 1));
    }
}

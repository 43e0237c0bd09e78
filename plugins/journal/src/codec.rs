//! The payload of one record: an [`Op`] in the journal's binary layout.
//!
//! All integers little-endian; a string is a `u32` length then its UTF-8
//! bytes; an optional string is a `u8` (0 or 1) then the string if 1.
//!
//! ```text
//! put      1 id t:u64 st:u8 n:u32 nb:u64 fin:u64 lu:u64 err:opt source meta:u32×(key value) body
//! lease    2 id t:u64 until:u64
//! ack      3 id t:u64
//! nack     4 id t:u64 nb:u64 err
//! dead     5 id t:u64 err
//! requeue  6 id t:u64
//! ```
//!
//! The body goes last, so nothing after it needs to be found. The first
//! format (`OFNJRNL1`) had JSON payloads; [`decode_json`] still reads them.
//! Decoding never panics: anything that does not fit the layout exactly
//! (short, trailing bytes, bad UTF-8, unknown tag or status) is `None`.

use crate::record::{Op, Status};

const PUT: u8 = 1;
const LEASE: u8 = 2;
const ACK: u8 = 3;
const NACK: u8 = 4;
const DEAD: u8 = 5;
const REQUEUE: u8 = 6;

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

fn status_code(s: Status) -> u8 {
    match s {
        Status::Pending => 0,
        Status::Leased => 1,
        Status::Done => 2,
        Status::Dead => 3,
    }
}

/// Appends `op`'s payload to `out`.
pub fn encode(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::Put {
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
        } => {
            let meta_len: usize = meta.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
            out.reserve(64 + id.len() + source.len() + meta_len + body.len());
            out.push(PUT);
            put_str(out, id);
            put_u64(out, *t);
            out.push(status_code(*st));
            put_u32(out, *n);
            put_u64(out, *nb);
            put_u64(out, *fin);
            put_u64(out, *lu);
            match err {
                Some(e) => {
                    out.push(1);
                    put_str(out, e);
                }
                None => out.push(0),
            }
            put_str(out, source);
            put_u32(out, meta.len() as u32);
            for (k, v) in meta {
                put_str(out, k);
                put_str(out, v);
            }
            put_str(out, body);
        }
        Op::Lease { id, t, until } => {
            out.push(LEASE);
            put_str(out, id);
            put_u64(out, *t);
            put_u64(out, *until);
        }
        Op::Ack { id, t } => {
            out.push(ACK);
            put_str(out, id);
            put_u64(out, *t);
        }
        Op::Nack { id, t, nb, err } => {
            out.push(NACK);
            put_str(out, id);
            put_u64(out, *t);
            put_u64(out, *nb);
            put_str(out, err);
        }
        Op::Dead { id, t, err } => {
            out.push(DEAD);
            put_str(out, id);
            put_u64(out, *t);
            put_str(out, err);
        }
        Op::Requeue { id, t } => {
            out.push(REQUEUE);
            put_str(out, id);
            put_u64(out, *t);
        }
    }
}

/// Reads fields off the front of a payload.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }

    fn str(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).ok().map(str::to_string)
    }

    fn status(&mut self) -> Option<Status> {
        Some(match self.u8()? {
            0 => Status::Pending,
            1 => Status::Leased,
            2 => Status::Done,
            3 => Status::Dead,
            _ => return None,
        })
    }

    fn opt_str(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.str().map(Some),
            _ => None,
        }
    }
}

/// The op in a payload, if it is exactly one.
pub fn decode(payload: &[u8]) -> Option<Op> {
    let mut f = Fields(payload);
    let op = match f.u8()? {
        PUT => {
            let id = f.str()?;
            let t = f.u64()?;
            let st = f.status()?;
            let n = f.u32()?;
            let nb = f.u64()?;
            let fin = f.u64()?;
            let lu = f.u64()?;
            let err = f.opt_str()?;
            let source = f.str()?;
            let count = f.u32()? as usize;
            // Each pair takes at least 8 bytes: a garbled count cannot
            // make this allocate more than the payload.
            let mut meta = Vec::with_capacity(count.min(f.0.len() / 8));
            for _ in 0..count {
                meta.push((f.str()?, f.str()?));
            }
            let body = f.str()?;
            Op::Put {
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
            }
        }
        LEASE => Op::Lease {
            id: f.str()?,
            t: f.u64()?,
            until: f.u64()?,
        },
        ACK => Op::Ack {
            id: f.str()?,
            t: f.u64()?,
        },
        NACK => Op::Nack {
            id: f.str()?,
            t: f.u64()?,
            nb: f.u64()?,
            err: f.str()?,
        },
        DEAD => Op::Dead {
            id: f.str()?,
            t: f.u64()?,
            err: f.str()?,
        },
        REQUEUE => Op::Requeue {
            id: f.str()?,
            t: f.u64()?,
        },
        _ => return None,
    };
    f.0.is_empty().then_some(op)
}

/// The op in a payload of the first format (JSON).
pub fn decode_json(payload: &[u8]) -> Option<Op> {
    serde_json::from_slice(payload).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One of each op, edge values included (the framing tests use it too).
    pub(crate) fn every_op() -> Vec<Op> {
        vec![
            Op::Put {
                id: "0000000000005-00000000abcd-1".into(),
                body: r#"{"x":"é \" \\ 1"}"#.into(),
                source: "inbox".into(),
                meta: vec![("k".into(), "v".into()), ("waiter".into(), "".into())],
                t: 5,
                st: Status::Leased,
                n: 1,
                nb: 5,
                err: Some("no".into()),
                fin: 0,
                lu: 600_005,
            },
            Op::Put {
                id: "b".into(),
                body: String::new(),
                source: String::new(),
                meta: vec![],
                t: u64::MAX,
                st: Status::Dead,
                n: u32::MAX,
                nb: 0,
                err: None,
                fin: 7,
                lu: 0,
            },
            Op::Lease {
                id: "a".into(),
                t: 6,
                until: 100,
            },
            Op::Ack {
                id: "a".into(),
                t: 10,
            },
            Op::Nack {
                id: "a".into(),
                t: 7,
                nb: 70,
                err: "later".into(),
            },
            Op::Dead {
                id: "a".into(),
                t: 8,
                err: "gone".into(),
            },
            Op::Requeue {
                id: "a".into(),
                t: 9,
            },
        ]
    }

    #[test]
    fn every_op_round_trips() {
        for op in every_op() {
            let mut buf = Vec::new();
            encode(&op, &mut buf);
            assert_eq!(decode(&buf), Some(op));
        }
    }

    #[test]
    fn anything_but_exactly_one_op_is_refused() {
        for op in every_op() {
            let mut buf = Vec::new();
            encode(&op, &mut buf);
            // Every shorter prefix, and one byte too many.
            for cut in 0..buf.len() {
                assert_eq!(decode(&buf[..cut]), None, "{op:?} cut at {cut}");
            }
            buf.push(0);
            assert_eq!(decode(&buf), None, "{op:?} with a trailing byte");
        }
        assert_eq!(decode(&[9, 0, 0, 0, 0]), None, "unknown tag");
        // Bad UTF-8 in an id.
        assert_eq!(
            decode(&[ACK, 1, 0, 0, 0, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        // A huge metadata count does not allocate for it.
        let mut huge = vec![PUT];
        put_str(&mut huge, "i");
        huge.extend_from_slice(&[0; 8 + 1 + 4 + 8 + 8 + 8]);
        huge.push(0);
        put_str(&mut huge, "s");
        put_u32(&mut huge, u32::MAX);
        assert_eq!(decode(&huge), None);
    }

    #[test]
    fn the_first_formats_json_still_reads() {
        let json = br#"{"op":"put","id":"i","body":"1","source":"s","t":1}"#;
        assert_eq!(
            decode_json(json),
            Some(Op::Put {
                id: "i".into(),
                body: "1".into(),
                source: "s".into(),
                meta: vec![],
                t: 1,
                st: Status::Pending,
                n: 0,
                nb: 0,
                err: None,
                fin: 0,
                lu: 0,
            })
        );
        assert_eq!(
            decode_json(br#"{"op":"ack","id":"i","t":2}"#),
            Some(Op::Ack {
                id: "i".into(),
                t: 2
            })
        );
    }
}

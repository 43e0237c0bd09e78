//! From a body as it arrived (bytes, `Content-Type`, `Content-Encoding`) to
//! JSON: the one decoding step in front of matching.
//!
//! - `Content-Encoding` `gzip`, `deflate` (zlib, or raw deflate as some
//!   senders mean it) and `br`, in any sequence, are undone with flate2 and
//!   brotli-decompressor; the decoded size is capped at the body limit, so a
//!   compression bomb costs at most that much memory and is refused with 413.
//! - A `charset` parameter (or a UTF-8/UTF-16 byte-order mark, or for XML
//!   without either, the encoding its declaration names) is honoured with
//!   encoding_rs; the text is UTF-8 from then on.
//! - JSON types (and no `Content-Type` at all) stay JSON text, a UTF-8 BOM
//!   dropped; the common case (plain UTF-8 JSON, no encoding) is not copied.
//!   Forms ([`super::form`]) and XML ([`super::xml`]) become a JSON value.
//! - An empty body, whatever its type, is `{}` (as the original took it).
//!
//! Every refusal is a [`DecodeError`] that says what was wrong and maps to
//! a 4xx. This module never allocates more than the body limit for what it
//! decodes, and never panics on input.

use std::io::Read;

use bytes::Bytes;
use encoding_rs::{Encoding, UTF_8};
use serde_json::Value;

use super::{form, xml};

/// A body decoded for matching.
#[derive(Debug)]
pub enum Decoded {
    /// JSON text, UTF-8, no BOM; not parsed yet, so that a receipt no
    /// trigger can match need never be built into a [`Value`].
    Json(Bytes),
    /// A form or an XML document, already converted.
    Value(Value),
}

/// What the body is, by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Json,
    Form,
    Multipart,
    Xml,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "Content-Type `{0}` is not accepted; send JSON (application/json), a form (application/x-www-form-urlencoded or multipart/form-data) or XML (application/xml, text/xml)"
    )]
    UnsupportedType(String),
    #[error("Content-Encoding `{0}` is not supported; use gzip, deflate or br")]
    UnsupportedEncoding(String),
    #[error("charset `{0}` is not known")]
    UnknownCharset(String),
    #[error("the body is not valid {0}")]
    BadText(&'static str),
    #[error(
        "the body is larger than the limit of {limit} bytes once decoded ([inbox] max_body_bytes)"
    )]
    TooLarge { limit: usize },
    #[error("the {encoding} body could not be decoded: {why}")]
    Corrupt { encoding: String, why: String },
    #[error("the body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the body is not valid XML: {0}")]
    Xml(String),
    #[error("{0}")]
    TooComplex(String),
    #[error("the form is malformed: {0}")]
    Form(String),
    #[error("{0}")]
    Refused(String),
    /// Decoding itself failed (a bug, never the input's fault).
    #[error("{0}")]
    Internal(String),
}

impl DecodeError {
    /// The HTTP status this refusal answers with.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::UnsupportedType(_)
            | DecodeError::UnsupportedEncoding(_)
            | DecodeError::UnknownCharset(_)
            | DecodeError::Refused(_) => 415,
            DecodeError::TooLarge { .. } | DecodeError::TooComplex(_) => 413,
            DecodeError::Internal(_) => 500,
            _ => 400,
        }
    }
}

/// The media type's essence, lower case, without parameters.
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// The body's kind by its `Content-Type`; no header at all is JSON.
pub fn kind_of(content_type: Option<&str>) -> Result<Kind, DecodeError> {
    let Some(ct) = content_type else {
        return Ok(Kind::Json);
    };
    // What nearly every sender writes, taken before any splitting.
    if ct == "application/json" {
        return Ok(Kind::Json);
    }
    let e = essence(ct);
    let ends_with = |suffix: &str| {
        e.len() > suffix.len()
            && e.is_char_boundary(e.len() - suffix.len())
            && e[e.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    // Compared in place: this runs on every receipt.
    if e.eq_ignore_ascii_case("application/json")
        || e.eq_ignore_ascii_case("text/json")
        || ends_with("+json")
    {
        Ok(Kind::Json)
    } else if e.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(Kind::Form)
    } else if e.eq_ignore_ascii_case("multipart/form-data") {
        Ok(Kind::Multipart)
    } else if e.eq_ignore_ascii_case("application/xml")
        || e.eq_ignore_ascii_case("text/xml")
        || ends_with("+xml")
    {
        Ok(Kind::Xml)
    } else {
        Err(DecodeError::UnsupportedType(ct.to_string()))
    }
}

/// The value of parameter `name` of a media type, unquoted.
pub fn parameter<'a>(content_type: &'a str, name: &str) -> Option<&'a str> {
    // Most senders give none: no splitting then (this runs on every receipt).
    let (_, parameters) = content_type.split_once(';')?;
    parameters.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// The encoding a `charset` parameter names; `None` for UTF-8 (or none given).
pub fn charset(content_type: Option<&str>) -> Result<Option<&'static Encoding>, DecodeError> {
    // What nearly every sender writes has no parameters to look through.
    let given = content_type.filter(|ct| *ct != "application/json");
    let Some(label) = given.and_then(|ct| parameter(ct, "charset")) else {
        return Ok(None);
    };
    match Encoding::for_label(label.as_bytes()) {
        None => Err(DecodeError::UnknownCharset(label.to_string())),
        Some(enc) if enc == UTF_8 => Ok(None),
        Some(enc) => Ok(Some(enc)),
    }
}

/// Text in `encoding` (or, without one, UTF-8 unless a BOM says otherwise)
/// as UTF-8, BOM removed.
pub fn to_utf8(body: Bytes, encoding: Option<&'static Encoding>) -> Result<Bytes, DecodeError> {
    let (enc, bom) = match Encoding::for_bom(&body) {
        Some((enc, len)) => (enc, len),
        None => (encoding.unwrap_or(UTF_8), 0),
    };
    if enc == UTF_8 {
        return Ok(body.slice(bom..));
    }
    enc.decode_without_bom_handling_and_without_replacement(&body[bom..])
        .map(|text| Bytes::from(text.into_owned()))
        .ok_or(DecodeError::BadText(enc.name()))
}

/// Undoes `Content-Encoding` (codings listed in the order they were
/// applied), refusing a result longer than `limit`.
pub fn decompress(body: Bytes, codings: &str, limit: usize) -> Result<Bytes, DecodeError> {
    let mut body = body;
    for coding in codings.rsplit(',').map(str::trim).filter(|c| !c.is_empty()) {
        let c = coding.to_ascii_lowercase();
        body = match c.as_str() {
            "identity" => body,
            "gzip" | "x-gzip" => {
                read_capped(flate2::read::MultiGzDecoder::new(&body[..]), &c, limit)?
            }
            "deflate" if zlib_header(&body) => {
                read_capped(flate2::read::ZlibDecoder::new(&body[..]), &c, limit)?
            }
            // Raw deflate without the zlib wrapper, as some senders mean it.
            "deflate" => read_capped(flate2::read::DeflateDecoder::new(&body[..]), &c, limit)?,
            "br" => read_capped(
                brotli_decompressor::Decompressor::new(&body[..], 8192),
                &c,
                limit,
            )?,
            _ => return Err(DecodeError::UnsupportedEncoding(coding.to_string())),
        };
    }
    Ok(body)
}

/// Whether `data` starts with a zlib header (RFC 1950: deflate, and the
/// two header bytes a multiple of 31).
fn zlib_header(data: &[u8]) -> bool {
    data.len() >= 2
        && data[0] & 0x0f == 8
        && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0
}

fn read_capped(reader: impl Read, coding: &str, limit: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly the limit" from "more".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt {
            encoding: coding.to_string(),
            why: match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "it is truncated".to_string(),
                _ => e.to_string(),
            },
        })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// JSON text as it will be matched: BOM dropped, `{}` for nothing at all.
fn json_text(text: Bytes) -> Bytes {
    if text.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        text
    }
}

/// Decodes a body of `kind` after undoing its `Content-Encoding`.
/// Multipart bodies go through [`super::form::multipart`] instead; the
/// caller hands them over with what it wants of them.
pub fn decode(
    body: Bytes,
    content_type: Option<&str>,
    kind: Kind,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Decoded, DecodeError> {
    let encoding = charset(content_type)?;
    // The common case: plain UTF-8 JSON, taken as it is.
    let plain = content_encoding.is_none() && encoding.is_none();
    if kind == Kind::Json
        && plain
        && !body
            .first()
            .is_some_and(|b| matches!(b, 0xEF | 0xFE | 0xFF))
    {
        return Ok(Decoded::Json(json_text(body)));
    }
    let body = match content_encoding {
        Some(codings) => decompress(body, codings, limit)?,
        None => body,
    };
    if body.is_empty() {
        return Ok(Decoded::Json(json_text(body)));
    }
    match kind {
        Kind::Json => Ok(Decoded::Json(json_text(to_utf8(body, encoding)?))),
        Kind::Form => form::urlencoded(&body, encoding).map(Decoded::Value),
        Kind::Xml => {
            let given = content_type.is_some_and(|ct| parameter(ct, "charset").is_some());
            let encoding = match encoding {
                None if !given => xml::declared_encoding(&body)?,
                encoding => encoding,
            };
            let text = to_utf8(body, encoding)?;
            let text = std::str::from_utf8(&text).map_err(|_| DecodeError::BadText("UTF-8"))?;
            xml::to_json(text).map(Decoded::Value)
        }
        Kind::Multipart => Err(DecodeError::Refused(
            "a multipart body is decoded by the form module".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn json_of(d: Decoded) -> Value {
        match d {
            Decoded::Json(b) => serde_json::from_slice(&b).unwrap(),
            Decoded::Value(v) => v,
        }
    }

    fn dec(body: &[u8], ct: Option<&str>, ce: Option<&str>) -> Result<Value, DecodeError> {
        let kind = kind_of(ct)?;
        decode(Bytes::copy_from_slice(body), ct, kind, ce, 1024).map(json_of)
    }

    #[test]
    fn kinds_by_content_type() {
        for (ct, kind) in [
            ("application/json", Kind::Json),
            ("Application/JSON; charset=utf-8", Kind::Json),
            ("application/vnd.api+json", Kind::Json),
            ("text/json", Kind::Json),
            ("application/x-www-form-urlencoded", Kind::Form),
            ("multipart/form-data; boundary=x", Kind::Multipart),
            ("application/xml", Kind::Xml),
            ("text/xml; charset=iso-8859-1", Kind::Xml),
            ("application/atom+xml", Kind::Xml),
        ] {
            assert_eq!(kind_of(Some(ct)).unwrap(), kind, "{ct}");
        }
        assert_eq!(kind_of(None).unwrap(), Kind::Json);
        for bad in [
            "text/plain",
            "json",
            "+json",
            "été+jso",
            "",
            "application/octet-stream",
        ] {
            let e = kind_of(Some(bad)).unwrap_err();
            assert_eq!(e.status(), 415, "{bad}");
        }
    }

    #[test]
    fn plain_json_is_not_copied_and_bom_and_empty_are_handled() {
        let body = Bytes::from_static(br#"{"a":1}"#);
        let Decoded::Json(out) = decode(body.clone(), None, Kind::Json, None, 1024).unwrap() else {
            panic!()
        };
        assert_eq!(out.as_ptr(), body.as_ptr());
        assert_eq!(
            dec(b"\xEF\xBB\xBF{\"a\":1}", Some("application/json"), None).unwrap()["a"],
            1
        );
        assert_eq!(
            dec(b"", Some("application/json"), None).unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            dec(b"", Some("application/xml"), None).unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            dec(b"", None, Some("identity")).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn charsets_are_transcoded_and_unknown_ones_refused() {
        let latin1 = b"{\"name\":\"Jos\xE9\"}";
        let v = dec(latin1, Some("application/json; charset=ISO-8859-1"), None).unwrap();
        assert_eq!(v["name"], "José");
        let utf16: Vec<u8> = "\u{feff}{\"n\":\"é\"}"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(
            dec(&utf16, Some("application/json"), None).unwrap()["n"],
            "é"
        );
        // XML without a charset parameter: its declaration says.
        let declared = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><p><n>Jos\xE9</n></p>";
        assert_eq!(
            dec(declared, Some("text/xml"), None).unwrap(),
            serde_json::json!({"p": {"n": "José"}})
        );
        // A charset parameter wins over the declaration.
        let utf8 = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><p><n>José</n></p>";
        assert_eq!(
            dec(utf8.as_bytes(), Some("text/xml; charset=utf-8"), None).unwrap()["p"]["n"],
            "José"
        );
        let e = dec(b"{}", Some("application/json; charset=klingon"), None).unwrap_err();
        assert_eq!(e.status(), 415);
        assert_eq!(e.to_string(), "charset `klingon` is not known");
        let e = dec(
            b"{\"a\":\"\xff\"}",
            Some("application/json; charset=shift_jis"),
            None,
        )
        .unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
    }

    #[test]
    fn compressed_bodies_are_decoded_and_capped() {
        let body = br#"{"kind":"gzip"}"#;
        assert_eq!(
            dec(&gzip(body), None, Some("gzip")).unwrap()["kind"],
            "gzip"
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(body).unwrap();
        assert_eq!(
            dec(&z.finish().unwrap(), None, Some("deflate")).unwrap()["kind"],
            "gzip"
        );
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(body).unwrap();
        assert_eq!(
            dec(&raw.finish().unwrap(), None, Some("Deflate")).unwrap()["kind"],
            "gzip"
        );
        let mut br = Vec::new();
        brotli::BrotliCompress(&mut &body[..], &mut br, &Default::default()).unwrap();
        assert_eq!(dec(&br, None, Some("br")).unwrap()["kind"], "gzip");
        // Two codings, applied gzip first.
        let mut twice = Vec::new();
        brotli::BrotliCompress(&mut &gzip(body)[..], &mut twice, &Default::default()).unwrap();
        assert_eq!(dec(&twice, None, Some("gzip, br")).unwrap()["kind"], "gzip");

        let bomb = gzip(&vec![b' '; 100_000]);
        let e = dec(&bomb, None, Some("gzip")).unwrap_err();
        assert_eq!(e.status(), 413, "{e}");
        let whole = gzip(body);
        let e = dec(&whole[..whole.len() - 6], None, Some("gzip")).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        assert!(e.to_string().contains("gzip"), "{e}");
        let e = dec(b"not gzip at all", None, Some("gzip")).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        let e = dec(body, None, Some("compress")).unwrap_err();
        assert_eq!(
            (e.status(), e.to_string().contains("`compress`")),
            (415, true)
        );
    }
}

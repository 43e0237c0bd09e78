//! Forms as JSON objects: `application/x-www-form-urlencoded` (with
//! form_urlencoded) and `multipart/form-data` (with multer).
//!
//! Each field becomes a key of the object and its value a string; a name
//! sent more than once becomes an array of its values, in the order sent
//! (`a=1&a=2` is `{"a": ["1", "2"]}`). In a multipart body, a file part
//! whose type is JSON or XML is decoded into the object under its field
//! name; any other file is refused, naming the part. For an OpenRosa
//! submission ([`Purpose::OpenRosa`]) the `xml_submission_file` part is the
//! receipt and the other parts are its attachments, described (name, file
//! name, type, size), not kept. Nothing here keeps a file's bytes.

use bytes::Bytes;
use encoding_rs::Encoding;
use serde_json::{Map, Value, json};

use super::decode::{DecodeError, Kind, charset, kind_of, to_utf8};
use super::fields::Fields;
use super::xml;

/// What a multipart body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A form posted to `/inbox`.
    Inbox,
    /// An OpenRosa form submission.
    OpenRosa,
}

/// A multipart body decoded.
#[derive(Debug, Default)]
pub struct Multipart {
    pub value: Value,
    /// OpenRosa: the parts besides the form instance.
    pub attachments: Vec<Value>,
}

/// The part of an OpenRosa submission that holds the form instance.
pub const XML_SUBMISSION_FILE: &str = "xml_submission_file";

/// `application/x-www-form-urlencoded` as an object.
pub fn urlencoded(body: &[u8], encoding: Option<&'static Encoding>) -> Result<Value, DecodeError> {
    let mut fields = Fields::default();
    match encoding {
        None => {
            for (name, value) in form_urlencoded::parse(body) {
                fields.insert(name.into_owned(), Value::String(value.into_owned()));
            }
        }
        // The escapes stand for bytes of that charset: unescaped first,
        // then decoded.
        Some(enc) => {
            for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
                let mut halves = pair.splitn(2, |b| *b == b'=');
                let name = unescape(halves.next().unwrap_or_default(), enc)?;
                let value = unescape(halves.next().unwrap_or_default(), enc)?;
                fields.insert(name, Value::String(value));
            }
        }
    }
    Ok(Value::Object(fields.into_map()))
}

fn unescape(part: &[u8], enc: &'static Encoding) -> Result<String, DecodeError> {
    let spaced: Vec<u8> = part
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    enc.decode_without_bom_handling_and_without_replacement(&bytes)
        .map(|s| s.into_owned())
        .ok_or(DecodeError::BadText(enc.name()))
}

/// `multipart/form-data` as an object (see the module docs).
pub async fn multipart(
    body: Bytes,
    content_type: &str,
    purpose: Purpose,
    limit: usize,
) -> Result<Multipart, DecodeError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| DecodeError::Form("the multipart Content-Type has no boundary".into()))?;
    let stream = futures_util::stream::once(std::future::ready(Ok::<Bytes, std::io::Error>(body)));
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit as u64));
    let mut parts = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut out = Multipart::default();
    let mut fields = Fields::default();
    let mut instance = None;
    while let Some(field) = parts.next_field().await.map_err(malformed)? {
        let name = field
            .name()
            .map(str::to_string)
            .ok_or_else(|| DecodeError::Form(format!("part {} has no name", field.index() + 1)))?;
        let file_name = field.file_name().map(str::to_string);
        let part_type = field.content_type().map(|m| m.to_string());
        let data = field.bytes().await.map_err(malformed)?;
        if purpose == Purpose::OpenRosa {
            if name == XML_SUBMISSION_FILE {
                if instance.is_some() {
                    return Err(DecodeError::Form(format!(
                        "more than one `{XML_SUBMISSION_FILE}` part"
                    )));
                }
                instance = Some(file_value(
                    &name,
                    part_type.as_deref().or(Some("text/xml")),
                    data,
                )?);
            } else {
                out.attachments.push(json!({
                    "name": name,
                    "filename": file_name,
                    "content_type": part_type,
                    "size": data.len(),
                }));
            }
            continue;
        }
        let is_text = file_name.is_none()
            && part_type.as_deref().is_none_or(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("text/plain")
            });
        let value = if is_text {
            let text = to_utf8(data, charset(part_type.as_deref())?)?;
            Value::String(
                String::from_utf8(text.to_vec()).map_err(|_| DecodeError::BadText("UTF-8"))?,
            )
        } else {
            file_value(&name, part_type.as_deref(), data)?
        };
        fields.insert(name, value);
    }
    out.value = match purpose {
        Purpose::Inbox => Value::Object(fields.into_map()),
        Purpose::OpenRosa => instance.ok_or_else(|| {
            DecodeError::Form(format!(
                "an OpenRosa submission needs a `{XML_SUBMISSION_FILE}` part holding the form instance"
            ))
        })?,
    };
    Ok(out)
}

/// An OpenRosa instance's `meta/instanceID` (prefixed or not), which
/// names one filled-in form however often it is sent.
pub fn instance_id(instance: &Value) -> Option<&str> {
    let local = |key: &str, name: &str| key.rsplit(':').next() == Some(name);
    let form = instance.as_object()?.values().next()?.as_object()?;
    let meta = form.iter().find(|(k, _)| local(k, "meta"))?.1.as_object()?;
    meta.iter()
        .find(|(k, _)| local(k, "instanceID"))?
        .1
        .as_str()
        .filter(|id| !id.is_empty())
}

/// A file part decoded by its type: JSON or XML; anything else is refused.
fn file_value(name: &str, part_type: Option<&str>, data: Bytes) -> Result<Value, DecodeError> {
    let refused = || {
        DecodeError::Refused(format!(
            "part `{name}` is a file of type `{}`; only JSON and XML files are taken",
            part_type.unwrap_or("text/plain")
        ))
    };
    let kind = kind_of(Some(part_type.unwrap_or("text/plain"))).map_err(|_| refused())?;
    let text = to_utf8(data, charset(part_type)?)?;
    let in_part = |e: DecodeError| DecodeError::Form(format!("part `{name}`: {e}"));
    match kind {
        Kind::Json if text.is_empty() => Ok(Value::Object(Map::new())),
        Kind::Json => serde_json::from_slice(&text).map_err(|e| in_part(e.into())),
        Kind::Xml => {
            let text = std::str::from_utf8(&text).map_err(|_| DecodeError::BadText("UTF-8"))?;
            xml::to_json(text).map_err(in_part)
        }
        Kind::Form | Kind::Multipart => Err(refused()),
    }
}

fn malformed(e: multer::Error) -> DecodeError {
    match e {
        multer::Error::IncompleteStream | multer::Error::IncompleteFieldData { .. } => {
            DecodeError::Form("the multipart body ends before its closing boundary".into())
        }
        multer::Error::StreamSizeExceeded { limit } => DecodeError::TooLarge {
            limit: limit as usize,
        },
        other => DecodeError::Form(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_fields_repeat_into_arrays() {
        let v = urlencoded(b"kind=form&n=2&tag=a&tag=b&tag=c&empty=&sp=a+b%21", None).unwrap();
        assert_eq!(
            v,
            json!({"kind": "form", "n": "2", "tag": ["a", "b", "c"], "empty": "", "sp": "a b!"})
        );
        let latin1 = urlencoded(b"name=Jos%E9", Some(encoding_rs::WINDOWS_1252)).unwrap();
        assert_eq!(latin1["name"], "José");
    }

    fn body(parts: &[(&str, Option<&str>, Option<&str>, &str)]) -> Bytes {
        let mut out = String::new();
        for (name, file, ty, data) in parts {
            out += "--XyZ\r\nContent-Disposition: form-data; name=\"";
            out += name;
            out += "\"";
            if let Some(f) = file {
                out += &format!("; filename=\"{f}\"");
            }
            out += "\r\n";
            if let Some(t) = ty {
                out += &format!("Content-Type: {t}\r\n");
            }
            out += "\r\n";
            out += data;
            out += "\r\n";
        }
        out += "--XyZ--\r\n";
        Bytes::from(out)
    }

    const CT: &str = "multipart/form-data; boundary=XyZ";

    #[tokio::test]
    async fn multipart_fields_and_json_and_xml_files() {
        let b = body(&[
            ("kind", None, None, "multi"),
            ("tag", None, Some("text/plain; charset=utf-8"), "a"),
            ("tag", None, None, "b"),
            (
                "order",
                Some("o.json"),
                Some("application/json"),
                r#"{"sku":"x"}"#,
            ),
            ("doc", Some("d.xml"), Some("text/xml"), "<d><e>1</e></d>"),
        ]);
        let m = multipart(b, CT, Purpose::Inbox, 10_000).await.unwrap();
        assert_eq!(
            m.value,
            json!({"kind": "multi", "tag": ["a", "b"], "order": {"sku": "x"}, "doc": {"d": {"e": "1"}}})
        );
        let b = body(&[("photo", Some("p.jpg"), Some("image/jpeg"), "\u{1}\u{2}")]);
        let e = multipart(b, CT, Purpose::Inbox, 10_000).await.unwrap_err();
        assert_eq!(e.status(), 415);
        assert!(e.to_string().contains("`photo`"), "{e}");
    }

    #[tokio::test]
    async fn multipart_without_its_closing_boundary_is_refused() {
        let whole = body(&[("kind", None, None, "multi")]);
        let cut = whole.slice(..whole.len() - 9);
        let e = multipart(cut, CT, Purpose::Inbox, 10_000)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("closing boundary"), "{e}");
        let e = multipart(whole, "multipart/form-data", Purpose::Inbox, 10_000)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("boundary"), "{e}");
    }

    #[tokio::test]
    async fn openrosa_takes_the_instance_and_describes_attachments() {
        let b = body(&[
            (
                XML_SUBMISSION_FILE,
                Some("submission.xml"),
                Some("text/xml"),
                "<f id=\"x\"><a>1</a></f>",
            ),
            ("photo.jpg", Some("photo.jpg"), Some("image/jpeg"), "abc"),
        ]);
        let m = multipart(b, CT, Purpose::OpenRosa, 10_000).await.unwrap();
        assert_eq!(m.value, json!({"f": {"@id": "x", "a": "1"}}));
        assert_eq!(
            m.attachments,
            vec![
                json!({"name": "photo.jpg", "filename": "photo.jpg", "content_type": "image/jpeg", "size": 3})
            ]
        );
        let b = body(&[("photo.jpg", Some("photo.jpg"), Some("image/jpeg"), "abc")]);
        let e = multipart(b, CT, Purpose::OpenRosa, 10_000)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(XML_SUBMISSION_FILE), "{e}");
    }
}

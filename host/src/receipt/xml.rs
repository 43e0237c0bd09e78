//! XML documents as JSON, by one convention, parsed with roxmltree (which
//! checks well-formedness and namespaces, and refuses DTDs here).
//!
//! The convention:
//! - The document is an object with one key, the root element's name.
//! - An element with no attributes, no namespace declarations and no child
//!   elements is its text, a string (`<n>2</n>` is `"2"`; `<n/>` is `""`).
//! - Any other element is an object: each attribute under `"@name"`, each
//!   namespace declaration under `"@xmlns"` or `"@xmlns:prefix"` (with its
//!   URI), each child element under its name, and its text under `"#text"`.
//! - Names are kept as written, prefix included (`"h:head"`, `"@jr:template"`);
//!   the declarations say which namespace a prefix stands for.
//! - A child name that occurs more than once is an array of the children's
//!   values in document order; a name that occurs once is the value itself.
//! - Text is character data and CDATA, entities and character references
//!   decoded, kept exactly; in an element that has child elements,
//!   whitespace-only text (indentation) is dropped, other pieces are joined.
//! - Every value is a string: XML has no numbers or booleans, so criteria
//!   on XML receipts compare strings (`{ n = "2" }`).
//!
//! Within that, nothing of the data is lost: names, prefixes, namespaces,
//! attributes, text and the order of same-named elements. What is not
//! kept: comments, processing instructions, the XML declaration, the
//! relative order of differently named siblings, and where text split by
//! child elements stood between them (mixed content).

use encoding_rs::{Encoding, UTF_8};
use serde_json::{Map, Value};

use super::decode::DecodeError;
use super::fields::Fields;

/// Deeper documents are refused: the conversion (and every later pass
/// over the value) recurses once per level. serde_json stops at 128 too.
const MAX_DEPTH: usize = 128;
/// Elements, attributes and text nodes in one document at most.
const MAX_NODES: u32 = 1_000_000;

/// The encoding an XML declaration names (`<?xml version="1.0"
/// encoding="ISO-8859-1"?>`), which governs a body sent without a
/// `charset` parameter (RFC 7303); `None` for UTF-8 or no declaration. A
/// declared encoding that is not ASCII-compatible (UTF-16) is ignored: the
/// declaration was just read as ASCII, so the body is not in it (a UTF-16
/// body starts with its byte-order mark, which is honoured first).
pub fn declared_encoding(body: &[u8]) -> Result<Option<&'static Encoding>, DecodeError> {
    let Some(rest) = body.strip_prefix(b"<?xml") else {
        return Ok(None);
    };
    // A declaration is short; one that does not end soon is not read here
    // (the parser will say what is wrong with it).
    let head = &rest[..rest.len().min(256)];
    let Some(end) = head.windows(2).position(|w| w == b"?>") else {
        return Ok(None);
    };
    let Ok(declaration) = std::str::from_utf8(&head[..end]) else {
        return Ok(None);
    };
    let Some(value) = pseudo_attribute(declaration, "encoding") else {
        return Ok(None);
    };
    match Encoding::for_label(value.as_bytes()) {
        None => Err(DecodeError::UnknownCharset(value.to_string())),
        Some(enc) if enc == UTF_8 || !enc.is_ascii_compatible() => Ok(None),
        Some(enc) => Ok(Some(enc)),
    }
}

/// The value of `name="..."` (or `'...'`) in an XML declaration.
fn pseudo_attribute<'a>(declaration: &'a str, name: &str) -> Option<&'a str> {
    let at = declaration.find(name)?;
    let rest = declaration[at + name.len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    value.find(quote).map(|end| &value[..end])
}

/// `text` (one XML document) as JSON.
pub fn to_json(text: &str) -> Result<Value, DecodeError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::NodesLimitReached => {
            DecodeError::TooComplex(format!("the XML has more than {MAX_NODES} nodes"))
        }
        roxmltree::Error::DtdDetected => {
            DecodeError::Xml("it has a DOCTYPE (DTD), which is not accepted".into())
        }
        other => DecodeError::Xml(other.to_string()),
    })?;
    let root = doc.root_element();
    let mut out = Map::new();
    out.insert(name_of(text, root), element(text, root, 1)?);
    Ok(Value::Object(out))
}

/// An element's qualified name as written in its start tag.
fn name_of(text: &str, node: roxmltree::Node) -> String {
    let tag = &text[node.range().start + 1..];
    let end = tag
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(tag.len());
    tag[..end].to_string()
}

fn element(text: &str, node: roxmltree::Node, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Xml(format!(
            "elements are nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let mut fields = Fields::default();
    for attr in node.attributes() {
        let name = &text[attr.range_qname()];
        fields.insert(format!("@{name}"), Value::String(attr.value().to_string()));
    }
    let inherited: Vec<_> = node
        .parent_element()
        .map(|p| p.namespaces().map(|ns| (ns.name(), ns.uri())).collect())
        .unwrap_or_default();
    for ns in node.namespaces() {
        if ns.name() == Some("xml") || inherited.contains(&(ns.name(), ns.uri())) {
            continue;
        }
        let key = match ns.name() {
            None => "@xmlns".to_string(),
            Some(prefix) => format!("@xmlns:{prefix}"),
        };
        fields.insert(key, Value::String(ns.uri().to_string()));
    }
    let mut own_text = String::new();
    let mut has_children = false;
    for child in node.children() {
        if child.is_element() {
            has_children = true;
            fields.insert(name_of(text, child), element(text, child, depth + 1)?);
        } else if child.is_text() {
            own_text.push_str(child.text().unwrap_or_default());
        }
    }
    if fields.is_empty() && !has_children {
        return Ok(Value::String(own_text));
    }
    let indentation = has_children && own_text.trim().is_empty();
    if !own_text.is_empty() && !indentation {
        fields.insert("#text".into(), Value::String(own_text));
    }
    Ok(Value::Object(fields.into_map()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_original_open_rosa_fixture() {
        let text =
            include_str!("../../../tests/projects/fixtures/openfn-microservice/open_rosa.xml");
        assert_eq!(
            to_json(text).unwrap(),
            json!({"event_cars_boats": {
                "@id": "Events_Boats_Cars",
                "@xmlns:h": "http://www.w3.org/1999/xhtml",
                "@xmlns:jr": "http://openrosa.org/javarosa",
                "@xmlns:xsd": "http://www.w3.org/2001/XMLSchema",
                "@xmlns:ev": "http://www.w3.org/2001/xml-events",
                "@xmlns:orx": "http://openrosa.org/xforms/",
                "event_name": "Test",
                "start_date": "2019-10-24",
                "boats": [{"boat_name": "Ferari"}, {"boat_name": "Johnny"}],
                "cars": {"car_name": "Big Boss"},
                "meta": {"instanceID": "uuid:b400c1e3-d6d7-428d-8b19-f7227bda8445"}
            }})
        );
    }

    #[test]
    fn attributes_text_namespaces_and_cdata() {
        let v = to_json(
            r#"<?xml version="1.0"?>
<!-- a comment -->
<r xmlns="urn:d" xmlns:p="urn:p" p:a="1" b="x &amp; y">
  <p:e k="v">t &lt; u</p:e>
  <e/>
  <m>one<i>2</i>three</m>
  <c><![CDATA[<raw>]]></c>
  <s xmlns:p="urn:other"> spaced </s>
</r>"#,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"r": {
                "@p:a": "1",
                "@b": "x & y",
                "@xmlns": "urn:d",
                "@xmlns:p": "urn:p",
                "p:e": {"@k": "v", "#text": "t < u"},
                "e": "",
                "m": {"i": "2", "#text": "onethree"},
                "c": "<raw>",
                "s": {"@xmlns:p": "urn:other", "#text": " spaced "}
            }})
        );
    }

    #[test]
    fn the_declaration_names_the_encoding_of_a_body_without_a_charset() {
        let enc = |body: &[u8]| declared_encoding(body).map(|e| e.map(|e| e.name()));
        assert_eq!(
            enc(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>").unwrap(),
            Some("windows-1252")
        );
        assert_eq!(
            enc(b"<?xml version='1.0' encoding = 'Shift_JIS' ?><a/>").unwrap(),
            Some("Shift_JIS")
        );
        for none in [
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>".as_slice(),
            b"<?xml version=\"1.0\"?><a encoding=\"latin1\"/>",
            b"<?xml version=\"1.0\" encoding=\"UTF-16\"?><a/>",
            b"<a/>",
            b"",
        ] {
            assert_eq!(
                enc(none).unwrap(),
                None,
                "{}",
                String::from_utf8_lossy(none)
            );
        }
        let e = enc(b"<?xml version=\"1.0\" encoding=\"klingon\"?><a/>").unwrap_err();
        assert_eq!(
            (e.status(), e.to_string()),
            (415, "charset `klingon` is not known".into())
        );
    }

    #[test]
    fn malformed_documents_say_where() {
        for (bad, says) in [
            ("<a><b></a>", "1:"),
            ("<a>", "never closed"),
            ("<a/><b/>", ""),
            ("<p:a/>", "p"),
            ("<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>", "DOCTYPE"),
            ("<a>&nope;</a>", ""),
            ("", ""),
        ] {
            let e = to_json(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}: {e}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        let deep = "<a>".repeat(200) + &"</a>".repeat(200);
        assert!(to_json(&deep).unwrap_err().to_string().contains("deeper"));
    }
}

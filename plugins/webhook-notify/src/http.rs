//! A minimal HTTP client over `wasi:http/outgoing-handler`, and the URL and
//! `Retry-After` parsing it needs.

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};

/// Where a request goes, split the way `wasi:http` wants it.
#[derive(Debug, PartialEq)]
pub struct Target {
    pub https: bool,
    /// `host` or `host:port` (IPv6 hosts in brackets).
    pub authority: String,
    /// Starts with `/`.
    pub path_with_query: String,
}

impl Target {
    /// Parses `http[s]://host[:port][/path][?query][#fragment]`.
    pub fn parse(url: &str) -> Result<Target, String> {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("it contains whitespace".to_string());
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("it has no scheme (http:// or https://)")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "scheme `{other}` is not supported (use http or https)"
                ));
            }
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(
                "credentials in the URL are not supported; use the `headers` setting".to_string(),
            );
        }
        let (host, port) = if let Some(after) = authority.strip_prefix('[') {
            let (inside, tail) = after.split_once(']').ok_or("unclosed `[` in host")?;
            if inside.is_empty() {
                return Err("empty host".to_string());
            }
            (&authority[..inside.len() + 2], tail)
        } else {
            match authority.find(':') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, ""),
            }
        };
        if host.is_empty() {
            return Err("empty host".to_string());
        }
        if !port.is_empty() {
            let digits = port.strip_prefix(':').ok_or("garbage after host")?;
            digits
                .parse::<u16>()
                .map_err(|_| format!("bad port `{digits}`"))?;
        }
        let path_with_query = if path.is_empty() {
            "/".to_string()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Target {
            https,
            authority: authority.to_string(),
            path_with_query,
        })
    }

    /// The URL without query string, for messages (queries may carry tokens).
    pub fn display(&self) -> String {
        let path = self.path_with_query.split('?').next().unwrap_or_default();
        format!(
            "{}://{}{}",
            if self.https { "https" } else { "http" },
            self.authority,
            path
        )
    }
}

pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The start of the body, for error messages (non-2xx answers only).
    pub body_snippet: Vec<u8>,
}

const SNIPPET_BYTES: u64 = 512;

/// POSTs `body` and waits for the answer's head.
pub fn post(
    target: &Target,
    headers: &[(String, String)],
    body: &[u8],
    timeout_ms: u64,
) -> Result<Response, String> {
    let mut list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    list.push((
        "content-length".to_string(),
        body.len().to_string().into_bytes(),
    ));
    let fields = Fields::from_list(&list).map_err(|e| format!("bad request header: {e:?}"))?;

    let request = OutgoingRequest::new(fields);
    request
        .set_method(&Method::Post)
        .map_err(|()| "cannot set method")?;
    let scheme = if target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "cannot set scheme")?;
    request
        .set_authority(Some(&target.authority))
        .map_err(|()| "cannot set authority")?;
    request
        .set_path_with_query(Some(&target.path_with_query))
        .map_err(|()| "cannot set path")?;

    let options = RequestOptions::new();
    let timeout_ns = Some(timeout_ms.saturating_mul(1_000_000));
    // A host may not support some of these; the defaults then apply.
    let _ = options.set_connect_timeout(timeout_ns);
    let _ = options.set_first_byte_timeout(timeout_ns);
    let _ = options.set_between_bytes_timeout(timeout_ns);

    let outgoing_body = request.body().map_err(|()| "cannot get request body")?;
    let future = outgoing_handler::handle(request, Some(options)).map_err(|e| format!("{e:?}"))?;
    // When the connection fails, writing the body fails too (the stream is
    // closed): the response future then holds the real reason.
    let sent: Result<(), String> = (|| {
        let stream = outgoing_body
            .write()
            .map_err(|()| "cannot write request body")?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing request body: {e:?}"))?;
        }
        // The stream is a child of the body: it goes before `finish`.
        drop(stream);
        OutgoingBody::finish(outgoing_body, None).map_err(|e| format!("{e:?}"))
    })();

    let response = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(format!("{code:?}")),
            Some(Err(())) => return Err("response already taken".to_string()),
            None if sent.is_err() => {
                // Give the request a moment to report why it failed.
                let pollable = future.subscribe();
                let timeout = wasi::clocks::monotonic_clock::subscribe_duration(1_000_000_000);
                wasi::io::poll::poll(&[&pollable, &timeout]);
                drop(pollable);
                if let Some(Ok(Err(code))) = future.get() {
                    return Err(format!("{code:?}"));
                }
                return Err(sent.unwrap_err());
            }
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let retry_after = {
        let headers = response.headers();
        headers
            .get("retry-after")
            .into_iter()
            .next()
            .map(|v| String::from_utf8_lossy(&v).trim().to_string())
    };
    let mut body_snippet = Vec::new();
    if !(200..300).contains(&status)
        && let Ok(incoming) = response.consume()
    {
        if let Ok(stream) = incoming.stream() {
            while (body_snippet.len() as u64) < SNIPPET_BYTES {
                match stream.blocking_read(SNIPPET_BYTES - body_snippet.len() as u64) {
                    Ok(bytes) => body_snippet.extend_from_slice(&bytes),
                    Err(_) => break,
                }
            }
            drop(stream);
        }
        drop(incoming);
    }
    Ok(Response {
        status,
        retry_after,
        body_snippet,
    })
}

/// `Retry-After` as milliseconds from now: delta-seconds or an HTTP-date.
pub fn parse_retry_after_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let at = parse_http_date(value)?;
    let now = wasi::clocks::wall_clock::now();
    let now_ms = now.seconds as i128 * 1000 + (now.nanoseconds / 1_000_000) as i128;
    Some((at as i128 * 1000 - now_ms).clamp(0, u64::MAX as i128) as u64)
}

/// Unix seconds of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: i64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m.eq_ignore_ascii_case(month))? as i64
        + 1;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from civil (proleptic Gregorian), 1970-01-01 = 0.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("https://hooks.example.test:8443/a/b?x=1#frag").unwrap();
        assert_eq!(
            t,
            Target {
                https: true,
                authority: "hooks.example.test:8443".into(),
                path_with_query: "/a/b?x=1".into()
            }
        );
        assert_eq!(t.display(), "https://hooks.example.test:8443/a/b");
        let t = Target::parse("HTTP://127.0.0.1").unwrap();
        assert_eq!(
            t,
            Target {
                https: false,
                authority: "127.0.0.1".into(),
                path_with_query: "/".into()
            }
        );
        let t = Target::parse("http://[::1]:9000?q").unwrap();
        assert_eq!(t.authority, "[::1]:9000");
        assert_eq!(t.path_with_query, "/?q");
        for bad in [
            "",
            "example.test/x",
            "ftp://x/",
            "http://",
            "http://:80/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://h x/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(parse_http_date("soon"), None);
    }
}

//! The dashboard: a static page at `/` and its assets under `/dashboard/`,
//! compiled into the binary (no CDN, no build step; it works offline).
//!
//! The page holds no data: its script reads everything from `/api` in the
//! browser, with the admin key when one is configured, so these files are
//! served to anyone. Every answer carries a strict Content-Security-Policy
//! (same-origin scripts, styles and requests only; no inline code) and an
//! `ETag`, so a browser revalidates cheaply and always runs the version the
//! binary ships. This module must never embed data or secrets in what it
//! serves.

use std::sync::LazyLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::{Body, error};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("dashboard/index.html"),
};

/// Served under `/dashboard/{name}`.
const ASSETS: [Asset; 8] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/app.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/dom.js"),
    },
    Asset {
        name: "library.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/library.js"),
    },
    Asset {
        name: "workflows.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/workflows.js"),
    },
    Asset {
        name: "graph.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/graph.js"),
    },
    Asset {
        name: "charts.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("dashboard/charts.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("dashboard/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("dashboard/favicon.svg"),
    },
];

/// Strong ETags: a hash of each file, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(ASSETS.iter())
        .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..16]))
        .collect()
});

/// `GET /`.
pub fn page<B>(req: &Request<B>) -> Response<Body> {
    serve(req, &INDEX, &ETAGS[0])
}

/// `GET /dashboard/{name}`.
pub fn asset<B>(req: &Request<B>, name: &str) -> Response<Body> {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(req, &ASSETS[i], &ETAGS[i + 1]),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no dashboard file named `{name}`"),
        ),
    }
}

fn serve<B>(req: &Request<B>, asset: &Asset, etag: &str) -> Response<Body> {
    let fresh = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        Response::new(Full::new(Bytes::from_static(asset.bytes)))
    };
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // Revalidate every time: the ETag makes that a 304, and an upgraded
    // binary's page is never mixed with an old script.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(ETAG, v);
    }
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_served_with_csp_and_revalidate_to_304() {
        let req = Request::get("/dashboard/app.js").body(()).unwrap();
        let res = asset(&req, "app.js");
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        let etag = res.headers()[ETAG].clone();
        let again = Request::get("/dashboard/app.js")
            .header(IF_NONE_MATCH, etag)
            .body(())
            .unwrap();
        assert_eq!(asset(&again, "app.js").status(), StatusCode::NOT_MODIFIED);
        assert_eq!(asset(&req, "nope.js").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_loads_nothing_inline_or_from_elsewhere() {
        let html = std::str::from_utf8(INDEX.bytes).unwrap();
        assert!(!html.contains("<script>") && !html.contains("style="));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}

//! The security headers of every response (docs/security.md): a Content-Security-Policy that
//! allows no inline script or style and no framing, HSTS when the box speaks TLS, and the
//! usual hardening headers. Pages keep their data out of scripts: what a live page needs at
//! start (its translations, the console's thresholds) is a `<script type="application/json">`
//! block, which a browser never runs, written by [`script_json`].

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Only this origin's scripts, styles, pictures and connections (the signaling WebSocket is
/// same-origin, which `'self'` covers); camera pictures and remote streams are `blob:` or
/// `mediastream:`; no plugin, no `<base>`, forms only to this server, and no page of ours
/// inside another's frame (clickjacking of the console's buttons).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A year; without `includeSubDomains`: the box is one host, and a province's other hosts are
/// not ours to bind.
const HSTS: &str = "max-age=31536000";

/// Camera, microphone and screen for this origin (the site app and the console's watch);
/// nothing else a page could ask the browser for.
const PERMISSIONS: &str =
    "camera=(self), microphone=(self), display-capture=(self), geolocation=(), payment=(), usb=()";

pub async fn security_headers(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let h = res.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    // The CSP on pages only: under `object-src 'none'` Chromium would refuse its own PDF viewer
    // for the B1 letter served inline.
    if html {
        set(header::CONTENT_SECURITY_POLICY, CSP);
    }
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "same-origin");
    set(HeaderName::from_static("permissions-policy"), PERMISSIONS);
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if st.secure_cookies {
        set(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    res
}

/// A value as JSON for a `<script type="application/json">` block: `<`, `>` and `&` escaped as
/// `\u003c`…, so no text of the value can close the block (`</script>`) or open a comment.
pub fn script_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string(value)?
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_its_block() {
        let s =
            script_json(&serde_json::json!({ "x": "</script><script>alert(1)</script> & <!--" }))
                .unwrap();
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["x"], "</script><script>alert(1)</script> & <!--");
    }

    #[test]
    fn the_policy_allows_no_inline_script_or_style() {
        for directive in CSP.split(';').map(str::trim) {
            assert!(!directive.contains("unsafe"), "{directive}");
        }
        assert!(CSP.contains("frame-ancestors 'none'"));
    }
}

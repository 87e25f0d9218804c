//! The two HTTP requests the bench needs, over a plain TCP stream (HTTP/1.1, no TLS): enough
//! for `GET /healthz` and `POST /api/v1/login`, without an HTTP client dependency.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of an `http://host:port[/…]` URL.
pub fn host_port(url: &str) -> anyhow::Result<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--server must be an http:// URL (run the server with --tls off): {url}");
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        bail!("no host in {url}");
    }
    Ok(if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    })
}

pub async fn request(host: &str, head: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(host)
        .await
        .with_context(|| format!("connect {host}"))?;
    let req = format!(
        "{head}\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (headers, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let chunked = headers.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub async fn get(host: &str, path: &str) -> anyhow::Result<(u16, String)> {
    request(host, &format!("GET {path} HTTP/1.1"), "").await
}

pub struct Login {
    pub token: String,
    pub site_id: Option<i64>,
}

/// `POST /api/v1/login`.
pub async fn login(host: &str, username: &str, password: &str) -> anyhow::Result<Login> {
    let body = json!({"username": username, "password": password}).to_string();
    let (status, text) = request(
        host,
        "POST /api/v1/login HTTP/1.1\r\nContent-Type: application/json",
        &body,
    )
    .await?;
    if status != 200 {
        bail!("login {username}: HTTP {status}: {text}");
    }
    let v: Value = serde_json::from_str(&text).with_context(|| format!("login body {text}"))?;
    Ok(Login {
        token: v["token"].as_str().context("no token")?.to_string(),
        site_id: v["site"]["id"].as_i64(),
    })
}

/// The cumulative buckets of a Prometheus histogram: `le` bound in seconds, count.
pub type Buckets = Vec<(f64, u64)>;

/// The server's `/metrics` text; None when it does not publish it.
pub async fn metrics(host: &str) -> Option<String> {
    let (status, text) = get(host, "/metrics").await.ok()?;
    (status == 200).then_some(text)
}

/// One histogram of a `/metrics` text.
pub fn parse_histogram(text: &str, name: &str) -> Option<Buckets> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Buckets = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    (!buckets.is_empty()).then_some(buckets)
}

/// Quantile `q` (0..1) of what was recorded between two readings of a histogram: the upper
/// bound of the bucket it falls in (so "≤ this"), in seconds, and the count.
pub fn histogram_quantile(
    before: &[(f64, u64)],
    after: &[(f64, u64)],
    q: f64,
) -> Option<(f64, u64)> {
    let diff: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let b = before.iter().find(|(l, _)| l == le).map_or(0, |(_, n)| *n);
            (*le, n.saturating_sub(b))
        })
        .collect();
    let total = diff.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    diff.iter()
        .find(|(_, n)| *n >= rank)
        .map(|(le, _)| (*le, total))
}

/// A WebSocket to the server with Nagle's algorithm off, as browsers have it: a small message
/// (an answer, a `view`) leaves at once instead of waiting for the last one's acknowledgement.
pub async fn connect_ws(
    url: String,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    tokio_tungstenite::connect_async_with_config(url, None, true).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_quantiles_between_two_readings() {
        let text = "# TYPE d histogram\nd_bucket{le=\"0.0001\"} 5\nd_bucket{le=\"0.001\"} 10\nd_bucket{le=\"+Inf\"} 10\nd_count 10\n";
        let before = super::parse_histogram(text, "d").unwrap();
        assert_eq!(before, vec![(0.0001, 5), (0.001, 10), (f64::INFINITY, 10)]);
        // Since then: 90 more under 100 µs, 9 under 1 ms, 1 above.
        let after = vec![(0.0001, 95), (0.001, 109), (f64::INFINITY, 110)];
        assert_eq!(
            super::histogram_quantile(&before, &after, 0.5),
            Some((0.0001, 100))
        );
        assert_eq!(
            super::histogram_quantile(&before, &after, 0.99),
            Some((0.001, 100))
        );
        assert_eq!(
            super::histogram_quantile(&before, &after, 1.0),
            Some((f64::INFINITY, 100))
        );
        assert_eq!(super::histogram_quantile(&after, &after, 0.5), None);
        assert!(super::parse_histogram(text, "other").is_none());
    }

    #[test]
    fn parses_hosts_and_chunks() {
        assert_eq!(
            super::host_port("http://127.0.0.1:18443/").unwrap(),
            "127.0.0.1:18443"
        );
        assert_eq!(super::host_port("http://h").unwrap(), "h:80");
        assert!(super::host_port("https://h").is_err());
        assert_eq!(super::dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}

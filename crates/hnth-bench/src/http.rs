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

#[cfg(test)]
mod tests {
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

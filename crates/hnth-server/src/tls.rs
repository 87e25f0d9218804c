//! HTTPS: camera and microphone need a secure context outside localhost.

use std::path::PathBuf;

use axum_server::tls_rustls::RustlsConfig;

use crate::config::{Settings, TlsMode};

pub struct Tls {
    pub config: RustlsConfig,
    /// Set when the certificate was generated (self-signed) rather than configured.
    pub generated: Option<PathBuf>,
}

pub async fn load(s: &Settings) -> anyhow::Result<Option<Tls>> {
    let (cert, key, generated) = match s.http.tls {
        TlsMode::Off => return Ok(None),
        TlsMode::Files => {
            let cert = s
                .http
                .cert
                .clone()
                .ok_or_else(|| anyhow::anyhow!("http.tls = \"files\" needs http.cert"))?;
            let key = s
                .http
                .key
                .clone()
                .ok_or_else(|| anyhow::anyhow!("http.tls = \"files\" needs http.key"))?;
            (cert, key, None)
        }
        TlsMode::Auto => {
            let dir = &s.storage.data_dir;
            let cert = dir.join("tls-cert.pem");
            let key = dir.join("tls-key.pem");
            if !cert.exists() || !key.exists() {
                let mut names = vec!["localhost".to_string()];
                if let Ok(ip) = s.announce_ip() {
                    names.push(ip.to_string());
                }
                if let Some(ip) = crate::config::first_lan_ipv4() {
                    names.push(ip.to_string());
                }
                names.dedup();
                let c = rcgen::generate_simple_self_signed(names)?;
                std::fs::create_dir_all(dir)?;
                std::fs::write(&cert, c.cert.pem())?;
                crate::admin::write_private(&key, c.key_pair.serialize_pem().as_bytes())?;
            }
            let g = cert.clone();
            (cert, key, Some(g))
        }
    };
    let config = RustlsConfig::from_pem_file(&cert, &key)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "TLS certificate {} / key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Some(Tls { config, generated }))
}

//! Settings: a TOML file, then environment variables, then command-line flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub http: Http,
    pub media: Media,
    pub storage: Storage,
    pub security: Security,
    pub mail: Mail,
    /// Art. 5 and 6 figures: lead time, provider notice, preparation, capacity, reminders.
    pub booking: hnth_rules::booking::Settings,
}

/// Outgoing e-mail (notices B2, P1; alerts B5).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mail {
    /// SMTP server. Without one, notices wait in the outbox and bookings are flagged.
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// `none` (plain, for a relay on the local network), `starttls` or `tls`.
    pub smtp_security: SmtpSecurity,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// The sender of every notice.
    pub from: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    None,
    Starttls,
    Tls,
}

impl Default for Mail {
    fn default() -> Self {
        Mail {
            smtp_host: None,
            smtp_port: 25,
            smtp_security: SmtpSecurity::None,
            smtp_username: None,
            smtp_password: None,
            from: "HNTH Bạc Liêu <hnth@localhost>".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// Address and port of the web pages, API and WebSocket.
    pub bind: SocketAddr,
    /// `auto`: a self-signed certificate in the data folder, made on first run;
    /// `files`: `cert` and `key` below; `off`: plain HTTP (only sensible on localhost).
    pub tls: TlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Auto,
    Files,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Media {
    /// The first media port; media worker `i` uses this port + i.
    pub bind: SocketAddr,
    /// The address sites reach the server at (the host candidate in every answer). Default: the
    /// bind address if it is specific, else the machine's first non-loopback IPv4 address.
    pub announce: Option<IpAddr>,
    /// How many other sites each participant receives (1 to 25): the meeting's first to join.
    /// Later sites are forwarded to nobody and pause their video until floor control lands.
    pub view_size: usize,
    /// How many sites the control center's console receives (1 to 49), to watch them.
    pub monitor_view: usize,
    /// Media worker threads, each with its own UDP port (bind's port, then the next ones);
    /// 0 = one per CPU core. Open every one of these ports in the firewall.
    pub workers: usize,
    /// How a site's link is judged for the video layer it receives: from the loss it reports
    /// (`loss`), or from delay as well (`delay`: sees congestion earlier, about twice the CPU
    /// per forwarded packet).
    pub bandwidth_estimation: Estimation,
}

/// `media.bandwidth_estimation` as written in the settings file.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Estimation {
    #[default]
    Loss,
    Delay,
}

impl From<Estimation> for hnth_media::Estimation {
    fn from(e: Estimation) -> Self {
        match e {
            Estimation::Loss => hnth_media::Estimation::Loss,
            Estimation::Delay => hnth_media::Estimation::Delay,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Holds the SQLite database, the generated certificate and the demo logins.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    pub session_hours: i64,
    pub device_session_days: i64,
    pub max_failed_logins: i64,
    pub lockout_minutes: i64,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            bind: "0.0.0.0:8443".parse().expect("literal"),
            tls: TlsMode::Auto,
            cert: None,
            key: None,
        }
    }
}

impl Default for Media {
    fn default() -> Self {
        Media {
            bind: "0.0.0.0:10000".parse().expect("literal"),
            announce: None,
            view_size: 8,
            monitor_view: 24,
            workers: 0,
            bandwidth_estimation: Estimation::default(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            data_dir: PathBuf::from("hnth-data"),
        }
    }
}

impl Default for Security {
    fn default() -> Self {
        Security {
            session_hours: 12,
            device_session_days: 30,
            max_failed_logins: 5,
            lockout_minutes: 15,
        }
    }
}

impl Settings {
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Settings> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    anyhow::anyhow!("cannot read settings file {}: {e}", p.display())
                })?;
                let s: Settings = toml::from_str(&text).map_err(|e| {
                    // One line for the operator: where, and what.
                    let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
                    let at = line.map(|l| format!(", line {l}")).unwrap_or_default();
                    anyhow::anyhow!("settings file {}{at}: {}", p.display(), e.message().trim())
                })?;
                if !(1..=49).contains(&s.media.monitor_view) {
                    anyhow::bail!(
                        "settings file {}: media.monitor_view must be 1 to 49, not {}",
                        p.display(),
                        s.media.monitor_view
                    );
                }
                if !(1..=25).contains(&s.media.view_size) {
                    anyhow::bail!(
                        "settings file {}: media.view_size must be 1 to 25, not {}",
                        p.display(),
                        s.media.view_size
                    );
                }
                Ok(s)
            }
            None => Ok(Settings::default()),
        }
    }

    /// How many media workers to start.
    pub fn media_workers(&self) -> usize {
        match self.media.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n.min(64),
        }
    }

    /// The address announced to peers for media.
    pub fn announce_ip(&self) -> anyhow::Result<IpAddr> {
        if let Some(ip) = self.media.announce {
            return Ok(ip);
        }
        if !self.media.bind.ip().is_unspecified() {
            return Ok(self.media.bind.ip());
        }
        first_lan_ipv4().ok_or_else(|| {
            anyhow::anyhow!(
                "no non-loopback IPv4 address found: set media.announce (HNTH_ANNOUNCE)"
            )
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.storage.data_dir.join("hnth.db")
    }
}

/// The machine's first non-loopback IPv4 address, for URLs and media candidates.
pub fn first_lan_ipv4() -> Option<IpAddr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults() {
        let s: Settings = toml::from_str(
            "[http]\nbind = \"127.0.0.1:9000\"\ntls = \"off\"\n[media]\nannounce = \"10.0.0.5\"\n",
        )
        .unwrap();
        assert_eq!(s.http.bind.port(), 9000);
        assert_eq!(s.http.tls, TlsMode::Off);
        assert_eq!(s.announce_ip().unwrap().to_string(), "10.0.0.5");
        assert_eq!(s.media.bind.port(), 10000);
    }

    #[test]
    fn bandwidth_estimation() {
        let read = |t: &str| toml::from_str::<Settings>(t).map(|s| s.media.bandwidth_estimation);
        assert_eq!(read("").unwrap(), Estimation::Loss);
        assert_eq!(
            read("[media]\nbandwidth_estimation = \"delay\"\n").unwrap(),
            Estimation::Delay
        );
        assert!(read("[media]\nbandwidth_estimation = \"fast\"\n").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("[http]\nbnd = \"x\"\n").is_err());
    }
}

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
    /// The province that runs this server (required by `hnth serve`; the demo's is Bạc Liêu).
    pub province: Province,
    /// Art. 5 and 6 figures: lead time, provider notice, preparation, capacity, reminders.
    pub booking: hnth_rules::booking::Settings,
    /// Art. 7: how meetings run (the floor, the frame, opening at the preparation time) and
    /// when the console colours a site's link.
    pub meeting: MeetingSettings,
}

/// `[meeting]`: how meetings run (Art. 6, 7), visible to administrators on the console.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MeetingSettings {
    /// C4: the chair's site is heard without being given the floor.
    pub chair_always_heard: bool,
    /// C1, P3: the frame a meeting starts with (`1x1`, `2x2`, `3x3`, `4x4`, `1+5`, `1+7`,
    /// `2+8`, `1+12`, `speaker`, `lecture`).
    pub layout: hnth_rules::meeting::Layout,
    /// P1: at an approved booking's preparation time, its meeting opens and its sites are
    /// connected by themselves (otherwise the console offers to open it).
    pub auto_connect: bool,
    /// C2: a site's link is shown amber from the first figure and red from the second:
    /// round-trip time (ms), loss (%), jitter (ms).
    pub rtt_warn_ms: f64,
    pub rtt_alarm_ms: f64,
    pub loss_warn_percent: f64,
    pub loss_alarm_percent: f64,
    pub jitter_warn_ms: f64,
    pub jitter_alarm_ms: f64,
}

impl Default for MeetingSettings {
    fn default() -> Self {
        MeetingSettings {
            chair_always_heard: true,
            layout: hnth_rules::meeting::Layout::Speaker,
            auto_connect: false,
            rtt_warn_ms: 150.0,
            rtt_alarm_ms: 400.0,
            loss_warn_percent: 1.0,
            loss_alarm_percent: 5.0,
            jitter_warn_ms: 30.0,
            jitter_alarm_ms: 60.0,
        }
    }
}

/// The province that runs the server: named in every page's header and on the invitation
/// letter (B4). No default: each province writes its own, and `hnth serve` refuses to start
/// without them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Province {
    /// As the pages' header names it, e.g. "Tỉnh Bạc Liêu".
    pub name: String,
    /// Its People's Committee office, which confirms registrations, e.g. "Văn phòng UBND tỉnh
    /// Bạc Liêu" (the letter's text and its recipients).
    pub office: String,
    /// Where letters are dated, e.g. "Bạc Liêu": "Bạc Liêu, ngày 05 tháng 3 năm 2026".
    pub place: String,
    /// The decision that issued the province's regulation of the system, cited by the letter,
    /// e.g. "Quyết định số 561/QĐ-UBND ngày 15/4/2014 của Chủ tịch UBND tỉnh Bạc Liêu".
    /// Optional: without it the letter cites "the Regulation" alone.
    pub regulation: String,
}

impl Province {
    /// The settings that are missing, by their keys.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("province.name", &self.name),
            ("province.office", &self.office),
            ("province.place", &self.place),
        ]
        .into_iter()
        .filter(|(_, v)| v.trim().is_empty())
        .map(|(k, _)| k)
        .collect()
    }

    /// `hnth serve` runs only for a named province: one line for the operator otherwise.
    pub fn require(&self) -> anyhow::Result<()> {
        let missing = self.missing();
        if missing.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "settings: {} not set: give the province in the settings file (--config), e.g. \
             [province] name = \"Tỉnh …\", office = \"Văn phòng UBND tỉnh …\", place = \"…\" \
             (docs/install.md)",
            missing.join(", ")
        )
    }

    /// Fill what is not set from `other` (the demo's province).
    /// The decision of the regulation comes with the province's name: another province's
    /// settings do not cite Bạc Liêu's.
    pub fn or(mut self, other: &Province) -> Province {
        if self.name.trim().is_empty() && self.regulation.trim().is_empty() {
            self.regulation.clone_from(&other.regulation);
        }
        for (mine, theirs) in [
            (&mut self.name, &other.name),
            (&mut self.office, &other.office),
            (&mut self.place, &other.place),
        ] {
            if mine.trim().is_empty() {
                mine.clone_from(theirs);
            }
        }
        self
    }
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
            from: "HNTH <hnth@localhost>".into(),
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
    /// How many other sites' pictures a site receives at most (1 to 25), whatever its frame
    /// holds (the largest cells kept): what its downlink must carry. A site that no one
    /// receives pauses its camera.
    pub view_size: usize,
    /// How many sites the control center's console receives (1 to 49), to watch them: the
    /// floor's first, then the others in the order they connected.
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
    /// Login tries a minute from one address (a whole office behind one NAT counts once); 0: no
    /// limit. Above it the login is refused for a while (429) before any password is checked.
    pub login_per_minute_per_address: u32,
    /// Login tries a minute at one username, whoever tries (A2's lockout counts only wrong
    /// passwords of existing accounts; this also stops a flood at a name that does not exist).
    pub login_per_minute_per_account: u32,
    /// Signaling connections (WebSocket upgrades) a minute from one address; 0: no limit.
    pub ws_per_minute_per_address: u32,
    /// Signaling connections a minute by one account (a site app reconnects with a backoff; a
    /// reload loop or a stolen token in a script does not).
    pub ws_per_minute_per_account: u32,
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
            login_per_minute_per_address: 30,
            login_per_minute_per_account: 10,
            ws_per_minute_per_address: 120,
            ws_per_minute_per_account: 30,
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
                let m = &s.meeting;
                for (key, warn, alarm) in [
                    ("rtt", m.rtt_warn_ms, m.rtt_alarm_ms),
                    ("loss", m.loss_warn_percent, m.loss_alarm_percent),
                    ("jitter", m.jitter_warn_ms, m.jitter_alarm_ms),
                ] {
                    if !(warn >= 0.0 && alarm >= warn && alarm.is_finite()) {
                        anyhow::bail!(
                            "settings file {}: meeting.{key}_warn must be 0 or more and meeting.{key}_alarm at least as high, not {warn} and {alarm}",
                            p.display()
                        );
                    }
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
    fn province() {
        let s: Settings = toml::from_str(
            "[province]\nname = \"Tỉnh Cà Mau\"\noffice = \"Văn phòng UBND tỉnh Cà Mau\"\nplace = \"Cà Mau\"\n",
        )
        .unwrap();
        assert_eq!(
            s.province,
            Province {
                name: "Tỉnh Cà Mau".into(),
                office: "Văn phòng UBND tỉnh Cà Mau".into(),
                place: "Cà Mau".into(),
                regulation: String::new(),
            }
        );
        assert!(s.province.require().is_ok());
        // Nothing is assumed: without the settings, `hnth serve` says which are missing.
        let none = Settings::default().province;
        let e = none.require().unwrap_err().to_string();
        assert!(
            e.contains("province.name, province.office, province.place not set"),
            "{e}"
        );
        let partial: Settings =
            toml::from_str("[province]\nplace = \"Cà Mau\"\nname = \" \"\n").unwrap();
        assert_eq!(
            partial.province.missing(),
            ["province.name", "province.office"]
        );
        assert!(toml::from_str::<Settings>("[province]\ncity = \"Cà Mau\"\n").is_err());
        // The demo's fills only what is not set.
        let demo = Province {
            name: "Tỉnh Bạc Liêu".into(),
            office: "Văn phòng UBND tỉnh Bạc Liêu".into(),
            place: "Bạc Liêu".into(),
            regulation: "Quyết định số 561/QĐ-UBND".into(),
        };
        let mixed = partial.province.or(&demo);
        assert_eq!(
            (
                mixed.name.as_str(),
                mixed.office.as_str(),
                mixed.place.as_str()
            ),
            ("Tỉnh Bạc Liêu", "Văn phòng UBND tỉnh Bạc Liêu", "Cà Mau")
        );
        assert_eq!(mixed.regulation, "Quyết định số 561/QĐ-UBND");
        let own = Province {
            name: "Tỉnh Cà Mau".into(),
            ..Province::default()
        };
        assert_eq!(
            own.or(&demo).regulation,
            "",
            "Bạc Liêu's decision on another province's letter"
        );
    }

    #[test]
    fn separate_approval_is_on_unless_turned_off() {
        let read = |t: &str| toml::from_str::<Settings>(t).map(|s| s.booking.separate_approval);
        assert!(read("").unwrap());
        assert!(read("[booking]\nlead_time_minutes = 7200\n").unwrap());
        assert!(!read("[booking]\nseparate_approval = false\n").unwrap());
        assert!(read("[booking]\nseparate_approval = \"no\"\n").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("[http]\nbnd = \"x\"\n").is_err());
    }

    #[test]
    fn meeting_settings_are_read_and_checked() {
        let read = |text: &str| {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("hnth.toml");
            std::fs::write(&p, text).unwrap();
            Settings::load(Some(&p)).map(|s| s.meeting)
        };
        let m = read("[meeting]\nlayout = \"1+7\"\nauto_connect = true\n").unwrap();
        assert_eq!(m.layout, hnth_rules::meeting::Layout::OnePlus7);
        assert!(m.auto_connect && m.chair_always_heard);
        assert!(read("[meeting]\nlayout = \"5x5\"\n").is_err());
        assert!(read("[meeting]\nrtt_warn_ms = 500\nrtt_alarm_ms = 100\n").is_err());
        assert!(read("[meeting]\nloss_warn_percent = -1\n").is_err());
    }
}

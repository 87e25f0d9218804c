//! Simulated sites for the demo (`hnth demo --simulated-sites all`): each one behaves like the
//! kiosk `/site` app of a meeting room, inside the server process. It connects to the Hub as the
//! site's device account (so presence, dialing and the role checks are the real ones), and when
//! the control center dials it, it joins with a str0m client on its own UDP socket that sends a
//! looping VP8 test picture bearing the site's name and an Opus beep (`assets/sim/`, made by
//! `assets/sim/make.sh`, embedded in the binary). It answers renegotiations, rejoins when its
//! media drops, and steps aside for good if a real site app logs in as the same site.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hnth_media::clip::{Clip, ClipError};
use hnth_media::testing::{SiteConfig, SyntheticSite};
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::unbounded_channel;

use crate::live::signaling::Hub;
use crate::store::accounts::Account;
use crate::store::{self, Db};

/// The embedded media: (site code, VP8 clip as IVF, Opus beep as Ogg).
const ASSETS: &[(&str, &[u8], &[u8])] = &[
    (
        "tinh-uy",
        include_bytes!("../../assets/sim/tinh-uy.ivf"),
        include_bytes!("../../assets/sim/tinh-uy.opus"),
    ),
    (
        "tp-bac-lieu",
        include_bytes!("../../assets/sim/tp-bac-lieu.ivf"),
        include_bytes!("../../assets/sim/tp-bac-lieu.opus"),
    ),
    (
        "tx-gia-rai",
        include_bytes!("../../assets/sim/tx-gia-rai.ivf"),
        include_bytes!("../../assets/sim/tx-gia-rai.opus"),
    ),
    (
        "hong-dan",
        include_bytes!("../../assets/sim/hong-dan.ivf"),
        include_bytes!("../../assets/sim/hong-dan.opus"),
    ),
    (
        "phuoc-long",
        include_bytes!("../../assets/sim/phuoc-long.ivf"),
        include_bytes!("../../assets/sim/phuoc-long.opus"),
    ),
    (
        "vinh-loi",
        include_bytes!("../../assets/sim/vinh-loi.ivf"),
        include_bytes!("../../assets/sim/vinh-loi.opus"),
    ),
    (
        "hoa-binh",
        include_bytes!("../../assets/sim/hoa-binh.ivf"),
        include_bytes!("../../assets/sim/hoa-binh.opus"),
    ),
    (
        "dong-hai",
        include_bytes!("../../assets/sim/dong-hai.ivf"),
        include_bytes!("../../assets/sim/dong-hai.opus"),
    ),
];

/// The site `all` leaves free, so that a real browser can be a site too (README: `dc-hong-dan`).
pub const LEFT_FOR_A_BROWSER: &str = "hong-dan";

/// A media deadline: a peer not connected this long after its offer is given up and rejoined.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A connected peer that hears nothing from the server this long (no RTCP, no STUN answer, no
/// media) has lost its link: it asks to rejoin, as the site app does when its connection fails.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(8);

/// The clip of a site, if the binary has one for its code.
pub fn clip(code: &str) -> Option<Result<Clip, ClipError>> {
    ASSETS
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, ivf, ogg)| Clip::new(ivf, ogg))
}

/// The site codes of `--simulated-sites`: `all` (every site with a clip but
/// [`LEFT_FOR_A_BROWSER`]) or a comma-separated list of codes.
pub fn parse_selection(arg: &str) -> anyhow::Result<Vec<String>> {
    let arg = arg.trim();
    if arg == "all" {
        return Ok(ASSETS
            .iter()
            .map(|(c, _, _)| c.to_string())
            .filter(|c| c != LEFT_FOR_A_BROWSER)
            .collect());
    }
    let mut out: Vec<String> = Vec::new();
    for code in arg.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        if !ASSETS.iter().any(|(c, _, _)| *c == code) {
            let known: Vec<&str> = ASSETS.iter().map(|(c, _, _)| *c).collect();
            anyhow::bail!(
                "--simulated-sites: no simulated site '{code}' (known: all, {})",
                known.join(", ")
            );
        }
        if !out.iter().any(|c| c == code) {
            out.push(code.to_string());
        }
    }
    if out.is_empty() {
        anyhow::bail!("--simulated-sites: give 'all' or site codes separated by commas");
    }
    Ok(out)
}

/// How a simulated site reaches the server's media port from inside the same machine.
#[derive(Debug, Clone, Copy)]
pub struct MediaRoute {
    /// The address the server announces in its SDP (its ICE candidate).
    pub announced: SocketAddr,
    /// Where the datagrams are actually sent: the bound address, or loopback when the server
    /// listens on every interface (the announced address may be a NAT's).
    pub reach: SocketAddr,
}

impl MediaRoute {
    /// Where to send a datagram addressed to one of the server's announced ports (media
    /// workers have consecutive ports on the same address).
    pub fn toward_server(self, to: SocketAddr) -> SocketAddr {
        if to.ip() == self.announced.ip() {
            SocketAddr::new(self.reach.ip(), to.port())
        } else {
            to
        }
    }

    /// The announced address a datagram from the server's real address stands for.
    pub fn as_announced(self, from: SocketAddr) -> SocketAddr {
        if from.ip() == self.reach.ip() {
            SocketAddr::new(self.announced.ip(), from.port())
        } else {
            from
        }
    }

    pub fn new(bound: SocketAddr, announced: SocketAddr) -> MediaRoute {
        let ip = match bound.ip() {
            IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        MediaRoute {
            announced,
            reach: SocketAddr::new(ip, bound.port()),
        }
    }
}

/// Start the simulated sites `codes`: each connects to the Hub as its device account `dc-<code>`.
/// Returns the names of the sites started.
pub async fn start(
    hub: Arc<Hub>,
    db: &Db,
    codes: &[String],
    route: MediaRoute,
) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for code in codes {
        let clip = match clip(code) {
            Some(Ok(c)) => Arc::new(c),
            Some(Err(e)) => anyhow::bail!("simulated site {code}: its embedded clip: {e}"),
            None => anyhow::bail!("simulated site {code}: no embedded clip"),
        };
        let username = format!("dc-{code}");
        let account = store::accounts::site_device(db, &username, code)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!("simulated site {code}: no site device account '{username}'")
            })?;
        let name = site_name(db, account.site_id).await;
        tracing::info!(
            site = %code,
            account = %username,
            media = %route.reach,
            "simulated site {name} online: it answers the control center's call with its test picture and tone ({:?})",
            clip
        );
        names.push(name);
        tokio::spawn(run(hub.clone(), account, code.clone(), clip, route));
    }
    Ok(names)
}

/// A site's name ("" if it has none or cannot be read: it only names the site in the log).
async fn site_name(db: &Db, site: Option<i64>) -> String {
    match site {
        Some(id) => store::registry::site_name(db, id)
            .await
            .ok()
            .flatten()
            .unwrap_or_default(),
        None => String::new(),
    }
}

/// The media session of a simulated site in one meeting.
struct Peer {
    site: SyntheticSite,
    socket: UdpSocket,
    meeting: i64,
    offered_at: Instant,
    last_heard: Instant,
}

async fn run(hub: Arc<Hub>, account: Account, code: String, clip: Arc<Clip>, route: MediaRoute) {
    let site_id = account.site_id.unwrap_or_default() as u64;
    let (tx, mut rx) = unbounded_channel::<String>();
    let conn = hub.register(account.clone(), tx);
    let mut peer: Option<Peer> = None;
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        let deadline = peer
            .as_ref()
            .map(|p| p.site.poll_timeout())
            .unwrap_or(now + Duration::from_secs(1))
            .clamp(now, now + Duration::from_millis(200));
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else {
                    // The Hub dropped this connection: a real site app logged in as this site.
                    tracing::info!(site = %code, "a site app logged in as this site: the simulated site stops");
                    break;
                };
                on_message(&hub, conn, (site_id, &code), &clip, route, &mut peer, &msg).await;
            }
            r = async {
                match &peer {
                    Some(p) => p.socket.recv_from(&mut buf).await,
                    None => std::future::pending().await,
                }
            } => {
                if let (Ok((n, src)), Some(p)) = (r, peer.as_mut()) {
                    p.last_heard = Instant::now();
                    let src = route.as_announced(src);
                    p.site.handle_receive(Instant::now(), src, &buf[..n]);
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if let Some(p) = peer.as_mut() {
                    p.site.handle_timeout(Instant::now());
                }
            }
        }
        if let Some(p) = peer.as_mut() {
            flush(p, route);
            if let Some(why) = lost(p) {
                tracing::warn!(site = %code, meeting = p.meeting, "simulated site lost its media ({why}); asking to rejoin");
                let meeting = p.meeting;
                peer = None;
                send(
                    &hub,
                    conn,
                    json!({"type": "media_lost", "meeting": meeting}),
                )
                .await;
            }
        }
    }
    if let Some(mut p) = peer.take() {
        p.site.disconnect(Instant::now());
        flush(&mut p, route);
    }
    hub.unregister(conn);
}

/// Why the media session is over, if it is.
fn lost(p: &Peer) -> Option<String> {
    if let Some(e) = p.site.error() {
        return Some(e.to_string());
    }
    match p.site.connected_at() {
        Some(_) if !p.site.is_connected() => Some("connection closed".into()),
        Some(_) if p.last_heard.elapsed() > SILENCE_TIMEOUT => Some(format!(
            "nothing from the server for {} s",
            SILENCE_TIMEOUT.as_secs()
        )),
        None if p.offered_at.elapsed() > CONNECT_TIMEOUT => Some(format!(
            "not connected {} s after its offer",
            CONNECT_TIMEOUT.as_secs()
        )),
        _ => None,
    }
}

fn flush(p: &mut Peer, route: MediaRoute) {
    while let Some(t) = p.site.poll_transmit() {
        let to = route.toward_server(t.destination);
        // UDP semantics: what the kernel cannot take now is dropped (NACK and PLI recover).
        let _ = p.socket.try_send_to(&t.contents, to);
    }
}

async fn send(hub: &Hub, conn: u64, msg: Value) {
    hub.handle(conn, &msg.to_string()).await;
}

async fn on_message(
    hub: &Hub,
    conn: u64,
    (site_id, code): (u64, &str),
    clip: &Arc<Clip>,
    route: MediaRoute,
    peer: &mut Option<Peer>,
    text: &str,
) {
    let Ok(msg) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let now = Instant::now();
    match msg.get("type").and_then(Value::as_str).unwrap_or("") {
        "join" => {
            let Some(meeting) = msg.pointer("/meeting/id").and_then(Value::as_i64) else {
                return;
            };
            if let Some(mut old) = peer.take() {
                old.site.disconnect(now);
                flush(&mut old, route);
            }
            let socket = match UdpSocket::bind(SocketAddr::new(route.reach.ip(), 0)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(site = %code, "simulated site: cannot bind a UDP socket: {e}");
                    return;
                }
            };
            let Ok(local) = socket.local_addr() else {
                return;
            };
            let config = SiteConfig::new(site_id, local).with_clip(clip.clone());
            let mut site = SyntheticSite::new(now, now, config);
            let sdp = site.create_offer();
            tracing::info!(site = %code, meeting, "simulated site joins the meeting");
            *peer = Some(Peer {
                site,
                socket,
                meeting,
                offered_at: now,
                last_heard: now,
            });
            send(
                hub,
                conn,
                json!({"type": "offer", "meeting": meeting, "sdp": sdp}),
            )
            .await;
        }
        "answer" => {
            let (Some(p), Some(sdp)) = (peer.as_mut(), msg.get("sdp").and_then(Value::as_str))
            else {
                return;
            };
            if let Err(e) = p.site.handle_answer(now, sdp) {
                tracing::warn!(site = %code, "simulated site: the server's answer: {e}");
            }
            flush(p, route);
        }
        "offer" => {
            let (Some(p), Some(sdp), Some(seq)) = (
                peer.as_mut(),
                msg.get("sdp").and_then(Value::as_str),
                msg.get("seq").and_then(Value::as_u64),
            ) else {
                return;
            };
            match p.site.handle_offer(now, sdp) {
                Ok(answer) => {
                    flush(p, route);
                    send(
                        hub,
                        conn,
                        json!({"type": "answer", "sdp": answer, "seq": seq}),
                    )
                    .await;
                }
                Err(e) => tracing::warn!(site = %code, "simulated site: the server's offer: {e}"),
            }
        }
        "send_video" => {
            // Nobody receives this site (it is not among the meeting's speakers): pause.
            if let Some(p) = peer.as_mut() {
                let on = msg.get("on").and_then(Value::as_bool).unwrap_or(true);
                p.site.set_video_sending(on);
            }
        }
        "leave" => {
            if let Some(mut p) = peer.take() {
                tracing::info!(site = %code, meeting = p.meeting, "simulated site leaves the meeting");
                p.site.disconnect(now);
                flush(&mut p, route);
            }
        }
        "error" => {
            tracing::warn!(site = %code, "simulated site: the server refused: {text}");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed clips: every demo site has one, 640x360 at 15 fps, 4 s, a keyframe first
    /// and only there, about 300 kbit/s; the beeps are 2 s of 20 ms Opus packets.
    #[test]
    fn embedded_clips_read() {
        let codes: Vec<&str> = crate::demo::SITES
            .iter()
            .map(|s| s.0)
            .filter(|c| *c != "ttdk")
            .collect();
        assert_eq!(codes.len(), ASSETS.len());
        let mut total = 0;
        for code in codes {
            let c = clip(code)
                .unwrap_or_else(|| panic!("no clip for {code}"))
                .unwrap_or_else(|e| panic!("clip of {code}: {e}"));
            let v = &c.video;
            assert_eq!((v.width, v.height, v.fps), (640, 360, 15), "{code}");
            assert_eq!(v.frames.len(), 60, "{code}: 4 s at 15 fps");
            assert!(v.frames[0].keyframe, "{code}: first frame is a keyframe");
            assert_eq!(
                v.frames.iter().filter(|f| f.keyframe).count(),
                1,
                "{code}: one keyframe per loop"
            );
            assert_eq!(
                hnth_media_keyframe_size(&v.frames[0].data),
                Some((640, 360)),
                "{code}: keyframe header"
            );
            let bytes: usize = v.frames.iter().map(|f| f.data.len()).sum();
            let kbps = bytes * 8 / 4 / 1000;
            assert!((200..=450).contains(&kbps), "{code}: {kbps} kbit/s");
            assert!(
                v.frames.iter().all(|f| f.data.len() < 60_000),
                "{code}: frame sizes"
            );
            // 2 s of 20 ms packets (the encoder may add one for its look-ahead).
            let n = c.audio.packets.len();
            assert!((100..=102).contains(&n), "{code}: {n} Opus packets");
            assert!(c.audio.packets.iter().all(|p| p.len() < 400), "{code}");
            total += bytes + c.audio.packets.iter().map(Vec::len).sum::<usize>();
        }
        assert!(total < 2_000_000, "embedded media {total} bytes");
    }

    /// Width and height from a VP8 keyframe header (RFC 6386 §9.1).
    fn hnth_media_keyframe_size(f: &[u8]) -> Option<(u16, u16)> {
        if f.len() < 10 || f[0] & 1 != 0 || f[3..6] != [0x9d, 0x01, 0x2a] {
            return None;
        }
        Some((
            u16::from_le_bytes([f[6], f[7]]) & 0x3fff,
            u16::from_le_bytes([f[8], f[9]]) & 0x3fff,
        ))
    }

    #[test]
    fn selection() {
        let all = parse_selection("all").unwrap();
        assert_eq!(all.len(), ASSETS.len() - 1);
        assert!(!all.iter().any(|c| c == LEFT_FOR_A_BROWSER));
        assert_eq!(
            parse_selection("tinh-uy, dong-hai,tinh-uy").unwrap(),
            ["tinh-uy", "dong-hai"]
        );
        assert!(parse_selection("ttdk").is_err());
        assert!(parse_selection(" , ").is_err());
    }

    /// The whole path in one process: the real Hub, media driver and UDP on loopback. An
    /// operator dials a simulated site; the server measures its picture (640x360 from the clip's
    /// keyframes); then its media is dropped at the media core without telling signaling, and
    /// the simulated site notices, asks to rejoin and is connected again without a new dial.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dialed_simulated_site_sends_its_clip_and_rejoins_after_a_drop() {
        use crate::live::driver::{self, MediaCmd};
        use tokio::sync::mpsc::UnboundedReceiver;
        use tokio::time::Instant as TInstant;

        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open(&dir.path().join("hnth.db"))
            .await
            .unwrap();
        crate::demo::seed(&db, "Sim-test-2024!").await.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let media = socket.local_addr().unwrap();
        let conf = hnth_media::Conference::new(hnth_media::Config {
            candidates: vec![media],
            ..Default::default()
        });
        let (cmd_tx, cmd_rx) = unbounded_channel();
        let (ev_tx, mut ev_rx) = unbounded_channel();
        tokio::spawn(driver::run(socket, media, conf, cmd_rx, ev_tx, None));
        let hub = Hub::new(
            db.clone(),
            driver::MediaRouter::new(vec![cmd_tx.clone()]),
            Default::default(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        let h = hub.clone();
        tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                h.on_media(ev);
            }
        });
        let started = start(
            hub.clone(),
            &db,
            &["tinh-uy".to_string(), "tp-bac-lieu".to_string()],
            MediaRoute::new(media, media),
        )
        .await
        .unwrap();
        assert_eq!(started, ["Văn phòng Tỉnh ủy", "Thành phố Bạc Liêu"]);

        let op_id = store::accounts::id_by_username(&db, "dieuhanh")
            .await
            .unwrap()
            .unwrap();
        let operator = store::accounts::active(&db, op_id).await.unwrap().unwrap();
        let (tx, mut rx) = unbounded_channel::<String>();
        let conn = hub.register(operator, tx);

        /// The next message matching `pred`, within `secs`; the Hub's stats are broadcast
        /// meanwhile (the server does that every second).
        async fn expect(
            hub: &Hub,
            rx: &mut UnboundedReceiver<String>,
            secs: u64,
            what: &str,
            pred: impl Fn(&Value) -> bool,
        ) -> Value {
            let deadline = TInstant::now() + Duration::from_secs(secs);
            let mut last = Value::Null;
            loop {
                let tick = (TInstant::now() + Duration::from_millis(500)).min(deadline);
                match tokio::time::timeout_at(tick, rx.recv()).await {
                    Ok(Some(m)) => {
                        let v: Value = serde_json::from_str(&m).unwrap();
                        if pred(&v) {
                            return v;
                        }
                        last = v;
                    }
                    Ok(None) => panic!("operator connection closed waiting for {what}"),
                    Err(_) if TInstant::now() >= deadline => {
                        panic!("timed out after {secs} s waiting for {what}; last message: {last}")
                    }
                    Err(_) => hub.broadcast_stats(),
                }
            }
        }
        fn site_media(v: &Value, code: &str) -> Option<String> {
            (v["type"] == "sites")
                .then(|| v["list"].as_array())
                .flatten()?
                .iter()
                .find(|s| s["code"] == code)
                .map(|s| format!("{}/{}", s["presence"], s["media"]).replace('"', ""))
        }

        let sites = expect(&hub, &mut rx, 5, "the site list with tinh-uy idle", |v| {
            site_media(v, "tinh-uy").as_deref() == Some("idle/none")
        })
        .await;
        let site = sites["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["code"] == "tinh-uy")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        hub.handle(conn, r#"{"type":"open_meeting","title":"Kiểm thử"}"#)
            .await;
        let opened = expect(&hub, &mut rx, 5, "meeting_opened", |v| {
            v["type"] == "meeting_opened"
        })
        .await;
        let meeting = opened["meeting"]["id"].as_i64().unwrap();
        hub.handle(
            conn,
            &json!({"type": "dial", "meeting": meeting, "site": site}).to_string(),
        )
        .await;
        expect(&hub, &mut rx, 20, "tinh-uy's media connected", |v| {
            site_media(v, "tinh-uy").as_deref() == Some("in_meeting/connected")
        })
        .await;
        // A second site, so that somebody receives tinh-uy (alone, it would be told to pause
        // its video: nobody watches it).
        let other = sites["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["code"] == "tp-bac-lieu")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        hub.handle(
            conn,
            &json!({"type": "dial", "meeting": meeting, "site": other}).to_string(),
        )
        .await;
        expect(
            &hub,
            &mut rx,
            20,
            "stats: the server sees 640x360 from tinh-uy",
            |v| {
                v["type"] == "stats"
                    && v["list"].as_array().is_some_and(|l| {
                        l.iter().any(|s| {
                            s["site_id"] == site && s["width"] == 640 && s["height"] == 360
                        })
                    })
            },
        )
        .await;

        // A drop the Hub does not know of: the media core forgets the peer (the simulated
        // site's offer made peer 1, the only peer), so the server stops answering it.
        cmd_tx.send(MediaCmd::RemovePeer { peer: 1 }).unwrap();
        expect(&hub, &mut rx, 20, "tinh-uy's media to be lost", |v| {
            site_media(v, "tinh-uy").is_some_and(|m| m != "in_meeting/connected")
        })
        .await;
        expect(
            &hub,
            &mut rx,
            30,
            "tinh-uy back in the meeting by itself",
            |v| site_media(v, "tinh-uy").as_deref() == Some("in_meeting/connected"),
        )
        .await;
    }

    #[test]
    fn route_to_the_media_port() {
        let announced: SocketAddr = "203.0.113.5:10000".parse().unwrap();
        let r = MediaRoute::new("0.0.0.0:10000".parse().unwrap(), announced);
        assert_eq!(r.reach, "127.0.0.1:10000".parse().unwrap());
        let r = MediaRoute::new("10.77.0.1:4000".parse().unwrap(), announced);
        assert_eq!(r.reach, "10.77.0.1:4000".parse().unwrap());
    }
}

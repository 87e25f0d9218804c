//! `--target janus`: the same synthetic sites through Janus's VideoRoom plugin (Janus 1.x,
//! HTTP transport), so one generator measures both SFUs.
//!
//! Every site is two peer connections on two UDP sockets, as in a Janus VideoRoom client:
//! - a publisher: the site's usual offer (Opus + VP8 simulcast q/h/f), `joinandconfigure` as
//!   `publisher` with publisher id = site id, Janus answers;
//! - a multistream subscriber: once every feed it wants is receiving media at Janus, `join` as
//!   `subscriber` with one `streams` entry per feed; Janus offers, a receive-only
//!   [`SyntheticSite`] answers with `start`, then `configure` asks substream `--janus-substream` (2: the 1.5 Mbit/s
//!   layer, Janus's default target too) and temporal layer 2 on every video stream.
//!
//! Subscription set: the first 8 sites by index other than the site itself (the "fixed set of
//! 8" the hnth server side uses). All sites share one Janus session; one long poll
//! (`GET /janus/<session>?maxev=10`) carries every asynchronous event and keeps it alive.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hnth_media::testing::{percentile, SiteConfig, SyntheticSite};
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::site::SiteOutcome;
use crate::{http, report, Opts};

/// Feeds a site subscribes to.
pub const FIXED_SET: usize = 8;
/// The most sites a Janus run takes.
pub const MAX_SITES: usize = 200;
/// Deadline of each signaling step.
const STEP: Duration = Duration::from_secs(30);

/// The feeds (site indexes) site `i` of `n` receives: the first [`FIXED_SET`] other sites.
pub fn subscription(i: usize, n: usize) -> Vec<usize> {
    (0..n).filter(|j| *j != i).take(FIXED_SET).collect()
}

fn site_name(i: usize) -> String {
    format!("site-{:03}", i + 1)
}

/// A Janus HTTP API endpoint with one session and an event router.
struct Janus {
    host: String,
    base: String,
    session: u64,
    next_tx: AtomicU64,
    routes: Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>,
}

impl Janus {
    async fn post(host: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let (status, text) = http::request(
            host,
            &format!("POST {path} HTTP/1.1\r\nContent-Type: application/json"),
            &body.to_string(),
        )
        .await?;
        if status != 200 {
            bail!("POST {path}: HTTP {status}: {text}");
        }
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("POST {path}: body {text}"))?;
        if v["janus"] == "error" {
            bail!("POST {path} {body}: {}", v["error"]);
        }
        Ok(v)
    }

    async fn connect(url: &str) -> anyhow::Result<Arc<Janus>> {
        let host = http::host_port(url)?;
        let base = url
            .strip_prefix("http://")
            .and_then(|r| {
                r.find('/')
                    .map(|i| r[i..].trim_end_matches('/').to_string())
            })
            .unwrap_or_else(|| "/janus".into());
        let v = Self::post(
            &host,
            &base,
            &json!({"janus": "create", "transaction": "s"}),
        )
        .await
        .with_context(|| format!("Janus at {url} not reachable"))?;
        let session = v["data"]["id"].as_u64().context("no session id")?;
        Ok(Arc::new(Janus {
            host,
            base,
            session,
            next_tx: AtomicU64::new(1),
            routes: Mutex::new(HashMap::new()),
        }))
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next_tx.fetch_add(1, Ordering::Relaxed))
    }

    /// A VideoRoom handle and the channel of its asynchronous events.
    async fn attach(&self) -> anyhow::Result<(u64, mpsc::UnboundedReceiver<Value>)> {
        let path = format!("{}/{}", self.base, self.session);
        let body = json!({
            "janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": self.transaction()
        });
        let v = Self::post(&self.host, &path, &body).await?;
        let handle = v["data"]["id"].as_u64().context("no handle id")?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes.lock().unwrap().insert(handle, tx);
        Ok((handle, rx))
    }

    /// A plugin message; returns Janus's reply (`ack` for asynchronous requests, `success`
    /// with `plugindata` for synchronous ones).
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<Value> {
        let path = format!("{}/{}/{}", self.base, self.session, handle);
        let mut msg = json!({"janus": "message", "transaction": self.transaction(), "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let v = Self::post(&self.host, &path, &msg).await?;
        if let Some(e) = v["plugindata"]["data"]["error"].as_str() {
            bail!("{}: {e}", msg["body"]["request"]);
        }
        Ok(v)
    }

    /// The long poll: routes events to their handle's channel until aborted.
    async fn poll_events(self: Arc<Self>) {
        let path = format!("{}/{}?maxev=10", self.base, self.session);
        loop {
            let events = match http::get(&self.host, &path).await {
                Ok((200, text)) => serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
                Ok((status, text)) => {
                    eprintln!("janus long poll: HTTP {status}: {text}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    eprintln!("janus long poll: {e:#}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let list = match events {
                Value::Array(a) => a,
                v => vec![v],
            };
            for ev in list {
                let Some(sender) = ev["sender"].as_u64() else {
                    continue;
                };
                if let Some(tx) = self.routes.lock().unwrap().get(&sender) {
                    let _ = tx.send(ev);
                }
            }
        }
    }

    async fn destroy(&self, room: u64, handle: u64) {
        let _ = self
            .message(handle, json!({"request": "destroy", "room": room}), None)
            .await;
        let path = format!("{}/{}", self.base, self.session);
        let body = json!({"janus": "destroy", "transaction": self.transaction()});
        let _ = Self::post(&self.host, &path, &body).await;
    }
}

/// The next event of a handle that `pred` accepts (a plugin error fails).
async fn next_event(
    events: &mut mpsc::UnboundedReceiver<Value>,
    what: &str,
    mut pred: impl FnMut(&Value) -> bool,
) -> anyhow::Result<Value> {
    let wait = async {
        loop {
            let ev = events.recv().await.context("event stream ended")?;
            if let Some(e) = ev["plugindata"]["data"]["error"].as_str() {
                bail!("{what}: {e}");
            }
            if ev["janus"] == "hangup" {
                bail!("{what}: hangup ({})", ev["reason"]);
            }
            if pred(&ev) {
                return Ok(ev);
            }
        }
    };
    tokio::time::timeout(STEP, wait)
        .await
        .with_context(|| format!("no {what} from Janus within {} s", STEP.as_secs()))?
}

/// One peer connection: a [`SyntheticSite`] on its own UDP socket.
struct Peer {
    site: SyntheticSite,
    socket: UdpSocket,
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_errors: u64,
}

impl Peer {
    fn new(site: SyntheticSite, socket: UdpSocket) -> Peer {
        Peer {
            site,
            socket,
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_errors: 0,
        }
    }

    /// Add this peer connection's datagram counters and str0m error to the site's outcome.
    fn add_to(&self, o: &mut SiteOutcome, role: &str) {
        o.udp_rx_packets += self.rx_packets;
        o.udp_rx_bytes += self.rx_bytes;
        o.udp_tx_packets += self.tx_packets;
        o.udp_tx_errors += self.tx_errors;
        if let Some(e) = self.site.error() {
            o.errors.push(format!("{role} str0m: {e}"));
        }
    }

    async fn bind(opts: &Opts) -> anyhow::Result<(UdpSocket, SocketAddr)> {
        let socket = UdpSocket::bind((opts.bind_ip, 0))
            .await
            .with_context(|| format!("bind UDP on {}", opts.bind_ip))?;
        let local = socket.local_addr()?;
        Ok((socket, local))
    }

    /// Moves datagrams and time while `fut` runs; returns its output.
    async fn run_until<F: Future>(&mut self, fut: F) -> F::Output {
        tokio::pin!(fut);
        let mut buf = vec![0u8; 2048];
        loop {
            self.flush();
            let now = Instant::now();
            let wake = self
                .site
                .poll_timeout()
                .clamp(now, now + Duration::from_millis(100));
            tokio::select! {
                out = &mut fut => return out,
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, src)) = r {
                        self.receive(src, &buf[..n]);
                        for _ in 0..64 {
                            match self.socket.try_recv_from(&mut buf) {
                                Ok((n, src)) => self.receive(src, &buf[..n]),
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.site.handle_timeout(Instant::now());
                }
            }
        }
    }

    fn receive(&mut self, src: SocketAddr, buf: &[u8]) {
        self.rx_packets += 1;
        self.rx_bytes += buf.len() as u64;
        self.site.handle_receive(Instant::now(), src, buf);
    }

    fn flush(&mut self) {
        while let Some(t) = self.site.poll_transmit() {
            match self.socket.try_send_to(&t.contents, t.destination) {
                Ok(_) => self.tx_packets += 1,
                Err(_) => self.tx_errors += 1,
            }
        }
    }
}

/// What the run shares with every site task.
struct Ctx {
    opts: Arc<Opts>,
    janus: Arc<Janus>,
    room: u64,
    epoch: Instant,
    /// Per site index: its publisher's media reached Janus.
    published: watch::Sender<Vec<bool>>,
    stop: watch::Receiver<bool>,
}

/// A site's outcome plus the Janus-only timings.
struct JanusOutcome {
    outcome: SiteOutcome,
    times: Times,
}

struct Times {
    /// The publisher's `joinandconfigure` was sent.
    publish_at: Instant,
    /// Janus reported the publisher's audio and video as received.
    published_at: Option<Instant>,
    /// The subscriber's `join` was sent.
    subscribe_at: Option<Instant>,
}

async fn wait_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The publisher side of site `i`: until stop, or an error.
async fn publisher(i: usize, ctx: Arc<Ctx>, out: Arc<Mutex<JanusOutcome>>) -> anyhow::Result<Peer> {
    let opts = &ctx.opts;
    let (handle, mut events) = ctx.janus.attach().await?;
    let (socket, local) = Peer::bind(opts).await?;
    let mut config = SiteConfig::new(i as u64 + 1, local).scale_video(opts.video_scale);
    config.stream = site_name(i);
    config.dtls_cert = Some(opts.dtls_cert.clone());
    config.keyframe_interval = Duration::from_secs_f64(opts.keyframe_interval.max(0.1));
    let now = Instant::now();
    let mut site = SyntheticSite::new(now, ctx.epoch, config);
    // str0m's timers start with a first timeout input; without one before the SDP exchange,
    // the next timeout of a fresh Rtc is far away and ICE never starts.
    site.handle_timeout(now);
    let offer = site.create_offer();
    let mut peer = Peer::new(site, socket);
    out.lock().unwrap().times.publish_at = Instant::now();
    let body = json!({
        "request": "joinandconfigure", "room": ctx.room, "ptype": "publisher",
        "id": i as u64 + 1, "display": site_name(i), "audio": true, "video": true,
    });
    // str0m lists the rids lowest first (q;h;f); Janus assumes highest first unless told.
    let jsep = json!({"type": "offer", "sdp": offer, "trickle": false, "rid_order": "lmh"});
    ctx.janus.message(handle, body, Some(jsep)).await?;
    let ev = next_event(&mut events, "publisher answer", |e| {
        e["jsep"]["type"] == "answer"
    })
    .await?;
    let sdp = ev["jsep"]["sdp"].as_str().context("answer without sdp")?;
    if std::env::var_os("HNTH_BENCH_SDP").is_some() {
        eprintln!("--- publisher offer\n{offer}\n--- Janus answer\n{sdp}");
    }
    peer.site
        .handle_answer(Instant::now(), sdp)
        .map_err(|e| anyhow::anyhow!("publisher answer: {e}"))?;
    // Subscribers may join once Janus receives the feed's audio and video.
    let (mut audio, mut video) = (false, false);
    peer.run_until(next_event(&mut events, "publisher media", |e| {
        if e["janus"] == "media" && e["receiving"] == true {
            audio |= e["type"] == "audio";
            video |= e["type"] == "video";
        }
        audio && video
    }))
    .await
    .with_context(|| {
        format!(
            "udp rx {} tx {} tx errors {}, connected {:?}, str0m error {:?}",
            peer.rx_packets,
            peer.tx_packets,
            peer.tx_errors,
            peer.site.connected_at().is_some(),
            peer.site.error()
        )
    })?;
    out.lock().unwrap().times.published_at = Some(Instant::now());
    ctx.published.send_modify(|p| p[i] = true);
    peer.run_until(wait_stop(ctx.stop.clone())).await;
    Ok(peer)
}

/// The subscriber side of site `i`.
async fn subscriber(
    i: usize,
    ctx: Arc<Ctx>,
    out: Arc<Mutex<JanusOutcome>>,
) -> anyhow::Result<Peer> {
    let opts = &ctx.opts;
    let feeds = subscription(i, opts.sites);
    let mut published = ctx.published.subscribe();
    tokio::time::timeout(STEP, published.wait_for(|p| feeds.iter().all(|f| p[*f])))
        .await
        .context("feeds not published within 30 s")?
        .context("run ended")?;
    let (handle, mut events) = ctx.janus.attach().await?;
    let streams: Vec<Value> = feeds
        .iter()
        .map(|f| json!({"feed": *f as u64 + 1}))
        .collect();
    out.lock().unwrap().times.subscribe_at = Some(Instant::now());
    let body = json!({
        "request": "join", "room": ctx.room, "ptype": "subscriber", "use_msid": true,
        "streams": streams,
    });
    ctx.janus.message(handle, body, None).await?;
    let ev = next_event(&mut events, "subscriber offer", |e| {
        e["jsep"]["type"] == "offer"
    })
    .await?;
    let offer = ev["jsep"]["sdp"].as_str().context("offer without sdp")?;
    if std::env::var_os("HNTH_BENCH_SDP").is_some() {
        eprintln!("--- Janus subscriber offer\n{offer}");
    }
    let video_mids: Vec<String> = ev["plugindata"]["data"]["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["type"] == "video")
        .filter_map(|s| s["mid"].as_str().map(String::from))
        .collect();
    let (socket, local) = Peer::bind(opts).await?;
    let mut config = SiteConfig::new(i as u64 + 1, local);
    config.stream = format!("{}-rx", site_name(i));
    config.dtls_cert = Some(ctx.opts.dtls_cert.clone());
    config.send_audio = false;
    config.layers.clear();
    let now = Instant::now();
    let mut site = SyntheticSite::new(now, ctx.epoch, config);
    site.handle_timeout(now);
    let answer = site
        .handle_offer(now, offer)
        .map_err(|e| anyhow::anyhow!("subscriber offer: {e}"))?;
    let mut peer = Peer::new(site, socket);
    let jsep = json!({"type": "answer", "sdp": answer, "trickle": false});
    let janus = ctx.janus.clone();
    peer.run_until(janus.message(handle, json!({"request": "start"}), Some(jsep)))
        .await?;
    let sub = ctx.opts.janus_substream;
    let streams: Vec<Value> = video_mids
        .iter()
        .map(|m| json!({"mid": m, "substream": sub, "temporal": 2}))
        .collect();
    let body = json!({"request": "configure", "streams": streams});
    peer.run_until(janus.message(handle, body, None)).await?;
    peer.run_until(wait_stop(ctx.stop.clone())).await;
    Ok(peer)
}

/// Both peer connections of site `i`, merged into one outcome for the report.
async fn run_site(i: usize, ctx: Arc<Ctx>) -> JanusOutcome {
    let now = Instant::now();
    let out = Arc::new(Mutex::new(JanusOutcome {
        outcome: SiteOutcome {
            username: site_name(i),
            site_id: i as i64 + 1,
            expected_senders: Some(
                subscription(i, ctx.opts.sites)
                    .iter()
                    .map(|f| *f as u64 + 1)
                    .collect(),
            ),
            talking: true,
            ..Default::default()
        },
        times: Times {
            publish_at: now,
            published_at: None,
            subscribe_at: None,
        },
    }));
    let (p, s) = tokio::join!(
        publisher(i, ctx.clone(), out.clone()),
        subscriber(i, ctx.clone(), out.clone())
    );
    let mut guard = out.lock().unwrap();
    let JanusOutcome { outcome: o, times } = &mut *guard;
    o.joined_at = Some(times.publish_at);
    match p {
        Ok(p) => {
            o.connected_at = p.site.connected_at();
            o.sent = p.site.sent().clone();
            p.add_to(o, "publisher");
        }
        Err(e) => o.errors.push(format!("publisher: {e:#}")),
    }
    match s {
        Ok(s) => {
            o.remote = s.site.remote_tracks().values().cloned().collect();
            o.offers_answered = 1;
            s.add_to(o, "subscriber");
        }
        Err(e) => o.errors.push(format!("subscriber: {e:#}")),
    }
    // Name the received streams after their sender, for the report's layer lines.
    for t in &o.remote {
        if let Some(s) = t.sender() {
            o.participants
                .insert(t.stream_id.clone(), site_name(s as usize - 1));
        }
    }
    drop(guard);
    Arc::try_unwrap(out)
        .ok()
        .expect("site tasks ended")
        .into_inner()
        .unwrap()
}

/// Runs the benchmark against Janus; Ok(false) when media did not flow everywhere.
pub async fn run(opts: Opts) -> anyhow::Result<bool> {
    if opts.sites < 2 || opts.sites > MAX_SITES {
        bail!("--sites must be 2 to {MAX_SITES} with --target janus");
    }
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let janus = Janus::connect(&opts.janus_url).await?;
    let poller = tokio::spawn(janus.clone().poll_events());
    // The room: as many publishers as sites, no bitrate cap worth the name, no recording.
    let (admin, _admin_events) = janus.attach().await?;
    let room = 1_000_000 + u64::from(std::process::id());
    let created = janus
        .message(
            admin,
            json!({
                "request": "create", "room": room, "description": "hnth-bench",
                "publishers": opts.sites, "bitrate": 3_000_000, "videocodec": "vp8",
                "audiocodec": "opus", "record": false, "permanent": false,
                "notify_joining": false,
            }),
            None,
        )
        .await
        .context("create room")?;
    if created["plugindata"]["data"]["videoroom"] != "created" {
        bail!("create room: {created}");
    }
    let opts = Arc::new(opts);
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (published, _) = watch::channel(vec![false; opts.sites]);
    let ctx = Arc::new(Ctx {
        opts: opts.clone(),
        janus: janus.clone(),
        room,
        epoch,
        published,
        stop: stop_rx,
    });
    eprintln!(
        "janus room {room}: {} publishers, each site subscribes to {} feeds; media for {} s",
        opts.sites,
        FIXED_SET.min(opts.sites - 1),
        opts.duration
    );
    let server_before = opts.server_pid.and_then(report::ProcSample::read);
    let self_before = report::ProcSample::read(std::process::id());
    let started_at = Instant::now();
    let tasks: Vec<_> = (0..opts.sites)
        .map(|i| tokio::spawn(run_site(i, ctx.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(opts.duration)).await;
    let ended_at = Instant::now();
    let server_after = opts.server_pid.and_then(report::ProcSample::read);
    let self_after = report::ProcSample::read(std::process::id());
    let _ = stop_tx.send(true);
    let mut outcomes = Vec::new();
    for t in tasks {
        match t.await {
            Ok(o) => outcomes.push(o),
            Err(e) => eprintln!("site task: {e}"),
        }
    }
    poller.abort();
    janus.destroy(room, admin).await;

    println!();
    println!(
        "target: Janus VideoRoom at {} (room {room}; publisher + multistream subscriber per site, \
         substream {} requested)",
        opts.janus_url, opts.janus_substream
    );
    let (list, times): (Vec<SiteOutcome>, Vec<Times>) =
        outcomes.into_iter().map(|o| (o.outcome, o.times)).unzip();
    let procs = report::Procs {
        server: server_before.zip(server_after),
        generator: self_before.zip(self_after),
        server_delay: None,
        socket_wait: None,
        server_delay_steady: None,
        steady_after: Duration::ZERO,
        floor: Vec::new(),
        floor_holders: None,
    };
    let ok = report::print(&opts, &list, started_at, ended_at, &Value::Null, &procs);
    print_joins(&list, &times);
    Ok(ok)
}

/// Janus join times: from publishing (joinandconfigure sent) and from subscribing (subscriber
/// join sent) to the first frame received from any feed.
fn print_joins(outcomes: &[SiteOutcome], times: &[Times]) {
    let ms = |us: Option<u64>| {
        us.map(|u| format!("{:.1}", u as f64 / 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    let mut from_pub = Vec::new();
    let mut from_sub = Vec::new();
    let mut published = Vec::new();
    let mut per_site: BTreeMap<String, String> = BTreeMap::new();
    for (o, t) in outcomes.iter().zip(times) {
        let first = o.remote.iter().filter_map(|t| t.first_frame_at).min();
        let p = first.map(|f| f.saturating_duration_since(t.publish_at).as_micros() as u64);
        let s = first
            .zip(t.subscribe_at)
            .map(|(f, s)| f.saturating_duration_since(s).as_micros() as u64);
        let up = t
            .published_at
            .map(|u| u.saturating_duration_since(t.publish_at).as_micros() as u64);
        per_site.insert(
            o.username.clone(),
            format!("{}/{}/{}", ms(up), ms(p), ms(s)),
        );
        from_pub.extend(p);
        from_sub.extend(s);
        published.extend(up);
    }
    println!(
        "janus joins (ms, publish→media at Janus / publish→first frame / subscribe→first frame): {}",
        per_site
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "janus join: publish→first frame p50 {} ms, max {} ms; subscribe→first frame p50 {} ms, \
         max {} ms; publish→media up at Janus p50 {} ms",
        ms(percentile(&mut from_pub.clone(), 50.0)),
        ms(from_pub.iter().max().copied()),
        ms(percentile(&mut from_sub.clone(), 50.0)),
        ms(from_sub.iter().max().copied()),
        ms(percentile(&mut published, 50.0)),
    );
}

#[cfg(test)]
mod tests {
    use super::subscription;

    #[test]
    fn fixed_set_of_eight_other_sites() {
        assert_eq!(subscription(0, 3), vec![1, 2]);
        assert_eq!(subscription(1, 3), vec![0, 2]);
        assert_eq!(subscription(0, 25), (1..9).collect::<Vec<_>>());
        assert_eq!(subscription(5, 25), vec![0, 1, 2, 3, 4, 6, 7, 8]);
        assert_eq!(subscription(20, 25), (0..8).collect::<Vec<_>>());
    }
}

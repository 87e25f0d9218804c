//! `hnth`: the one server binary a province runs on its own box.

mod admin;
mod config;
mod demo;
#[cfg(test)]
mod fuzzing;
mod live;
mod services;
mod store;
mod telemetry;
mod tls;
mod web;

/// mimalloc instead of glibc's allocator: glibc's per-thread arenas keep the memory of every
/// login's argon2 work (19 MiB each) resident: after 25 site logins the server held 376 MiB
/// with glibc and 60 MiB with mimalloc, at the same CPU per forwarded packet (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hnth_rules::roles::Role;

use crate::config::{Settings, TlsMode};

#[derive(Parser)]
#[command(
    name = "hnth",
    version,
    about = "Provincial video-conferencing server (Decision 561/QĐ-UBND)"
)]
struct Cli {
    /// Settings file (TOML). Flags and HNTH_* environment variables override it.
    #[arg(long, global = true, env = "HNTH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the server with the demo province (Bạc Liêu) loaded, and print URLs and logins.
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
        /// Password of every demo account (default: generated once, kept in the data folder).
        #[arg(long, env = "HNTH_DEMO_PASSWORD")]
        demo_password: Option<String>,
        /// Also create N load-test sites `bench-001`… with device accounts `dc-bench-001`…
        /// (for `hnth-bench` and the scenarios in bench/).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1000))]
        bench_sites: u16,
        /// Simulated sites that answer the control center's call with a moving test picture
        /// bearing their name and a beep: `all` (every site but hong-dan, left for a browser)
        /// or site codes separated by commas, e.g. `tinh-uy,tx-gia-rai`. Default: none.
        #[arg(long, env = "HNTH_DEMO_SIMULATED_SITES", value_name = "all|CODES")]
        simulated_sites: Option<String>,
    },
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Write a consistent copy of the database, while the server runs (SQLite's VACUUM INTO).
    Backup {
        /// A folder (the copy is named hnth-YYYYMMDD-HHMMSS.db there) or a new file's path.
        #[arg(long)]
        to: PathBuf,
        /// In a folder, keep only the newest N copies.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Put a backup in place of the database; the server must be stopped. The replaced database
    /// is kept beside it.
    Restore {
        /// The backup file to restore.
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address and port of the web pages and signaling, e.g. 0.0.0.0:8443.
    #[arg(long, env = "HNTH_HTTP")]
    http: Option<SocketAddr>,
    /// UDP address and port for all media, e.g. 0.0.0.0:10000.
    #[arg(long, env = "HNTH_UDP")]
    udp: Option<SocketAddr>,
    /// Address announced to sites for media (when the UDP bind address is 0.0.0.0 or behind NAT).
    #[arg(long, env = "HNTH_ANNOUNCE")]
    announce: Option<IpAddr>,
    /// Media worker threads, each with its own UDP port from --udp's upwards (media.workers;
    /// default: one per CPU core).
    #[arg(long, env = "HNTH_MEDIA_WORKERS", value_parser = clap::value_parser!(u8).range(1..=64))]
    media_workers: Option<u8>,
    /// How many other sites each participant receives (media.view_size; default 8).
    #[arg(long, env = "HNTH_VIEW_SIZE", value_parser = clap::value_parser!(u8).range(1..=25))]
    view_size: Option<u8>,
    /// Folder of the database, certificate and demo logins.
    #[arg(long, env = "HNTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// auto (self-signed, made on first run), files (http.cert/http.key), off (plain HTTP).
    #[arg(long, env = "HNTH_TLS", value_enum)]
    tls: Option<TlsMode>,
    /// SMTP server for notices, as host:port (plain SMTP; see mail.* settings for TLS).
    #[arg(long, env = "HNTH_SMTP")]
    smtp: Option<String>,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create an account (the first administrator, for instance). The password is read from
    /// standard input.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        name: String,
        /// admin, operator, site_technician, organizer, chair, provider_technician, leadership, site_device
        #[arg(long)]
        role: String,
        /// Site code, for site roles.
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Set a new password (read from standard input) and unlock the account.
    Password {
        #[arg(long)]
        username: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() {
    if let Err(e) = run() {
        // One clear line for the operator, not a backtrace.
        eprintln!("hnth: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "hnth=info,hnth_server=info,str0m=warn".into()),
        )
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(a) => {
            a.apply(&mut settings);
            settings.province.require()?;
            rt.block_on(serve(settings, None, Vec::new()))
        }
        Command::Demo {
            serve: a,
            demo_password,
            bench_sites,
            simulated_sites,
        } => {
            a.apply(&mut settings);
            settings.province = settings.province.or(&demo::province());
            demo::let_bench_sites_in(&mut settings.security, bench_sites.into());
            let simulated = match simulated_sites {
                Some(arg) => live::sim::parse_selection(&arg)?,
                None => Vec::new(),
            };
            rt.block_on(serve(
                settings,
                Some(Demo {
                    password: demo_password,
                    bench_sites: bench_sites as usize,
                }),
                simulated,
            ))
        }
        Command::User(cmd) => rt.block_on(user(cmd, settings)),
        Command::Backup { to, keep, data_dir } => {
            let dir = data_dir.unwrap_or(settings.storage.data_dir);
            rt.block_on(admin::backup(
                &dir.join("hnth.db"),
                &to,
                keep.map(|k| k as usize),
            ))
            .map(drop)
        }
        Command::Restore { from, data_dir } => {
            let dir = data_dir.unwrap_or(settings.storage.data_dir);
            rt.block_on(admin::restore(&dir, &from))
        }
    }
}

impl ServeArgs {
    fn apply(&self, s: &mut Settings) {
        if let Some(v) = self.http {
            s.http.bind = v;
        }
        if let Some(v) = self.udp {
            s.media.bind = v;
        }
        if let Some(v) = self.announce {
            s.media.announce = Some(v);
        }
        if let Some(v) = self.media_workers {
            s.media.workers = v as usize;
        }
        if let Some(v) = self.view_size {
            s.media.view_size = v as usize;
        }
        if let Some(v) = &self.data_dir {
            s.storage.data_dir = v.clone();
        }
        if let Some(v) = self.tls {
            s.http.tls = v;
        }
        if let Some(v) = &self.smtp {
            let (host, port) = v.rsplit_once(':').unwrap_or((v.as_str(), "25"));
            s.mail.smtp_host = Some(host.to_string());
            s.mail.smtp_port = port.parse().unwrap_or(25);
        }
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn user(cmd: UserCmd, mut settings: Settings) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add {
            username,
            name,
            role,
            site,
            data_dir,
        } => {
            if let Some(d) = data_dir {
                settings.storage.data_dir = d;
            }
            let db = store::open(&settings.db_path()).await?;
            let role =
                Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role '{role}'"))?;
            let site_id = match site {
                Some(code) => Some(
                    store::registry::sites(&db)
                        .await?
                        .into_iter()
                        .find(|s| s.code == code)
                        .ok_or_else(|| anyhow::anyhow!("no site with code '{code}'"))?
                        .id,
                ),
                None => None,
            };
            eprintln!("Password for {username} (one line on standard input):");
            let pw = read_password()?;
            let new = services::accounts::NewAccount {
                username: &username,
                display_name: &name,
                password: &pw,
                role: role.as_str(),
                site_id,
                unit_id: None,
            };
            services::accounts::create(&db, services::accounts::By::Tool("hnth user add"), &new)
                .await?;
            println!("account {username} created ({})", role.label_en());
        }
        UserCmd::Password { username, data_dir } => {
            if let Some(d) = data_dir {
                settings.storage.data_dir = d;
            }
            let db = store::open(&settings.db_path()).await?;
            eprintln!("New password for {username} (one line on standard input):");
            let pw = read_password()?;
            services::accounts::reset_password(&db, "hnth user password", &username, &pw).await?;
            println!("password of {username} changed; its sessions were closed");
        }
    }
    Ok(())
}

/// What `hnth demo` adds to `serve`.
struct Demo {
    password: Option<String>,
    bench_sites: usize,
}

async fn serve(
    settings: Settings,
    demo: Option<Demo>,
    simulated: Vec<String>,
) -> anyhow::Result<()> {
    web::set_province(&settings.province.name);
    let _lock = admin::lock_data(&settings.storage.data_dir)?;
    telemetry::install();
    let db = store::open(&settings.db_path()).await?;
    let mut demo_logins = None;
    let mut demo_password = None;
    let mut bench_sites = 0;
    if let Some(d) = demo {
        let pw = demo::password(&settings.storage.data_dir, d.password.as_deref())?;
        if let Some(logins) = demo::seed(&db, &pw).await? {
            demo_logins = Some(logins);
        }
        if let Some(id) = demo::booking_of_the_day(&db, chrono::Utc::now()).await? {
            tracing::info!(booking = id, "the demo's meeting of the day was booked");
        }
        let added = demo::seed_bench_sites(&db, &pw, d.bench_sites).await?;
        if added > 0 {
            tracing::info!(added, "load-test sites created");
        }
        bench_sites = d.bench_sites;
        demo_password = Some(pw);
    }

    // Media: worker threads, one UDP port each (media.bind's port and the next ones).
    let announce = settings.announce_ip()?;
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let workers = live::driver::start_workers(
        settings.media.bind,
        announce,
        settings.media_workers(),
        hnth_media::Config {
            view_size: settings.media.view_size,
            monitor_view: settings.media.monitor_view,
            estimation: settings.media.bandwidth_estimation.into(),
            ..Default::default()
        },
        ev_tx,
    )?;
    let (media_bound, media_addr) = workers.addrs[0];
    let media_delay = workers.delay.clone();
    let media_ports: Vec<String> = workers
        .addrs
        .iter()
        .map(|(_, a)| a.port().to_string())
        .collect();

    // The meetings the last run left open come back (their sites rejoin as they reconnect).
    let restart = services::meetings::restore(&db, chrono::Utc::now()).await?;
    let run = restart.run;
    if !restart.meetings.is_empty() {
        tracing::info!(
            meetings = restart.meetings.len(),
            last_run_end = restart.last_run_end,
            "meetings of the last run come back; its connections were recorded as ended when it stopped"
        );
    }
    // The server's sign of life, so that after a crash the next start knows when it stopped.
    {
        let db = db.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(services::meetings::HEARTBEAT);
            loop {
                every.tick().await;
                if let Err(e) = services::meetings::alive(&db, run, chrono::Utc::now()).await {
                    tracing::warn!("writing the server's sign of life: {e}");
                }
            }
        });
    }
    let outbox: services::mail::Outbox = Default::default();
    let hub = live::signaling::Hub::new(
        db.clone(),
        workers.router,
        outbox.clone(),
        settings.meeting.clone(),
        live::meeting::Views {
            site: settings.media.view_size,
            monitor: settings.media.monitor_view,
        },
    )
    .await?;
    hub.restore(restart.meetings, chrono::Utc::now());
    // Told when the server stops (below).
    let stopping_hub = hub.clone();
    let h = hub.clone();
    tokio::spawn(async move {
        while let Some(ev) = ev_rx.recv().await {
            h.on_media(ev);
        }
    });
    let h = hub.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            h.broadcast_stats();
            // The consoles' list of the day's bookings (and opening at the preparation time).
            if n.is_multiple_of(20) {
                h.refresh_bookings().await;
            }
            n += 1;
        }
    });

    // The demo's simulated sites: in-process site apps on the real Hub and UDP port.
    let simulated_names = if simulated.is_empty() {
        Vec::new()
    } else {
        let route = live::sim::MediaRoute::new(media_bound, media_addr);
        live::sim::start(hub.clone(), &db, &simulated, route).await?
    };

    tokio::spawn(services::mail::run(
        db.clone(),
        settings.mail.clone(),
        outbox.clone(),
    ));

    let tls = tls::load(&settings).await?;
    let limits = Arc::new(web::limits::Limits::new(&settings.security));
    {
        let limits = limits.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                limits.forget_idle();
            }
        });
    }
    let state = web::AppState {
        db: db.clone(),
        hub,
        settings: Arc::new(settings.clone()),
        secure_cookies: tls.is_some(),
        outbox,
        media_delay,
        limits: limits.clone(),
    };
    let app = web::router(state);
    let listener = std::net::TcpListener::bind(settings.http.bind)
        .map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", settings.http.bind))?;
    listener.set_nonblocking(true)?;
    let http_addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host = if http_addr.ip().is_unspecified() {
        config::first_lan_ipv4()
            .map(|i| i.to_string())
            .unwrap_or_else(|| "localhost".into())
    } else {
        http_addr.ip().to_string()
    };
    let base = format!("{scheme}://{host}:{}", http_addr.port());
    println!(
        "hnth {} listening on {base} (media UDP {} port {}, {} worker{})",
        env!("CARGO_PKG_VERSION"),
        media_addr.ip(),
        media_ports.join(", "),
        media_ports.len(),
        if media_ports.len() == 1 { "" } else { "s" }
    );
    if let Some(generated) = tls.as_ref().and_then(|t| t.generated.as_ref()) {
        println!(
            "TLS: using a self-signed certificate ({}); browsers will ask to accept it once.",
            generated.display()
        );
    }
    println!("  Control-center console: {base}/console");
    println!("  Site app (one per meeting room): {base}/site");
    println!("  Chair's view (the chair of a meeting): {base}/chair");
    if let Some(pw) = &demo_password {
        println!("Demo logins (password for all: {pw}):");
        let accounts: Vec<(String, String)> = match &demo_logins {
            Some(l) => l
                .iter()
                .map(|l| {
                    (
                        l.username.clone(),
                        l.site.clone().unwrap_or_else(|| l.role.to_string()),
                    )
                })
                .collect(),
            None => store::accounts::usernames_with_site(&db).await?,
        };
        for (u, what) in accounts.iter().filter(|(u, _)| !u.starts_with("dc-bench-")) {
            println!("  {u:<16} {what}");
        }
        if bench_sites > 0 {
            println!("  dc-bench-001 … dc-bench-{bench_sites:03}: load-test sites (hnth-bench)");
        }
    }
    if !simulated_names.is_empty() {
        println!(
            "Simulated sites (answer the console's call with a test picture and a beep): {}",
            simulated_names.join(", ")
        );
        println!("  A site app logging in as one of them replaces it until the next start.");
    }

    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        // Ctrl-C at a terminal, SIGTERM from systemd or a test.
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
        stopping_hub.stopping(run, chrono::Utc::now()).await;
        h.graceful_shutdown(Some(Duration::from_secs(2)));
    });
    // Signaling is many small messages (offers, answers, joins): TCP_NODELAY, so that none
    // waits for the acknowledgement of the one before it (Nagle's algorithm).
    let nodelay = axum_server::accept::NoDelayAcceptor::new();
    match tls {
        Some(t) => {
            axum_server::from_tcp_rustls(listener, t.config)
                .map(|tls| tls.acceptor(nodelay))
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await?
        }
        None => {
            axum_server::from_tcp(listener)
                .acceptor(nodelay)
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await?
        }
    }
    Ok(())
}

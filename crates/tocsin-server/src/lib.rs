//! The `tocsin` binary's library: flags, wiring, dispatcher runtime, pipeline and HTTP API.
//!
//! Entry points: [`run`] (what `main` calls), [`app::App`] (a replica, usable in-process by
//! tests with an injected [`app::NotifierFactory`] and tokio's paused clock) and
//! [`api::router`]; the event history is [`events::EventLog`], and [`cli::main`] runs the
//! `tocsin events|history|dry-run|test-receiver` commands. This crate is the composition root: it may depend on every other crate; no
//! other crate depends on it. The wall clock is read once, in [`clock::Clock::system`].

pub mod alerts_body;
pub mod api;
mod api_events;
mod api_silences;
pub mod app;
pub mod cli;
pub mod clock;
pub mod cluster;
mod cluster_tls;
pub mod dispatch;
mod dry_run;
pub mod event_outputs;
pub mod events;
pub mod flags;
pub mod http_server;
mod json_out;
pub mod logging;
pub mod metrics;
pub mod peer;
mod pipeline;
mod process_metrics;
pub mod reload;
pub mod replicated;
pub mod storage;
pub mod store;
mod web_config;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use tocsin_core::config::LoadOptions;
use tocsin_core::matchers::ParseMode;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::app::{App, NotifierFactory, Settings};
use crate::flags::Flags;
use crate::reload::read_config;

/// The User-Agent of notification requests.
pub fn user_agent() -> String {
    format!("Tocsin/{}", env!("CARGO_PKG_VERSION"))
}

/// Loader options implied by the flags.
///
/// # Errors
/// Invalid `--enable-feature` values.
pub fn load_options(flags: &Flags) -> anyhow::Result<LoadOptions> {
    let features = flags.features().map_err(anyhow::Error::msg)?;
    let parse_mode = if features.iter().any(|f| f == "classic-mode") {
        ParseMode::Classic
    } else if features.iter().any(|f| f == "utf8-strict-mode") {
        ParseMode::Utf8Strict
    } else {
        ParseMode::Fallback
    };
    Ok(LoadOptions {
        parse_mode,
        local_timezone: jiff::tz::TimeZone::system(),
    })
}

/// Turns `:9093` into `0.0.0.0:9093`.
fn listen_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .with_context(|| format!("invalid --web.listen-address {s:?}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Computes the external URL (no trailing slash) and the route prefix (`/` or `/x`).
///
/// # Errors
/// An external URL whose scheme is not http or https.
pub fn external_url_and_prefix(flags: &Flags, port: u16) -> anyhow::Result<(String, String)> {
    let ext = if flags.web_external_url.is_empty() {
        format!("http://{}:{port}/", hostname())
    } else {
        flags.web_external_url.clone()
    };
    let Some((scheme, rest)) = ext.split_once("://") else {
        bail!("invalid --web.external-url {ext:?}")
    };
    if scheme != "http" && scheme != "https" {
        bail!("%q: invalid \"{scheme}\" scheme, only 'http' and 'https' are supported");
    }
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let prefix_src = if flags.web_route_prefix.is_empty() {
        path
    } else {
        flags.web_route_prefix.as_str()
    };
    let prefix = format!("/{}", prefix_src.trim_matches('/'));
    Ok((ext.trim_end_matches('/').to_string(), prefix))
}

/// The sockets a replica serves on, bound before it starts (tests bind port 0 and read the
/// addresses back).
pub struct Listeners {
    /// `--web.listen-address`: the HTTP API.
    pub web: tokio::net::TcpListener,
    /// `--cluster.listen-address`: TCP replication (gossip binds UDP on the same port), when
    /// clustering is enabled.
    pub cluster: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Binds what the flags name.
    ///
    /// # Errors
    /// An invalid address or a port in use.
    pub async fn bind(flags: &Flags) -> anyhow::Result<Self> {
        let addr = listen_addr(flags.web_listen_address.first().map(String::as_str).unwrap_or(":9093"))?;
        let web = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("unable to listen on {addr}"))?;
        let cluster = if flags.cluster_listen_address.is_empty() {
            None
        } else {
            let addr = listen_addr(&flags.cluster_listen_address)?;
            Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("unable to listen on cluster address {addr}: {e}"))?,
            )
        };
        Ok(Listeners { web, cluster })
    }
}

/// Runs Tocsin until SIGINT or SIGTERM.
///
/// # Errors
/// Start-up failures: bad flags, unreadable or invalid config, unwritable storage path, port in use.
pub async fn run(flags: Flags) -> anyhow::Result<()> {
    if flags.config_check {
        let load = load_options(&flags)?;
        let config_path = PathBuf::from(&flags.config_file);
        let config =
            read_config(&config_path, &load).map_err(|e| anyhow::anyhow!("loading configuration file failed: {e}"))?;
        println!("Checking '{}' SUCCESS", config_path.display());
        println!(
            "Found:\n - global config\n - route\n - {} inhibit rules\n - {} receivers\n - {} templates",
            config.inhibit_rules.len(),
            config.receivers.len(),
            config.templates.len()
        );
        return Ok(());
    }
    check_security_settings(&flags)?;
    // The configuration is read before binding: a bad file is reported as such, not as a port.
    read_config(&PathBuf::from(&flags.config_file), &load_options(&flags)?)
        .map_err(|e| anyhow::anyhow!("loading configuration file failed: {e}"))?;
    let listeners = Listeners::bind(&flags).await?;
    run_with(flags, listeners, async {
        wait_for_termination().await;
        info!("received termination signal, exiting gracefully");
    })
    .await
}

/// Runs a replica on bound listeners until `shutdown` resolves, then leaves the cluster, lets
/// the sends under way finish and writes the final snapshots.
///
/// # Errors
/// Start-up failures: invalid config, unwritable storage path, cluster ports.
pub async fn run_with(
    flags: Flags,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_security_settings(&flags)?;
    let load = load_options(&flags)?;
    let config_path = PathBuf::from(&flags.config_file);
    let config =
        read_config(&config_path, &load).map_err(|e| anyhow::anyhow!("loading configuration file failed: {e}"))?;
    for w in &config.warnings {
        warn!(warning = %w, "configuration warning");
    }
    std::fs::create_dir_all(&flags.storage_path)
        .with_context(|| format!("unable to create --storage.path {:?}", flags.storage_path))?;
    storage::write_atomic(&PathBuf::from(&flags.storage_path).join(".write-check"), b"")
        .map_err(|e| anyhow::anyhow!("--storage.path {:?} is not writable: {e}", flags.storage_path))?;
    let _ = std::fs::remove_file(PathBuf::from(&flags.storage_path).join(".write-check"));
    let Listeners {
        web: listener,
        cluster: cluster_listener,
    } = listeners;
    let bound = listener.local_addr()?;
    let (external_url, prefix) = external_url_and_prefix(&flags, bound.port())?;
    let storage = PathBuf::from(&flags.storage_path);
    let settings = Settings {
        config_path,
        external_url,
        retention: flags.data_retention,
        alerts_gc_interval: flags.alerts_gc_interval,
        load,
        storage_path: Some(storage.clone()),
        maintenance_interval: flags.data_maintenance_interval,
        journal_sync_interval: journal_sync(flags.data_journal_sync_interval)?,
        silence_limits: tocsin_core::silence::Limits {
            max_silences: flags.silences_max_silences,
            max_silence_size_bytes: flags.silences_max_silence_size_bytes,
        },
        peer_timeout: flags.cluster_peer_timeout,
        max_clock_skew: flags.cluster_max_clock_skew,
        web_timeout: flags.web_timeout,
        get_concurrency: usize::try_from(flags.web_get_concurrency).unwrap_or(0),
        per_alertname_limit: flags.alerts_per_alertname_limit,
        drop_labels: drop_labels(&flags.alerts_drop_label)?,
        snapshot_mode: if flags.storage_group_readable { 0o640 } else { 0o600 },
        body_read_timeout: flags.web_body_read_timeout,
        request_memory: flags.web_request_memory,
        peer_name: flags.cluster_peer_name.clone(),
        event_recorder: flags
            .features()
            .map_err(anyhow::Error::msg)?
            .iter()
            .any(|f| f == "event-recorder"),
        events: events::Limits {
            max_bytes: flags.events_max_size_bytes,
            retention: flags.events_retention,
        },
        alert_bounds: app::AlertBounds {
            max_alerts: flags.alerts_max_alerts,
            max_labels: flags.alerts_max_labels,
            max_label_bytes: flags.alerts_max_label_bytes,
        },
    };
    let ua = user_agent();
    let factory: NotifierFactory = Arc::new(move |r, shared| tocsin_notify::build_integrations(r, &ua, shared));
    let app = App::new(settings, config, factory, clock::Clock::system()).map_err(anyhow::Error::msg)?;
    storage::load(&app, &storage);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    if let Some(tcp) = cluster_listener {
        let opts = cluster_options(&flags)?;
        let peer = cluster::join(&app, opts, tcp, shutdown_rx.clone()).await?;
        app.set_cluster(peer);
    }
    if !flags.alerts_drop_label.is_empty() {
        info!(labels = ?flags.alerts_drop_label, "dropping these labels from every posted alert (--alerts.drop-label)");
    }
    let mut started = tocsin_core::events::Event::new(tocsin_core::events::Kind::Startup);
    started.reason = format!("version {}", env!("CARGO_PKG_VERSION"));
    app.record(started);
    let scheduler = tokio::spawn(app.clone().run_scheduler(shutdown_rx.clone()));
    let maintenance = tokio::spawn(storage::run_maintenance(app.clone(), storage, shutdown_rx.clone()));
    spawn_sighup(app.clone());
    let web_config = if flags.web_config_file.is_empty() {
        None
    } else {
        Some(web_config::WebConfig::load(&flags.web_config_file)?)
    };
    let tls = web_config.as_ref().is_some_and(|w| w.current().tls.is_some());
    info!(address = %bound, tls, "Listening on");
    let mut router = api::router(app.clone(), &prefix);
    if let Some(w) = &web_config {
        router = router.layer(axum::middleware::from_fn_with_state(w.clone(), web_config::guard));
    }
    let limits = http_server::Limits {
        header_read_timeout: flags.web_header_read_timeout,
        max_connections: flags.web_max_connections,
    };
    let server = http_server::serve(
        listener,
        router,
        limits,
        app.metrics.http_refused.clone(),
        shutdown_rx.clone(),
        web_config,
    );
    let leaving = app.clone();
    let signals = tokio::spawn(async move {
        shutdown.await;
        // Peers take over positions while this replica finishes what it is sending.
        if let Some(c) = leaving.cluster() {
            c.leave().await;
        }
        let _ = shutdown_tx.send(true);
    });
    server.await;
    signals.abort();
    let _ = scheduler.await;
    let _ = maintenance.await;
    app.record(tocsin_core::events::Event::new(tocsin_core::events::Kind::Shutdown));
    let closing = app.clone();
    let _ = tokio::task::spawn_blocking(move || closing.events.close()).await;
    info!("stopped");
    Ok(())
}

/// Security settings Tocsin cannot honour yet stop the start: serving without the TLS and
/// authentication a user asked for, and only warning, would leave them believing they have it.
fn check_security_settings(flags: &Flags) -> anyhow::Result<()> {
    if !flags.web_config_file.is_empty() {
        // Checked before anything listens: a bad file stops the start.
        web_config::WebConfig::load(&flags.web_config_file)?;
    }
    if !flags.cluster_tls_config.is_empty() {
        // Read and load every file now: a bad one stops the start before anything listens.
        let settings = cluster_tls::load(&flags.cluster_tls_config)?;
        tocsin_cluster::tls::ClusterTls::load(&settings)
            .map_err(|e| anyhow::anyhow!("--cluster.tls-config {:?}: {e}", flags.cluster_tls_config))?;
        if flags.cluster_tls_peer_names {
            if settings.server.client_auth != tocsin_cluster::tls::ClientAuth::RequireAndVerify {
                bail!(
                    "--cluster.tls-peer-names needs client_auth_type RequireAndVerifyClientCert in --cluster.tls-config"
                );
            }
            if flags.cluster_peer_name.is_empty() {
                bail!(
                    "--cluster.tls-peer-names needs --cluster.peer-name: the name this replica's certificate carries"
                );
            }
            let own = settings.client.cert_file.as_ref().unwrap_or(&settings.server.cert_file);
            let ok =
                tocsin_cluster::tls::cert_file_is_for(own, &flags.cluster_peer_name).map_err(anyhow::Error::msg)?;
            if !ok {
                bail!(
                    "--cluster.tls-peer-names: {} is not a certificate for {:?} (its peer name, as a DNS name)",
                    own.display(),
                    flags.cluster_peer_name
                );
            }
        }
        if settings.server.client_auth != tocsin_cluster::tls::ClientAuth::RequireAndVerify {
            warn!(
                "--cluster.tls-config does not require client certificates (client_auth_type RequireAndVerifyClientCert): anyone who can reach the cluster port can replicate state to this replica"
            );
        }
    } else if flags.cluster_tls_peer_names {
        bail!("--cluster.tls-peer-names needs --cluster.tls-config");
    } else if !flags.cluster_listen_address.is_empty() {
        warn!(
            address = %flags.cluster_listen_address,
            "the cluster port is unauthenticated: anyone who can reach it can replicate silences and notification state to this replica; firewall it to the other replicas"
        );
    }
    Ok(())
}

/// A default peer name that sorts by start time, like Alertmanager's ULIDs.
fn default_peer_name() -> String {
    let ms = jiff::Timestamp::now().as_millisecond();
    let nanos = jiff::Timestamp::now().subsec_nanosecond();
    format!("{ms:012x}{:08x}", (std::process::id() as u64 ^ nanos as u64) as u32)
}

fn cluster_options(flags: &Flags) -> anyhow::Result<cluster::JoinOptions> {
    let advertise = if flags.cluster_advertise_address.is_empty() {
        None
    } else {
        // An IP address, or a name resolved once at start-up (a compose service name).
        let a = &flags.cluster_advertise_address;
        let resolved = a.parse::<SocketAddr>().ok().or_else(|| {
            use std::net::ToSocketAddrs;
            a.to_socket_addrs().ok().and_then(|mut it| it.next())
        });
        Some(resolved.with_context(|| {
            format!(
                "invalid --cluster.advertise-address {a:?} (host:port, the host an IP address or a name that resolves)"
            )
        })?)
    };
    Ok(cluster::JoinOptions {
        name: if flags.cluster_peer_name.is_empty() {
            default_peer_name()
        } else {
            flags.cluster_peer_name.clone()
        },
        advertise,
        peers: flags.cluster_peer.clone(),
        label: flags.cluster_label.clone(),
        gossip_interval: flags.cluster_gossip_interval,
        pushpull_interval: flags.cluster_pushpull_interval,
        settle_timeout: flags.cluster_settle_timeout,
        tls_peer_names: flags.cluster_tls_peer_names,
        tls: if flags.cluster_tls_config.is_empty() {
            None
        } else {
            Some(cluster_tls::load(&flags.cluster_tls_config)?)
        },
    })
}

fn spawn_sighup(app: Arc<App>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(e) = app.reload().await {
                error!(err = %e, "error reloading configuration");
            }
        }
    });
}

async fn wait_for_termination() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// `--alerts.drop-label` values, checked: a label name, not empty, and never `alertname`
/// (without it an alert has no name, and Prometheus' rules always set it).
fn drop_labels(names: &[String]) -> anyhow::Result<Vec<String>> {
    for n in names {
        if n.is_empty() {
            anyhow::bail!("--alerts.drop-label needs a label name");
        }
        if n == "alertname" {
            anyhow::bail!("--alerts.drop-label=alertname would drop every alert's name");
        }
    }
    let mut out = names.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

/// `--data.journal-sync-interval`, checked: the journal must be synced at some point.
fn journal_sync(d: std::time::Duration) -> anyhow::Result<std::time::Duration> {
    if d.is_zero() {
        anyhow::bail!("--data.journal-sync-interval must be more than 0s");
    }
    Ok(d)
}

//! Command-line flags, named and defaulted as Alertmanager's (§1).

use std::time::Duration;

use clap::Parser;
use tocsin_core::duration::parse_duration;

use crate::logging::LogFormat;

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// Tocsin: a highly available, Alertmanager-compatible alert notifier.
#[derive(Parser, Debug, Clone)]
#[command(name = "tocsin", version, about)]
pub struct Flags {
    /// Alertmanager configuration file name.
    #[arg(long = "config.file", default_value = "alertmanager.yml")]
    pub config_file: String,
    /// Check the configuration file and exit (0 if valid).
    #[arg(long = "config.check")]
    pub config_check: bool,
    /// Base path for data storage.
    #[arg(long = "storage.path", default_value = "data/")]
    pub storage_path: String,
    /// How long to keep data for.
    #[arg(long = "data.retention", default_value = "120h", value_parser = duration)]
    pub data_retention: Duration,
    /// Interval between garbage collection and snapshotting of silences and the notification log.
    #[arg(long = "data.maintenance-interval", default_value = "15m", value_parser = duration)]
    pub data_maintenance_interval: Duration,
    /// Tocsin: how often the notification log's journal is fsync'd: the most of the log a power
    /// loss can cost (a crash of the process alone costs nothing written).
    #[arg(long = "data.journal-sync-interval", default_value = "1s", value_parser = duration)]
    pub data_journal_sync_interval: Duration,
    /// Maximum number of silences, including expired ones (0 = no limit).
    #[arg(long = "silences.max-silences", default_value_t = 0)]
    pub silences_max_silences: usize,
    /// Maximum encoded size of one silence in bytes (0 = no limit).
    #[arg(long = "silences.max-silence-size-bytes", default_value_t = 0)]
    pub silences_max_silence_size_bytes: usize,
    /// Interval between alert GC.
    #[arg(long = "alerts.gc-interval", default_value = "30m", value_parser = duration)]
    pub alerts_gc_interval: Duration,
    /// Maximum number of alerts stored per alertname (0 = no limit).
    #[arg(long = "alerts.per-alertname-limit", default_value_t = 0)]
    pub alerts_per_alertname_limit: usize,
    /// Tocsin: a label removed from every posted alert before it is stored (repeatable), so that
    /// the alerts of a Prometheus HA pair (`replica="a"`, `replica="b"`) are one alert.
    #[arg(long = "alerts.drop-label", value_name = "NAME")]
    pub alerts_drop_label: Vec<String>,
    /// Tocsin: the event history's size on disk at most, in bytes (0: no history is recorded).
    #[arg(long = "events.max-size-bytes", default_value_t = 256 * 1024 * 1024)]
    pub events_max_size_bytes: u64,
    /// Tocsin: how long the event history keeps an event.
    #[arg(long = "events.retention", default_value = "120h", value_parser = duration)]
    pub events_retention: Duration,
    /// Tocsin: a request body must arrive within this time of its headers (408 otherwise).
    #[arg(long = "web.body-read-timeout", default_value = "1m", value_parser = duration)]
    pub web_body_read_timeout: Duration,
    /// Tocsin: bytes of request bodies read or handled at once (503 past it).
    #[arg(long = "web.request-memory", default_value_t = 1 << 30)]
    pub web_request_memory: u64,
    /// Tocsin: write the snapshots group-readable (0640) instead of owner-only (0600), for a
    /// backup agent in the replica's group.
    #[arg(long = "storage.group-readable", default_value_t = false)]
    pub storage_group_readable: bool,
    /// Tocsin: maximum number of alerts stored; new ones past it are refused (0 = no limit).
    #[arg(long = "alerts.max-alerts", default_value_t = 2_000_000)]
    pub alerts_max_alerts: usize,
    /// Tocsin: maximum number of labels of one alert (0 = no limit).
    #[arg(long = "alerts.max-labels", default_value_t = 256)]
    pub alerts_max_labels: usize,
    /// Tocsin: maximum bytes of one alert's label names and values together (0 = no limit).
    #[arg(long = "alerts.max-label-bytes", default_value_t = 65_536)]
    pub alerts_max_label_bytes: usize,
    /// Address to listen on for the web interface and API (repeatable; the first is used).
    #[arg(long = "web.listen-address", default_value = ":9093")]
    pub web_listen_address: Vec<String>,
    /// The URL under which Tocsin is externally reachable.
    #[arg(long = "web.external-url", default_value = "")]
    pub web_external_url: String,
    /// Prefix for the internal routes of web endpoints (defaults to the path of --web.external-url).
    #[arg(long = "web.route-prefix", default_value = "")]
    pub web_route_prefix: String,
    /// How long a client may take to send a request's headers before its connection is closed
    /// (Tocsin's).
    #[arg(long = "web.header-read-timeout", default_value = "30s", value_parser = duration)]
    pub web_header_read_timeout: Duration,
    /// Most HTTP connections open at once; more are closed as they arrive (Tocsin's).
    #[arg(long = "web.max-connections", default_value_t = 1024)]
    pub web_max_connections: usize,
    /// Web TLS/auth configuration file (refused at start-up: not supported yet).
    #[arg(long = "web.config.file", default_value = "")]
    pub web_config_file: String,
    /// Maximum number of API GET requests processed concurrently (0 or less: the CPUs, at least 8).
    #[arg(long = "web.get-concurrency", default_value_t = 0)]
    pub web_get_concurrency: i64,
    /// Timeout for API requests (zero or less: none).
    #[arg(long = "web.timeout", default_value = "0s", value_parser = duration)]
    pub web_timeout: Duration,
    /// Listen address for cluster; empty disables HA mode.
    #[arg(long = "cluster.listen-address", default_value = "0.0.0.0:9094")]
    pub cluster_listen_address: String,
    /// Explicit address to advertise in cluster.
    #[arg(long = "cluster.advertise-address", default_value = "")]
    pub cluster_advertise_address: String,
    /// Initial peers (repeatable).
    #[arg(long = "cluster.peer")]
    pub cluster_peer: Vec<String>,
    /// Unique name of this peer within the cluster.
    #[arg(long = "cluster.peer-name", default_value = "")]
    pub cluster_peer_name: String,
    /// Time to wait between peers to send notifications.
    #[arg(long = "cluster.peer-timeout", default_value = "15s", value_parser = duration)]
    pub cluster_peer_timeout: Duration,
    /// Interval between sending gossip messages.
    #[arg(long = "cluster.gossip-interval", default_value = "200ms", value_parser = duration)]
    pub cluster_gossip_interval: Duration,
    /// Interval for gossip state syncs.
    #[arg(long = "cluster.pushpull-interval", default_value = "1m", value_parser = duration)]
    pub cluster_pushpull_interval: Duration,
    /// Maximum time to wait for cluster connections to settle before evaluating notifications.
    #[arg(long = "cluster.settle-timeout", default_value = "1m", value_parser = duration)]
    pub cluster_settle_timeout: Duration,
    /// Label that isolates a cluster.
    #[arg(long = "cluster.label", default_value = "")]
    pub cluster_label: String,
    /// Timeout for establishing a stream connection with a remote node.
    #[arg(long = "cluster.tcp-timeout", default_value = "10s", value_parser = duration)]
    pub cluster_tcp_timeout: Duration,
    /// Timeout to wait for an ack from a probed node.
    #[arg(long = "cluster.probe-timeout", default_value = "500ms", value_parser = duration)]
    pub cluster_probe_timeout: Duration,
    /// Interval between random node probes.
    #[arg(long = "cluster.probe-interval", default_value = "1s", value_parser = duration)]
    pub cluster_probe_interval: Duration,
    /// Interval between attempting to reconnect to lost peers.
    #[arg(long = "cluster.reconnect-interval", default_value = "10s", value_parser = duration)]
    pub cluster_reconnect_interval: Duration,
    /// Length of time to attempt to reconnect to a lost peer.
    #[arg(long = "cluster.reconnect-timeout", default_value = "6h", value_parser = duration)]
    pub cluster_reconnect_timeout: Duration,
    /// Timeout for resolving peer names.
    #[arg(long = "cluster.peers-resolve-timeout", default_value = "15s", value_parser = duration)]
    pub cluster_peers_resolve_timeout: Duration,
    /// How far past this replica's clock a peer's record may be dated; later ones are refused
    /// (Tocsin's).
    #[arg(long = "cluster.max-clock-skew", default_value = "5m", value_parser = duration)]
    pub cluster_max_clock_skew: Duration,
    /// Cluster TLS configuration file (refused at start-up: not supported yet).
    #[arg(long = "cluster.tls-config", default_value = "")]
    pub cluster_tls_config: String,
    /// Tocsin: every replica's certificate carries its --cluster.peer-name as a DNS name; a
    /// peer may push only with a certificate for the name it gives, and claims in that name.
    #[arg(long = "cluster.tls-peer-names", default_value_t = false)]
    pub cluster_tls_peer_names: bool,
    /// Allow advertising a public address.
    #[arg(long = "cluster.allow-insecure-public-advertise-address-discovery")]
    pub cluster_allow_insecure_public_advertise: bool,
    /// Comma-separated feature names: classic-mode, utf8-strict-mode (others accepted and ignored).
    #[arg(long = "enable-feature", default_value = "")]
    pub enable_feature: Vec<String>,
    /// Only log messages with the given severity or above (debug, info, warn, error).
    #[arg(long = "log.level", default_value = "info", value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: String,
    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
}

/// Features accepted by `--enable-feature`.
pub const KNOWN_FEATURES: [&str; 7] = [
    "alert-names-in-metrics",
    "receiver-name-in-metrics",
    "group-key-in-metrics",
    "classic-mode",
    "utf8-strict-mode",
    "auto-gomemlimit",
    "event-recorder",
];

impl Flags {
    /// Returns the enabled features, validated.
    ///
    /// # Errors
    /// Unknown feature names, or classic and UTF-8 strict mode together.
    pub fn features(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for f in self
            .enable_feature
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !KNOWN_FEATURES.contains(&f) {
                return Err(format!("unknown option '{f}' for --enable-feature"));
            }
            out.push(f.to_string());
        }
        if out.iter().any(|f| f == "classic-mode") && out.iter().any(|f| f == "utf8-strict-mode") {
            return Err("cannot have both classic and UTF-8 modes enabled".into());
        }
        Ok(out)
    }
}

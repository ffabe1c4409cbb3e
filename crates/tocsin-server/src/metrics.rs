//! `/metrics`: Alertmanager's metric names and labels (§7) so existing dashboards keep working.
//! Labels are bounded: integration type, failure reason, alert state, status, version.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Integration types pre-initialised at 0, in Alertmanager's order.
pub const INTEGRATIONS: [&str; 18] = [
    "webhook",
    "email",
    "pagerduty",
    "opsgenie",
    "wechat",
    "slack",
    "victorops",
    "pushover",
    "sns",
    "telegram",
    "discord",
    "webex",
    "msteams",
    "msteamsv2",
    "jira",
    "incidentio",
    "rocketchat",
    "mattermost",
];

/// `handler` (the route pattern) and `method`: both bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route pattern, e.g. `/api/v2/alerts`.
    pub handler: String,
    /// HTTP method (unusual ones as `other`).
    pub method: String,
}

/// Index of the notification log in the per-state arrays.
pub const NFLOG: usize = 0;
/// Index of the silences in the per-state arrays.
pub const SILENCES: usize = 1;

/// `integration`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabel {
    /// Integration type.
    pub integration: String,
}

/// `integration`, `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailedLabels {
    /// Integration type.
    pub integration: String,
    /// Failure reason (`serverError`, `clientError`, …).
    pub reason: String,
}

/// `reason` of a suppression.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `silence`, `inhibition`, `mute_time_interval`, `active_time_interval`.
    pub reason: String,
}

/// `method` of a limited HTTP request (`get`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// Lower-case method.
    pub method: &'static str,
}

/// `state` and `reason` of a record refused from a peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `nflog`, `silences`, `claims`.
    pub state: &'static str,
    /// `invalid`, `too_large`, `too_many`, `future_timestamp`, `undecodable`.
    pub reason: &'static str,
}

/// `state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// State name.
    pub state: String,
}

/// `status`, `version` of received alerts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceivedLabels {
    /// `firing` or `resolved`.
    pub status: String,
    /// API version (`v2`).
    pub version: String,
}

/// `version`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    /// API version (`v2`).
    pub version: String,
}

/// `alertmanager_build_info` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// Tocsin version.
    pub version: String,
    /// Always empty (no VCS stamping yet).
    pub revision: String,
    /// Always empty.
    pub branch: String,
    /// The Rust toolchain family.
    pub goversion: String,
}

/// The per-integration series of one integration type, resolved once: looking each up by its
/// label (hash and lock of the family) for every notification showed in a burst's profile.
#[derive(Clone, Debug)]
pub struct IntegrationMetrics {
    /// `alertmanager_notifications_total`.
    pub notifications: Counter,
    /// `alertmanager_notification_requests_total`.
    pub requests: Counter,
    /// `alertmanager_notification_requests_failed_total`.
    pub requests_failed: Counter,
    /// `alertmanager_notification_latency_seconds`.
    pub latency: Histogram,
    /// `tocsin_notifications_deduplicated_total`.
    pub deduplicated: Counter,
}

/// Every metric the server exports.
pub struct Metrics {
    /// The registry served at /metrics.
    pub registry: Registry,
    /// `alertmanager_alerts_received_total{status,version}`.
    pub alerts_received: Family<ReceivedLabels, Counter>,
    /// `alertmanager_alerts_invalid_total{version}`.
    pub alerts_invalid: Family<VersionLabel, Counter>,
    /// `alertmanager_alerts_limited_total`: alerts refused by `--alerts.per-alertname-limit`.
    pub alerts_limited: Counter,
    /// `alertmanager_alerts_per_alert_limit`: that limit (0: none).
    pub per_alert_limit: Gauge,
    /// `alertmanager_notifications_total{integration}`.
    pub notifications: Family<IntegrationLabel, Counter>,
    /// `alertmanager_notifications_failed_total{integration,reason}`.
    pub notifications_failed: Family<FailedLabels, Counter>,
    /// `alertmanager_notification_requests_total{integration}`.
    pub requests: Family<IntegrationLabel, Counter>,
    /// `alertmanager_notification_requests_failed_total{integration}`.
    pub requests_failed: Family<IntegrationLabel, Counter>,
    /// `alertmanager_notification_latency_seconds{integration}`.
    pub latency: Family<IntegrationLabel, Histogram>,
    /// `alertmanager_http_requests_in_flight{method="get"}`.
    pub http_in_flight: Family<MethodLabel, Gauge>,
    /// `alertmanager_http_concurrency_limit_exceeded_total{method="get"}`.
    pub http_limit_exceeded: Family<MethodLabel, Counter>,
    /// `tocsin_http_connections_refused_total` (Tocsin's): connections closed over
    /// `--web.max-connections`.
    pub http_refused: Counter,
    /// `tocsin_http_bodies_refused_total{reason}`: request bodies refused (`memory`, `timeout`).
    pub http_bodies_refused: Family<ReasonLabel, Counter>,
    /// `tocsin_alerts_refused_total{reason}`: alerts refused by Tocsin's bounds.
    pub alerts_refused: Family<ReasonLabel, Counter>,
    /// `tocsin_cluster_records_refused_total{state,reason}` (Tocsin's): peers' records that
    /// failed admission and were dropped.
    pub refused: Family<RefusedLabels, Counter>,
    /// `tocsin_notifications_deduplicated_total{integration}` (Tocsin's): flushes that sent
    /// nothing because the notification log showed the state notified.
    pub deduplicated: Family<IntegrationLabel, Counter>,
    /// `alertmanager_notifications_suppressed_total{reason}`.
    pub suppressed: Family<ReasonLabel, Counter>,
    /// `alertmanager_alerts{state}` (set at scrape time).
    pub alerts: Family<StateLabel, Gauge>,
    /// `alertmanager_silences{state}` (set at scrape time).
    pub silences: Family<StateLabel, Gauge>,
    /// `alertmanager_dispatcher_aggregation_groups` (set at scrape time).
    pub aggregation_groups: Gauge,
    /// `alertmanager_config_last_reload_successful`.
    pub reload_ok: Gauge,
    /// `alertmanager_config_last_reload_success_timestamp_seconds`.
    pub reload_ts: Gauge<f64, AtomicU64>,
    /// `alertmanager_config_hash`.
    pub config_hash: Gauge<f64, AtomicU64>,
    /// `alertmanager_peer_position`.
    pub peer_position: Gauge,
    /// `alertmanager_cluster_members`.
    pub cluster_members: Gauge,
    /// `alertmanager_cluster_enabled`.
    pub cluster_enabled: Gauge,
    /// `alertmanager_notification_template_errors_total` (Tocsin's): notifications sent with a
    /// fallback body because a template failed.
    pub template_errors: Counter,
    /// `alertmanager_http_request_duration_seconds{handler,method}`.
    pub http_duration: Family<HttpLabels, Histogram>,
    /// `alertmanager_http_response_size_bytes{handler,method}`.
    pub http_size: Family<HttpLabels, Histogram>,
    /// `alertmanager_{nflog,silences}_maintenance_total` and `..._errors_total`, by state.
    pub maintenance: [Counter; 2],
    /// Failed maintenance runs, by state.
    pub maintenance_errors: [Counter; 2],
    /// `alertmanager_{nflog,silences}_snapshot_size_bytes`, by state.
    pub snapshot_size: [Gauge; 2],
    /// `alertmanager_nflog_gossip_messages_propagated_total`: log entries from peers that changed ours.
    pub nflog_gossip: Counter,
    /// `alertmanager_silences_gossip_messages_propagated_total`: silences from peers that changed ours.
    pub silences_gossip: Counter,
    /// `alertmanager_cluster_failed_peers`: members whose gossip or replication is failing.
    pub cluster_failed_peers: Gauge,
    /// `alertmanager_cluster_messages_{sent,received}_total` and `..._size_total`.
    pub cluster_traffic: tocsin_cluster::replication::Traffic,
    /// Every known integration type's series, see [`Metrics::integration`].
    integrations: Vec<(&'static str, IntegrationMetrics)>,
    /// The event history's (`tocsin_events_*`, `tocsin_event_log_*`).
    pub events: crate::events::EventMetrics,
    /// The `event_recorder` outputs' (`tocsin_event_output_*`).
    pub event_outputs: crate::event_outputs::OutputMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric; integration series start at 0 as in Alertmanager.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("alertmanager");
        let m = Metrics {
            alerts_received: Family::default(),
            alerts_invalid: Family::default(),
            alerts_limited: Counter::default(),
            per_alert_limit: Gauge::default(),
            notifications: Family::default(),
            notifications_failed: Family::default(),
            requests: Family::default(),
            requests_failed: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new([1.0, 5.0, 10.0, 15.0, 20.0])),
            deduplicated: Family::default(),
            refused: Family::default(),
            http_refused: Counter::default(),
            alerts_refused: Family::default(),
            http_bodies_refused: Family::default(),
            http_in_flight: Family::default(),
            http_limit_exceeded: Family::default(),
            suppressed: Family::default(),
            alerts: Family::default(),
            silences: Family::default(),
            aggregation_groups: Gauge::default(),
            reload_ok: Gauge::default(),
            reload_ts: Gauge::default(),
            config_hash: Gauge::default(),
            peer_position: Gauge::default(),
            cluster_members: Gauge::default(),
            cluster_enabled: Gauge::default(),
            cluster_failed_peers: Gauge::default(),
            nflog_gossip: Counter::default(),
            template_errors: Counter::default(),
            http_duration: Family::new_with_constructor(|| {
                Histogram::new([0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 20.0, 60.0])
            }),
            http_size: Family::new_with_constructor(|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    100.0, 10.0, 7,
                ))
            }),
            maintenance: Default::default(),
            maintenance_errors: Default::default(),
            snapshot_size: Default::default(),
            silences_gossip: Counter::default(),
            cluster_traffic: Default::default(),
            integrations: Vec::new(),
            events: Default::default(),
            event_outputs: Default::default(),
            registry: Registry::default(),
        };
        // Counters are registered without `_total`; the encoder appends it.
        r.register(
            "alerts_received",
            "The total number of received alerts.",
            m.alerts_received.clone(),
        );
        r.register(
            "alerts_invalid",
            "The total number of received alerts that were invalid.",
            m.alerts_invalid.clone(),
        );
        r.register(
            "alerts_limited",
            "The total number of alerts refused because their alertname had --alerts.per-alertname-limit alerts stored.",
            m.alerts_limited.clone(),
        );
        r.register(
            "alerts_per_alert_limit",
            "The --alerts.per-alertname-limit in force (0: none).",
            m.per_alert_limit.clone(),
        );
        r.register(
            "notifications",
            "The total number of attempted notifications.",
            m.notifications.clone(),
        );
        r.register(
            "notifications_failed",
            "The total number of failed notifications.",
            m.notifications_failed.clone(),
        );
        r.register(
            "notification_requests",
            "The total number of attempted notification requests.",
            m.requests.clone(),
        );
        r.register(
            "notification_requests_failed",
            "The total number of failed notification requests.",
            m.requests_failed.clone(),
        );
        r.register(
            "notification_latency_seconds",
            "The latency of notifications in seconds.",
            m.latency.clone(),
        );
        r.register(
            "notifications_suppressed",
            "The total number of notifications suppressed for being silenced, inhibited, outside of active time intervals or within muted time intervals.",
            m.suppressed.clone(),
        );
        r.register("alerts", "How many alerts by state.", m.alerts.clone());
        r.register("silences", "How many silences by state.", m.silences.clone());
        r.register(
            "dispatcher_aggregation_groups",
            "Number of active aggregation groups",
            m.aggregation_groups.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            m.reload_ok.clone(),
        );
        r.register(
            "config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            m.reload_ts.clone(),
        );
        r.register(
            "config_hash",
            "Hash of the currently loaded alertmanager configuration.",
            m.config_hash.clone(),
        );
        r.register(
            "peer_position",
            "Position the Alertmanager instance believes it's in.",
            m.peer_position.clone(),
        );
        r.register(
            "cluster_members",
            "Number indicating current number of members in cluster.",
            m.cluster_members.clone(),
        );
        r.register(
            "cluster_enabled",
            "Indicates whether the clustering is enabled or not.",
            m.cluster_enabled.clone(),
        );
        r.register(
            "cluster_failed_peers",
            "Number indicating the current number of failed peers in the cluster.",
            m.cluster_failed_peers.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Histogram of latencies for HTTP requests.",
            m.http_duration.clone(),
        );
        r.register(
            "http_response_size_bytes",
            "Histogram of response size for HTTP requests.",
            m.http_size.clone(),
        );
        for (i, state) in ["nflog", "silences"].into_iter().enumerate() {
            r.register(
                format!("{state}_maintenance"),
                format!("How many maintenances were executed for {state}."),
                m.maintenance[i].clone(),
            );
            r.register(
                format!("{state}_maintenance_errors"),
                format!("How many maintenances were executed for {state} that failed."),
                m.maintenance_errors[i].clone(),
            );
            r.register(
                format!("{state}_snapshot_size_bytes"),
                format!("Size of the last {state} snapshot in bytes."),
                m.snapshot_size[i].clone(),
            );
        }
        r.register(
            "notification_template_errors",
            "Notifications sent with a fallback body because a template failed to render (Tocsin).",
            m.template_errors.clone(),
        );
        // Alertmanager counts re-gossiped messages; we push to every member directly and never
        // re-broadcast, so these count the received records that changed local state.
        r.register(
            "nflog_gossip_messages_propagated",
            "Number of received notification log entries that changed local state.",
            m.nflog_gossip.clone(),
        );
        r.register(
            "silences_gossip_messages_propagated",
            "Number of received silences that changed local state.",
            m.silences_gossip.clone(),
        );
        let t = &m.cluster_traffic;
        r.register(
            "cluster_messages_sent",
            "Total number of cluster messages sent.",
            t.sent.clone(),
        );
        r.register(
            "cluster_messages_sent_size",
            "Total size of cluster messages sent.",
            t.sent_bytes.clone(),
        );
        r.register(
            "cluster_messages_received",
            "Total number of cluster messages received.",
            t.received.clone(),
        );
        r.register(
            "cluster_messages_received_size",
            "Total size of cluster messages received.",
            t.received_bytes.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "Current number of HTTP requests being processed.",
            m.http_in_flight.clone(),
        );
        r.register(
            "http_concurrency_limit_exceeded",
            "Total number of times an HTTP request failed because the concurrency limit was reached.",
            m.http_limit_exceeded.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                revision: String::new(),
                branch: String::new(),
                goversion: "rust".into(),
            })
            .set(1);
        r.register(
            "build_info",
            "A metric with a constant '1' value labeled by version, revision, branch, and goversion.",
            build,
        );
        let t = root.sub_registry_with_prefix("tocsin");
        t.register(
            "events_recorded",
            "Events recorded in the event history.",
            m.events.recorded.clone(),
        );
        t.register(
            "events_dropped",
            "Events dropped because the event log's writer fell behind.",
            m.events.dropped.clone(),
        );
        t.register(
            "event_log_write_errors",
            "Failed writes or deletions of the event log's files.",
            m.events.write_errors.clone(),
        );
        t.register(
            "event_output_errors",
            "Writes and requests of the event_recorder outputs that failed for good.",
            m.event_outputs.errors.clone(),
        );
        t.register(
            "event_output_drops",
            "Events an event_recorder output dropped because its queue was full.",
            m.event_outputs.drops.clone(),
        );
        t.register(
            "event_log_bytes",
            "Size of the event log on disk.",
            m.events.bytes.clone(),
        );
        t.register(
            "notifications_deduplicated",
            "Flushes of a group to an integration that sent nothing because the notification log showed its state already notified, by this replica or a peer.",
            m.deduplicated.clone(),
        );
        for reason in ["store_full", "too_many_labels", "labels_too_large"] {
            let _ = m.alerts_refused.get_or_create(&ReasonLabel { reason: reason.into() });
        }
        for reason in ["memory", "timeout"] {
            let _ = m
                .http_bodies_refused
                .get_or_create(&ReasonLabel { reason: reason.into() });
        }
        t.register(
            "http_bodies_refused",
            "Request bodies refused: over --web.request-memory (memory) or not received within --web.body-read-timeout (timeout).",
            m.http_bodies_refused.clone(),
        );
        t.register(
            "alerts_refused",
            "Alerts refused by Tocsin's bounds (reason: store_full, too_many_labels, labels_too_large).",
            m.alerts_refused.clone(),
        );
        t.register(
            "http_connections_refused",
            "HTTP connections closed on arrival because --web.max-connections were open.",
            m.http_refused.clone(),
        );
        t.register(
            "cluster_records_oversized",
            "Records not replicated to peers because they exceed the 2 MiB record limit.",
            m.cluster_traffic.oversized.clone(),
        );
        t.register(
            "cluster_pushes_refused",
            "Pushes refused because the peer's certificate is not for the name it gave (--cluster.tls-peer-names).",
            m.cluster_traffic.pushes_refused(),
        );
        t.register(
            "cluster_tls_handshakes_refused",
            "Connections to the cluster port whose TLS handshake failed or timed out (--cluster.tls-config).",
            m.cluster_traffic.handshakes_refused.clone(),
        );
        t.register(
            "cluster_records_refused",
            "Records from peers dropped because they failed the rules a local record keeps (or could not be decoded).",
            m.refused.clone(),
        );
        // Every known type's series exists from the start, at 0, as in Alertmanager.
        let integrations = INTEGRATIONS.iter().map(|&i| (i, m.create_series(i))).collect();
        // Every integration × failure reason and every received status at 0, as Alertmanager
        // 0.34 creates them: the first failure must show in increase().
        for i in INTEGRATIONS {
            for r in tocsin_notify::FailureReason::ALL {
                let _ = m.notifications_failed.get_or_create(&FailedLabels {
                    integration: i.into(),
                    reason: r.as_str().into(),
                });
            }
        }
        for status in ["firing", "resolved"] {
            let _ = m.alerts_received.get_or_create(&ReceivedLabels {
                status: status.into(),
                version: "v2".into(),
            });
        }
        for s in ["active", "suppressed", "unprocessed"] {
            let _ = m.alerts.get_or_create(&StateLabel { state: s.into() });
        }
        for s in ["active", "pending", "expired"] {
            let _ = m.silences.get_or_create(&StateLabel { state: s.into() });
        }
        let _ = m.http_in_flight.get_or_create(&MethodLabel { method: "get" });
        let _ = m.http_limit_exceeded.get_or_create(&MethodLabel { method: "get" });
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        root.register_collector(Box::new(crate::process_metrics::ProcessCollector { start_time }));
        Metrics {
            registry: root,
            integrations,
            ..m
        }
    }

    /// The series of an integration type (`webhook`, `email`…): borrowed for a known type (no
    /// reference counts touched per notification), created in the families otherwise.
    pub fn integration(&self, kind: &str) -> std::borrow::Cow<'_, IntegrationMetrics> {
        match self.integrations.iter().find(|(k, _)| *k == kind) {
            Some((_, m)) => std::borrow::Cow::Borrowed(m),
            None => std::borrow::Cow::Owned(self.create_series(kind)),
        }
    }

    fn create_series(&self, kind: &str) -> IntegrationMetrics {
        let l = IntegrationLabel {
            integration: kind.into(),
        };
        IntegrationMetrics {
            notifications: self.notifications.get_or_create(&l).clone(),
            requests: self.requests.get_or_create(&l).clone(),
            requests_failed: self.requests_failed.get_or_create(&l).clone(),
            latency: self.latency.get_or_create(&l).clone(),
            deduplicated: self.deduplicated.get_or_create(&l).clone(),
        }
    }

    /// Renders the exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A 48-bit hash of the config file as a float. Alertmanager takes the first 48 bits of an MD5;
/// we use a fixed-key SipHash (no crypto dependency for a change detector): the value differs
/// from Alertmanager's but changes exactly when the file does.
pub fn config_hash(text: &str) -> f64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(text.as_bytes());
    (h.finish() >> 16) as f64
}

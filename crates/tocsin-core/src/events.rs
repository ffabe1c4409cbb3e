//! The event history's records and queries (pure): what a replica did and why, one [`Event`]
//! per lifecycle step of an alert, a notification or a silence, and the [`Query`] that selects
//! them for `GET /api/tocsin/v1/events` and a group's history.
//!
//! Types carry Alertmanager 0.33's event recorder names where it has the event
//! (`notification`, `alert_created`, `silence_muted_alert`…) and Tocsin's own for its cluster
//! decisions (`notification_deduplicated`, `claim_waited`…).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::labels::{Fingerprint, LabelSet};
use crate::matchers::Matcher;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The process started (Alertmanager's `alertmanager_startup_event`).
    #[serde(rename = "alertmanager_startup_event")]
    Startup,
    /// The process stopped gracefully (`alertmanager_shutdown_event`).
    #[serde(rename = "alertmanager_shutdown_event")]
    Shutdown,
    /// A new alert (a fingerprint not stored) arrived through the API.
    AlertCreated,
    /// An alert that arrived through the API entered an aggregation group it was not in.
    AlertGrouped,
    /// An alert's resolve was notified.
    AlertResolved,
    /// An integration delivered a notification (Alertmanager's `notification`).
    Notification,
    /// An integration failed for good (its retries ran out or the error was final).
    NotificationFailed,
    /// This replica stayed quiet: the log showed that a peer had already sent it.
    NotificationDeduplicated,
    /// This replica waited because a live peer claimed the notification.
    ClaimWaited,
    /// This replica sent after a peer's claim ended without a log entry.
    ClaimExpiredSend,
    /// A silence was created through this replica's API.
    SilenceCreated,
    /// A silence was changed through this replica's API.
    SilenceUpdated,
    /// A silence was expired through this replica's API.
    SilenceExpired,
    /// A silence muted an alert at a flush (`silence_muted_alert`).
    SilenceMutedAlert,
    /// An inhibition rule muted an alert at a flush (`inhibition_muted_alert`).
    InhibitionMutedAlert,
    /// A time interval muted an alert at a flush.
    TimeMutedAlert,
    /// This replica's position in the cluster changed.
    PositionChanged,
}

impl Kind {
    /// Every kind, for documentation and validation.
    pub const ALL: [Kind; 17] = [
        Kind::Startup,
        Kind::Shutdown,
        Kind::AlertCreated,
        Kind::AlertGrouped,
        Kind::AlertResolved,
        Kind::Notification,
        Kind::NotificationFailed,
        Kind::NotificationDeduplicated,
        Kind::ClaimWaited,
        Kind::ClaimExpiredSend,
        Kind::SilenceCreated,
        Kind::SilenceUpdated,
        Kind::SilenceExpired,
        Kind::SilenceMutedAlert,
        Kind::InhibitionMutedAlert,
        Kind::TimeMutedAlert,
        Kind::PositionChanged,
    ];

    /// The name in JSON and in queries.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Startup => "alertmanager_startup_event",
            Kind::Shutdown => "alertmanager_shutdown_event",
            Kind::AlertCreated => "alert_created",
            Kind::AlertGrouped => "alert_grouped",
            Kind::AlertResolved => "alert_resolved",
            Kind::Notification => "notification",
            Kind::NotificationFailed => "notification_failed",
            Kind::NotificationDeduplicated => "notification_deduplicated",
            Kind::ClaimWaited => "claim_waited",
            Kind::ClaimExpiredSend => "claim_expired_send",
            Kind::SilenceCreated => "silence_created",
            Kind::SilenceUpdated => "silence_updated",
            Kind::SilenceExpired => "silence_expired",
            Kind::SilenceMutedAlert => "silence_muted_alert",
            Kind::InhibitionMutedAlert => "inhibition_muted_alert",
            Kind::TimeMutedAlert => "time_muted_alert",
            Kind::PositionChanged => "position_changed",
        }
    }

    /// The kind of a name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the event is about a notification of a group (its history).
    pub fn is_delivery(self) -> bool {
        matches!(
            self,
            Kind::Notification
                | Kind::NotificationFailed
                | Kind::NotificationDeduplicated
                | Kind::ClaimWaited
                | Kind::ClaimExpiredSend
        )
    }
}

/// One alert of an event: its fingerprint and whether it was firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventAlert {
    /// The alert's fingerprint (16 hex digits, as the API shows it).
    pub fingerprint: Fingerprint,
    /// `firing` or `resolved`.
    pub status: Status,
}

/// An alert's state in an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

impl Status {
    /// `resolved` when `resolved`, else `firing`.
    pub fn of(resolved: bool) -> Status {
        if resolved { Status::Resolved } else { Status::Firing }
    }

    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One recorded event. Empty fields are left out of its JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// This replica's sequence number: increasing, never reused, the paging cursor.
    pub id: u64,
    /// When it happened (this replica's clock).
    pub time: Timestamp,
    /// The replica that acted (`--cluster.peer-name`, or the host name alone).
    pub replica: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The aggregation group's key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_key: String,
    /// The receiver.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub receiver: String,
    /// The integration, `<type>[<index>]` (`webhook[0]`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub integration: String,
    /// The alert's labels, or the group's labels for an event about a group.
    #[serde(default, skip_serializing_if = "LabelSet::is_empty")]
    pub labels: LabelSet,
    /// The alerts concerned (a notification's, firing and resolved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<EventAlert>,
    /// Why (a notification's reason, an error, what muted an alert).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The silence concerned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub silence_id: String,
    /// The peer whose log entry or claim the decision followed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// This replica's position in the cluster when it decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
}

impl Event {
    /// An event of `kind` with every optional field empty (the recorder sets id and time).
    pub fn new(kind: Kind) -> Event {
        Event {
            id: 0,
            time: Timestamp::UNIX_EPOCH,
            replica: String::new(),
            kind,
            group_key: String::new(),
            receiver: String::new(),
            integration: String::new(),
            labels: LabelSet::default(),
            alerts: Vec::new(),
            reason: String::new(),
            silence_id: String::new(),
            peer: String::new(),
            position: None,
        }
    }
}

/// Which events a query selects; every given criterion must hold.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// At or after.
    pub since: Option<Timestamp>,
    /// Before.
    pub until: Option<Timestamp>,
    /// Any of these kinds (all when empty).
    pub kinds: Vec<Kind>,
    /// This group.
    pub group_key: Option<String>,
    /// This receiver.
    pub receiver: Option<String>,
    /// An event naming this alert among its alerts (every event about an alert lists it).
    pub fingerprint: Option<String>,
    /// Every matcher holds on the event's labels.
    pub matchers: Vec<Matcher>,
    /// Ids below this one (the paging cursor: the last id of the previous page).
    pub before: Option<u64>,
}

impl Query {
    /// Whether `e` is selected.
    pub fn matches(&self, e: &Event) -> bool {
        self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time < t)
            && self.before.is_none_or(|b| e.id < b)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self.group_key.as_ref().is_none_or(|g| *g == e.group_key)
            && self.receiver.as_ref().is_none_or(|r| *r == e.receiver)
            && self
                .fingerprint
                .as_ref()
                .is_none_or(|f| e.alerts.iter().any(|a| a.fingerprint.hex() == f.as_bytes()))
            && self.matchers.iter().all(|m| m.matches(&e.labels))
    }
}

/// Most events one page holds, and the default page size.
pub const MAX_PAGE: usize = 1000;
/// Events in a page when the query does not say.
pub const DEFAULT_PAGE: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matchers::{ParseMode, parse_matchers};

    fn ev(id: u64, kind: Kind, labels: &[(&str, &str)]) -> Event {
        let mut e = Event::new(kind);
        e.id = id;
        e.time = Timestamp::from_second(1_800_000_000 + id as i64).unwrap();
        e.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        e
    }

    #[test]
    fn names_round_trip_and_json_leaves_empty_fields_out() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let mut e = ev(7, Kind::Notification, &[("alertname", "Down")]);
        e.replica = "tocsin-0".into();
        e.alerts.push(EventAlert {
            fingerprint: Fingerprint(0xaa),
            status: Status::Firing,
        });
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"id":7,"time":"2027-01-15T08:00:07Z","replica":"tocsin-0","type":"notification","labels":{"alertname":"Down"},"alerts":[{"fingerprint":"00000000000000aa","status":"firing"}]}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }

    #[test]
    fn a_query_holds_every_criterion() {
        let mut down = ev(5, Kind::AlertCreated, &[("alertname", "Down"), ("team", "db")]);
        down.alerts.push(EventAlert {
            fingerprint: crate::labels::fingerprint(&down.labels),
            status: Status::Firing,
        });
        let fp = crate::labels::fingerprint(&down.labels).to_string();
        let ms = |s: &str| parse_matchers(s, ParseMode::Fallback).unwrap();
        let q = |f: &dyn Fn(&mut Query)| {
            let mut q = Query::default();
            f(&mut q);
            q.matches(&down)
        };
        assert!(q(&|_| {}));
        assert!(q(&|q| q.matchers = ms(r#"{team=~"d.*"}"#)));
        assert!(!q(&|q| q.matchers = ms(r#"{team="web"}"#)));
        assert!(q(&|q| q.kinds = vec![Kind::Notification, Kind::AlertCreated]));
        assert!(!q(&|q| q.kinds = vec![Kind::Notification]));
        assert!(q(&|q| q.fingerprint = Some(fp.clone())));
        assert!(!q(&|q| q.fingerprint = Some("0".into())));
        assert!(q(&|q| q.before = Some(6)));
        assert!(!q(&|q| q.before = Some(5)));
        assert!(q(&|q| q.since = Some(down.time)));
        assert!(!q(&|q| q.until = Some(down.time)));
        assert!(!q(&|q| q.group_key = Some("{}".into())));
        assert!(!q(&|q| q.receiver = Some("r".into())));
    }
}

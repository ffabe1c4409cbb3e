//! The email integration against a real SMTP server (aiosmtpd, started per test from
//! `tests/support/smtp_server.py`): plain, STARTTLS with a private CA, implicit TLS, AUTH PLAIN
//! and LOGIN, `require_tls` against a server without STARTTLS, and the fallback message sent when
//! a template fails. The received MIME message is decoded by Python's email package.
//! Skipped, with the reason printed, where python3-aiosmtpd is not installed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use tocsin_core::alert::Alert;
use tocsin_core::config::{EmailConfig, LoadOptions, load};
use tocsin_core::nflog::NotifyReason;
use tocsin_notify::email::Email;
use tocsin_notify::{Notifier, NotifyData, Shared};
use tocsin_template::Template;

#[path = "support/skip.rs"]
mod skip;
#[path = "support/smtp.rs"]
mod smtp;

/// A private CA and a certificate for localhost/127.0.0.1, as PEM files in a temporary dir.
fn pki() -> tempfile::TempDir {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
    dir
}

/// Starts the SMTP server with TLS (`--starttls` or `--implicit-tls`) using `pki`'s certificate.
fn tls_server(pki: &tempfile::TempDir, mode: &str, extra: &[&str]) -> Option<smtp::Smtp> {
    let (cert, key) = (pki.path().join("server.pem"), pki.path().join("server.key"));
    let mut args = vec![mode, cert.to_str().unwrap(), key.to_str().unwrap()];
    args.extend_from_slice(extra);
    smtp::start(&args)
}

/// The `tls_config` lines that trust `pki`'s CA.
fn trusting(pki: &tempfile::TempDir) -> String {
    format!(
        "tls_config:\n  ca_file: {}\n  server_name: localhost",
        pki.path().join("ca.pem").display()
    )
}

/// Loads an `email_configs` item the way the server does, from YAML.
fn config(port: u16, item: &str) -> EmailConfig {
    let item: String = item.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        "route:\n  receiver: ops\nreceivers:\n- name: ops\n  email_configs:\n  - smarthost: 127.0.0.1:{port}\n    from: Tocsin <tocsin@example.org>\n{item}"
    );
    let c = load(&yaml, Path::new("/"), &LoadOptions::default()).unwrap();
    c.receivers["ops"].emails[0].clone()
}

fn shared() -> Shared {
    Shared {
        templates: Arc::new(Template::with_defaults()),
        template_errors: Default::default(),
        capture: None,
    }
}

fn alert(instance: &str, resolved: bool) -> Alert {
    let mut a = Alert {
        labels: [
            ("alertname", "DiskFull"),
            ("instance", instance),
            ("job", "node"),
            ("team", "storage"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        starts_at: "2026-03-05T13:50:00Z".parse().unwrap(),
        generator_url: "http://prometheus:9090/graph".into(),
        ..Alert::default()
    };
    a.annotations.insert("summary", format!("{instance} is <full>"));
    if resolved {
        a.ends_at = "2026-03-05T13:59:00Z".parse().unwrap();
    }
    a.fingerprint = tocsin_core::labels::fingerprint(&a.labels);
    a
}

fn data() -> NotifyData {
    NotifyData {
        receiver: "ops".into(),
        group_key: "{}:{alertname=\"DiskFull\"}".into(),
        group_labels: [("alertname".to_string(), "DiskFull".to_string())].into(),
        reason: NotifyReason::FirstNotification,
        external_url: "http://tocsin.example:9093".into(),
        route_labels: Default::default(),
        alerts: vec![alert("db-1", false), alert("db-2", true)],
        receiver_data: Default::default(),
    }
}

async fn send(cfg: EmailConfig, shared: &Shared) -> Result<(), String> {
    let e = Email::new(cfg, shared).unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(20), e.notify(&data())).await;
    sent.expect("the SMTP conversation did not finish within 20 s")
        .map(|_| ())
        .map_err(|e| e.message)
}

#[tokio::test]
async fn plain_message_carries_subject_headers_text_and_html() {
    let Some(s) = smtp::start(&[]) else { return };
    let cfg = config(
        s.port,
        "to: 'a@example.org, b@example.org'\nrequire_tls: false\nhello: tocsin.test\nheaders:\n  reply-to: noc@example.org\n  X-Team: '{{ .CommonLabels.team }}'\ntext: '{{ template \"__text_alert_list\" . }}'",
    );
    send(cfg, &shared()).await.unwrap();
    let m = s.message(1).await;
    assert_eq!(m["helo"], "tocsin.test");
    assert_eq!(m["mail_from"], "tocsin@example.org");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["a@example.org", "b@example.org"]));
    assert_eq!(m["tls"], false);
    let h = &m["headers"];
    assert_eq!(h["Subject"], "[FIRING:1] DiskFull (node storage)");
    assert_eq!(h["From"], "Tocsin <tocsin@example.org>");
    assert_eq!(h["To"], "a@example.org, b@example.org");
    assert_eq!(h["Reply-To"], "noc@example.org");
    assert_eq!(h["X-Team"], "storage");
    assert!(h["Date"].is_string() && h["Message-ID"].is_string(), "{h}");
    assert!(
        h["Content-Type"].as_str().unwrap().starts_with("multipart/alternative"),
        "{h}"
    );
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains(" - instance = db-1\n") && text.contains("Source: http://prometheus:9090/graph"),
        "{text}"
    );
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains("<title>[FIRING:1] DiskFull (node storage)</title>"),
        "{html}"
    );
    assert!(html.contains("[1] Firing") && html.contains("[1] Resolved"), "{html}");
    assert!(html.contains("db-1 is &lt;full&gt;"), "values are HTML-escaped: {html}");
    assert!(
        html.contains("http://tocsin.example:9093/#/alerts?receiver=ops"),
        "{html}"
    );
}

#[tokio::test]
async fn starttls_with_a_private_ca_and_auth_plain() {
    let pki = pki();
    let Some(s) = tls_server(&pki, "--starttls", &["--auth", "tocsin:s3cret"]) else {
        return;
    };
    let item = format!(
        "to: ops@example.org\nauth_username: tocsin\nauth_password: s3cret\n{}",
        trusting(&pki)
    );
    send(config(s.port, &item), &shared()).await.unwrap();
    let m = s.message(1).await;
    assert_eq!(m["tls"], true, "require_tls (the default) upgraded with STARTTLS");
    assert_eq!(m["auth"], "tocsin");
    assert_eq!(m["mechanism"], "PLAIN");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let (ours, other) = (pki(), pki());
    let Some(s) = tls_server(&ours, "--starttls", &[]) else {
        return;
    };
    let item = format!("to: ops@example.org\n{}", trusting(&other));
    let err = send(config(s.port, &item), &shared()).await.unwrap_err();
    assert!(
        err.starts_with(&format!("send email via 127.0.0.1:{}", s.port)),
        "{err}"
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(!s.has(1));
}

#[tokio::test]
async fn auth_login_when_the_server_offers_no_plain() {
    let pki = pki();
    let Some(s) = tls_server(&pki, "--starttls", &["--auth", "u:p", "--no-plain"]) else {
        return;
    };
    let item = format!(
        "to: ops@example.org\nauth_username: u\nauth_password: p\n{}",
        trusting(&pki)
    );
    send(config(s.port, &item), &shared()).await.unwrap();
    assert_eq!(s.message(1).await["mechanism"], "LOGIN");
}

#[tokio::test]
async fn implicit_tls() {
    let pki = pki();
    let Some(s) = tls_server(&pki, "--implicit-tls", &[]) else {
        return;
    };
    let item = format!("to: ops@example.org\nforce_implicit_tls: true\n{}", trusting(&pki));
    send(config(s.port, &item), &shared()).await.unwrap();
    assert_eq!(s.message(1).await["tls"], true);
}

#[tokio::test]
async fn require_tls_against_a_server_without_starttls_is_a_clear_error() {
    let Some(s) = smtp::start(&[]) else { return };
    let err = send(config(s.port, "to: ops@example.org"), &shared())
        .await
        .unwrap_err();
    assert!(
        err.contains("'require_tls' is true (the default) but the server does not offer STARTTLS"),
        "{err}"
    );
    assert!(!s.has(1), "nothing was sent in clear text");
}

#[tokio::test]
async fn a_failing_template_still_sends_a_fallback_message_naming_the_error() {
    let Some(s) = smtp::start(&[]) else { return };
    let sh = shared();
    let cfg = config(
        s.port,
        "to: ops@example.org\nrequire_tls: false\nhtml: '{{ .CommonLabels.team }} {{ .Nope.Deeper }}'",
    );
    send(cfg, &sh).await.unwrap();
    let m = s.message(1).await;
    assert_eq!(m["headers"]["Subject"], "[FIRING:1] DiskFull (node storage)");
    assert!(m["html"].is_null());
    let text = m["text"].as_str().unwrap();
    assert!(
        text.starts_with("Tocsin could not render this notification's template"),
        "{text}"
    );
    assert!(
        text.contains(
            "html: template: __inline:1: executing \"__inline\": can't evaluate field Nope in type template.Data"
        ),
        "{text}"
    );
    assert!(
        text.contains(" - instance = db-2\n"),
        "the alerts are still listed: {text}"
    );
    assert_eq!(sh.template_errors.get(), 1);
}

#[tokio::test]
async fn template_bombs_send_the_fallback_naming_the_budget() {
    // Issue 18's examples, end to end: the render stops at its budget and the message still
    // goes out, naming the budget, with the alerts listed.
    let Some(s) = smtp::start(&[]) else { return };
    let sh = shared();
    for (n, (text, says)) in [
        (
            "{{ range 10000000000 }}x{{ end }}",
            "exceeded the work budget of 20000000 steps",
        ),
        (
            r#"{{ $s := \"ab\" }}{{ range 40 }}{{ $s = printf \"%s%s\" $s $s }}{{ end }}"#,
            "bytes per value",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = config(
            s.port,
            &format!("to: ops@example.org\nrequire_tls: false\ntext: \"{text}\""),
        );
        send(cfg, &sh).await.unwrap();
        let m = s.message(n + 1).await;
        let body = m["text"].as_str().unwrap();
        assert!(body.starts_with("Tocsin could not render"), "{body}");
        assert!(body.contains(says), "{says:?} in {body}");
        assert!(
            body.contains(" - instance = db-2\n"),
            "the alerts are still listed: {body}"
        );
    }
    assert_eq!(sh.template_errors.get(), 2);
}

#[tokio::test]
async fn threading_sets_references_and_in_reply_to_per_group() {
    let Some(s) = smtp::start(&[]) else { return };
    let sh = shared();
    // sha256("{}:{alertname=\"DiskFull\"}") starts 17c4e445d234645c.
    for (n, by, want) in [
        (1, "none", "<alert-17c4e445d234645c-@alertmanager>".to_string()),
        (
            2,
            "daily",
            format!(
                "<alert-17c4e445d234645c-{}@alertmanager>",
                jiff::ZonedDateTime::now().date()
            ),
        ),
    ] {
        let cfg = config(
            s.port,
            &format!("to: ops@example.org\nrequire_tls: false\nthreading:\n  enabled: true\n  thread_by_date: {by}"),
        );
        send(cfg, &sh).await.unwrap();
        let m = s.message(n).await;
        assert_eq!(m["headers"]["References"], want.as_str(), "{by}");
        assert_eq!(m["headers"]["In-Reply-To"], want.as_str(), "{by}");
    }
    // Misconfigurations are load errors.
    let load_email = |item: &str| {
        let item: String = item.lines().map(|l| format!("    {l}\n")).collect();
        load(
            &format!("route:\n  receiver: ops\nreceivers:\n- name: ops\n  email_configs:\n  - smarthost: h:25\n    from: a@b\n{item}"),
            Path::new("/"),
            &LoadOptions::default(),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let e = load_email("to: x@y\nthreading:\n  enabled: true");
    assert!(
        e.contains("invalid thread_by_date \"\": must be \"none\" or \"daily\""),
        "{e}"
    );
    let e = load_email("to: x@y\nheaders:\n  references: <a@b>\nthreading:\n  enabled: true\n  thread_by_date: none");
    assert!(e.contains("the References header is set by Tocsin"), "{e}");
}

#[tokio::test]
async fn a_failing_field_does_not_cost_the_fields_that_rendered() {
    // Issue 19: a text part calling a default template with the wrong argument used to replace
    // the whole message, HTML part included, with the fallback.
    let Some(s) = smtp::start(&[]) else { return };
    let sh = shared();
    let cfg = config(
        s.port,
        "to: ops@example.org\nrequire_tls: false\ntext: '{{ template \"__text_alert_list\" . }}'\nheaders:\n  Subject: '{{ .Nope.Deeper }}'\n  X-Team: '{{ .CommonLabels.team }}'",
    );
    send(cfg, &sh).await.unwrap();
    let m = s.message(1).await;
    assert_eq!(
        m["headers"]["Subject"], "[FIRING:1] DiskFull (node storage)",
        "the subject's fallback"
    );
    assert_eq!(m["headers"]["X-Team"], "storage", "a header that rendered");
    let html = m["html"].as_str().expect("the default HTML part rendered and is kept");
    assert!(html.contains("View in Alertmanager"), "{html}");
    let text = m["text"].as_str().unwrap();
    assert!(
        text.starts_with("Tocsin could not render"),
        "the failed text part's fallback: {text}"
    );
    assert_eq!(sh.template_errors.get(), 1);
}

#[test]
fn a_template_that_does_not_parse_is_rejected_when_the_integration_is_built() {
    let cfg = config(25, "to: '{{ .Receiver'");
    let err = Email::new(cfg, &shared()).err().unwrap();
    assert_eq!(err, "email_configs to: template: __inline:1: unclosed action");
}

#[tokio::test]
async fn credentials_are_not_sent_in_clear_text_to_another_host() {
    // Go's rule: with require_tls false, AUTH to anything but this host is refused before a
    // connection is made (before: the password went over plaintext to any host).
    let yaml = "route:\n  receiver: ops\nreceivers:\n- name: ops\n  email_configs:\n  - smarthost: smtp.example.invalid:25\n    from: tocsin@example.org\n    to: ops@example.org\n    require_tls: false\n    auth_username: tocsin\n    auth_password: hunter2\n";
    let c = load(yaml, Path::new("/"), &LoadOptions::default()).unwrap();
    let err = send(c.receivers["ops"].emails[0].clone(), &shared()).await.unwrap_err();
    assert!(
        err.contains("refusing to send SMTP credentials to smtp.example.invalid:25 over an unencrypted connection"),
        "{err}"
    );
}

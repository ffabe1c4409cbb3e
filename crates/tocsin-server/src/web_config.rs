//! `--web.config.file`: the exporter-toolkit file Alertmanager reads — `tls_server_config` (TLS
//! and client certificates for the HTTP server), `http_server_config.headers` (headers added to
//! every response) and `basic_auth_users` (bcrypt hashes). Every endpoint is behind it, `/-/healthy`
//! and `/-/ready` included, as in Alertmanager.
//!
//! The file is looked at again at most once per second when a request or connection arrives, as
//! exporter-toolkit re-reads it: users, headers and certificates change without a restart. A
//! changed file that does not load is reported and the previous one stays in force; so does one
//! that would switch TLS on or off (that takes a restart, the listener being one or the other).
//! Keys Tocsin cannot honour are refused by name.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tocsin_cluster::tls::ServerTls;
use tokio::sync::Semaphore;

use crate::cluster_tls::{ServerYaml, server_settings};

/// How often the file is looked at for changes, at most.
const RECHECK: Duration = Duration::from_secs(1);
/// Checked credentials remembered (by a SHA-256 of user, hash and password): a bcrypt check
/// costs tens of milliseconds, and clients send the same credentials with every request.
const CACHE_ENTRIES: usize = 4096;
/// Headers exporter-toolkit lets `http_server_config.headers` set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];
/// Checked against for unknown users, so that a wrong user name costs what a wrong password
/// does (made once, at bcrypt's usual cost).
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| bcrypt::hash("tocsin: no such user", bcrypt::DEFAULT_COST).unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<ServerYaml>,
    http_server_config: Option<HttpServer>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServer {
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What one version of the file says.
pub struct Active {
    /// TLS for the listener, if the file asks for it.
    pub tls: Option<Arc<ServerTls>>,
    users: HashMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

fn parse(text: &str, dir: &Path) -> anyhow::Result<Active> {
    let f: File = serde_saphyr::from_str(text)?;
    // HTTP/2 is offered over TLS unless `http_server_config.http2` is false (exporter-toolkit's
    // default is true); plain HTTP is HTTP/1.1 either way.
    let http2 = f.http_server_config.as_ref().and_then(|h| h.http2).unwrap_or(true);
    let alpn: &'static [&'static [u8]] = if http2 { &[b"h2", b"http/1.1"] } else { &[b"http/1.1"] };
    let tls = match f.tls_server_config {
        Some(s) if s.wants_tls() => {
            let settings = server_settings(s, dir)?;
            Some(ServerTls::load(&settings, alpn).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let mut headers = Vec::new();
    if let Some(h) = f.http_server_config {
        for (k, v) in h.headers {
            let Some(name) = ALLOWED_HEADERS.iter().find(|a| a.eq_ignore_ascii_case(&k)) else {
                anyhow::bail!(
                    "http_server_config.headers: {k:?} cannot be set (allowed: {})",
                    ALLOWED_HEADERS.join(", ")
                );
            };
            let value = HeaderValue::from_str(&v)
                .map_err(|_| anyhow::anyhow!("http_server_config.headers: {k}: not a valid header value"))?;
            headers.push((HeaderName::from_static(static_lower(name)), value));
        }
    }
    for (user, hash) in &f.basic_auth_users {
        hash.parse::<bcrypt::HashParts>()
            .map_err(|e| anyhow::anyhow!("basic_auth_users: {user:?}: not a bcrypt hash: {e}"))?;
    }
    Ok(Active {
        tls,
        users: f.basic_auth_users.into_iter().collect(),
        headers,
    })
}

fn static_lower(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

struct Loaded {
    checked: Instant,
    stamp: Option<SystemTime>,
    active: Arc<Active>,
}

/// The web config file, reloaded on change.
pub struct WebConfig {
    path: PathBuf,
    state: Mutex<Loaded>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// bcrypt checks at once (each takes a blocking thread for tens of milliseconds).
    checks: Semaphore,
}

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(path: &Path) -> anyhow::Result<Active> {
    let text = std::fs::read_to_string(path)?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
}

impl WebConfig {
    /// Loads the file, certificates included.
    ///
    /// # Errors
    /// The file cannot be read or parsed, a file it names cannot be loaded, or it asks for
    /// something Tocsin cannot honour.
    pub fn load(path: &str) -> anyhow::Result<Arc<Self>> {
        let p = PathBuf::from(path);
        let active = read(&p).map_err(|e| anyhow::anyhow!("--web.config.file {path:?}: {e}"))?;
        Ok(Arc::new(WebConfig {
            state: Mutex::new(Loaded {
                checked: Instant::now(),
                stamp: stamp(&p),
                active: Arc::new(active),
            }),
            path: p,
            cache: Mutex::new(HashMap::new()),
            checks: Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)),
        }))
    }

    /// What the file says now.
    pub fn current(&self) -> Arc<Active> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() >= RECHECK {
            st.checked = Instant::now();
            let now = stamp(&self.path);
            if now != st.stamp {
                st.stamp = now;
                match read(&self.path) {
                    Ok(a) if a.tls.is_some() != st.active.tls.is_some() => {
                        tracing::error!(file = %self.path.display(), "--web.config.file changed whether TLS is on; that takes a restart, the previous file stays in force");
                    }
                    Ok(a) => {
                        tracing::info!(file = %self.path.display(), "--web.config.file reloaded");
                        st.active = Arc::new(a);
                    }
                    Err(e) => {
                        tracing::error!(file = %self.path.display(), error = %e, "--web.config.file changed but cannot be loaded; the previous one stays in force");
                    }
                }
            }
        }
        st.active.clone()
    }

    /// Whether `user` with `password` is one of `active`'s users.
    async fn check(&self, active: &Active, user: &str, password: &str) -> bool {
        let hash: &str = match active.users.get(user) {
            Some(h) => h,
            None => dummy_hash(),
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let known = active.users.contains_key(user);
        if let Some(ok) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return *ok && known;
        }
        let Ok(_permit) = self.checks.acquire().await else {
            return false;
        };
        let (hash, password) = (hash.to_string(), password.to_string());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
            && known;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }
}

fn credentials(req: &Request) -> Option<(String, String)> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The middleware in front of every endpoint: basic auth when users are configured, and the
/// configured headers on every response (401s included).
pub async fn guard(State(wc): State<Arc<WebConfig>>, req: Request, next: Next) -> Response {
    let active = wc.current();
    let mut resp = if active.users.is_empty() {
        next.run(req).await
    } else {
        match credentials(&req) {
            Some((u, p)) if wc.check(&active, &u, &p).await => next.run(req).await,
            _ => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response(),
        }
    };
    for (k, v) in &active.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text, Path::new(".")) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn users_and_headers_without_tls() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let a = parse(
            &format!(
                "basic_auth_users:\n  alice: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
            ),
            Path::new("."),
        )
        .unwrap();
        assert!(a.tls.is_none());
        assert_eq!(a.users.len(), 1);
        assert_eq!(a.headers[0].0.as_str(), "x-frame-options");
    }

    #[test]
    fn bad_files_are_refused_naming_what_is_wrong() {
        assert!(err("basic_auth_users:\n  bob: plaintext\n").contains("basic_auth_users: \"bob\": not a bcrypt hash"));
        assert!(err("http_server_config:\n  headers:\n    Set-Cookie: x\n").contains("\"Set-Cookie\" cannot be set"));
        assert!(err("tls_server_config:\n  cert_file: a.crt\n").contains("tls_server_config.key_file is required"));
        assert!(
            err("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n")
                .contains("client_ca_file is required")
        );
        assert!(
            err("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n")
                .contains("tls_server_config.cipher_suites is not supported")
        );
        assert!(err("basic_auth_user: {}\n").contains("basic_auth_user"));
        assert!(err("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n").contains("missing.crt"));
    }
}

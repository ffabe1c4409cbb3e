//! Builds HTTP clients from Prometheus' common `http_config` (§2.2) and applies its auth.

use std::sync::Arc;

use tocsin_core::config::{HttpClientConfig, TlsConfig};
use tokio_rustls::rustls;

use crate::read_secret;

fn read_file(p: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("unable to read {}: {e}", p.display()))
}

/// Verifies a server's certificate against `tls_config.server_name` instead of the URL's host,
/// as Go's `tls.Config.ServerName` does (the SNI sent stays the URL's host).
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn pem_certs(pem: &[u8], what: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid {what}: {e}"))
}

/// The TLS configuration of a `tls_config` with `server_name`, built with rustls directly
/// (reqwest cannot verify against another name than the URL's host).
fn named_tls(tls: &TlsConfig, name: &str, http2: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = match (&tls.ca, &tls.ca_file) {
        (Some(pem), _) => Some(pem.as_bytes().to_vec()),
        (None, Some(f)) => Some(read_file(f)?),
        _ => None,
    };
    match ca {
        Some(pem) => {
            for c in pem_certs(&pem, "CA certificate")? {
                roots.add(c).map_err(|e| format!("invalid CA certificate: {e}"))?;
            }
        }
        // Like Go without RootCAs: the system's roots.
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate found in ca/ca_file or the system".into());
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("tls_config: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("invalid tls_config.server_name {name:?}: {e}"))?;
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version.as_deref() {
        Some("TLS13") => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS12, &rustls::version::TLS13],
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("tls_config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NamedVerifier { inner, name }));
    let cert = match (&tls.cert, &tls.cert_file) {
        (Some(pem), _) => Some(pem.as_bytes().to_vec()),
        (None, Some(f)) => Some(read_file(f)?),
        _ => None,
    };
    let mut cfg = match (cert, &tls.key) {
        (Some(cert), Some(key)) => {
            use rustls::pki_types::pem::PemObject;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(read_secret(key)?.as_bytes())
                .map_err(|e| format!("invalid client certificate or key: {e}"))?;
            builder
                .with_client_auth_cert(pem_certs(&cert, "client certificate")?, key)
                .map_err(|e| format!("invalid client certificate or key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(cfg)
}

fn apply_tls(mut b: reqwest::ClientBuilder, tls: &TlsConfig, http2: bool) -> Result<reqwest::ClientBuilder, String> {
    // With verification skipped the name does not matter, as in Go.
    if let Some(name) = tls.server_name.as_deref().filter(|_| !tls.insecure_skip_verify) {
        return Ok(b.tls_backend_preconfigured(named_tls(tls, name, http2)?));
    }
    let ca = match (&tls.ca, &tls.ca_file) {
        (Some(pem), _) => Some(pem.as_bytes().to_vec()),
        (None, Some(f)) => Some(read_file(f)?),
        _ => None,
    };
    if let Some(pem) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("invalid CA certificate: {e}"))?;
        if certs.is_empty() {
            return Err("no CA certificate found in ca/ca_file".into());
        }
        // Like Go's RootCAs: a configured CA replaces the system roots.
        b = b.tls_certs_only(certs);
    }
    let cert = match (&tls.cert, &tls.cert_file) {
        (Some(pem), _) => Some(pem.as_bytes().to_vec()),
        (None, Some(f)) => Some(read_file(f)?),
        _ => None,
    };
    if let (Some(mut cert), Some(key)) = (cert, &tls.key) {
        cert.push(b'\n');
        cert.extend_from_slice(read_secret(key)?.as_bytes());
        let id = reqwest::Identity::from_pem(&cert).map_err(|e| format!("invalid client certificate or key: {e}"))?;
        b = b.identity(id);
    }
    if tls.insecure_skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    if let Some(v) = &tls.min_version {
        let v = match v.as_str() {
            "TLS13" => reqwest::tls::Version::TLS_1_3,
            // rustls has no TLS 1.0/1.1: 1.2 is the floor either way.
            _ => reqwest::tls::Version::TLS_1_2,
        };
        b = b.tls_version_min(v);
    }
    Ok(b)
}

/// Builds a client for one integration.
///
/// # Errors
/// Returns a message naming the unreadable file or the invalid certificate.
pub fn build_client(cfg: &HttpClientConfig, user_agent: &str) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder().user_agent(user_agent);
    b = apply_tls(b, &cfg.tls, cfg.enable_http2)?;
    b = b.redirect(if cfg.follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    });
    if !cfg.enable_http2 {
        b = b.http1_only();
    }
    b = match &cfg.proxy_url {
        Some(p) => {
            let mut proxy = reqwest::Proxy::all(p).map_err(|e| format!("invalid proxy_url: {e}"))?;
            if let Some(np) = &cfg.no_proxy {
                proxy = proxy.no_proxy(reqwest::NoProxy::from_string(np));
            }
            if !cfg.proxy_connect_headers.is_empty() {
                let mut h = reqwest::header::HeaderMap::new();
                for (k, v) in &cfg.proxy_connect_headers {
                    let name = reqwest::header::HeaderName::try_from(k.as_str())
                        .map_err(|_| format!("proxy_connect_header: invalid header name {k:?}"))?;
                    let value = reqwest::header::HeaderValue::try_from(v.as_str())
                        .map_err(|_| format!("proxy_connect_header: invalid value of {k}"))?;
                    h.append(name, value);
                }
                proxy = proxy.headers(h);
            }
            b.proxy(proxy)
        }
        // reqwest reads HTTP_PROXY, HTTPS_PROXY and NO_PROXY itself unless told not to.
        None if cfg.proxy_from_environment => b,
        None => b.no_proxy(),
    };
    b.build().map_err(|e| format!("unable to build HTTP client: {e}"))
}

/// Bearer tokens of an `oauth2` config (client credentials grant), fetched with the
/// integration's own client and kept until shortly before they expire.
pub struct OAuth2Tokens {
    cfg: tocsin_core::config::OAuth2Config,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(String, Option<std::time::Instant>)>>,
}

/// The longest a token request may take (each send is bounded by its own deadline too).
const TOKEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 << 10;

/// A token is renewed this long before it expires, as golang.org/x/oauth2 does.
const TOKEN_EXPIRY_DELTA: std::time::Duration = std::time::Duration::from_secs(10);

impl OAuth2Tokens {
    /// Tokens for `cfg`, requested through `client`.
    pub fn new(cfg: tocsin_core::config::OAuth2Config, client: reqwest::Client) -> Self {
        OAuth2Tokens {
            cfg,
            client,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The `Authorization` header value: a cached token, or a fresh one.
    ///
    /// # Errors
    /// The token endpoint could not be reached or refused (the message says which).
    pub async fn header(&self) -> Result<String, (u16, String)> {
        let mut cached = self.cached.lock().await;
        if let Some((h, until)) = &*cached
            && until.is_none_or(|u| std::time::Instant::now() < u)
        {
            return Ok(h.clone());
        }
        let secret = read_secret(&self.cfg.client_secret).map_err(|e| (0, e))?;
        let mut form: Vec<(String, String)> = vec![("grant_type".into(), "client_credentials".into())];
        if !self.cfg.scopes.is_empty() {
            form.push(("scope".into(), self.cfg.scopes.join(" ")));
        }
        form.extend(self.cfg.endpoint_params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let body = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    tocsin_template::query_escape(k),
                    tocsin_template::query_escape(v)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .client
            .post(&self.cfg.token_url)
            .basic_auth(
                tocsin_template::query_escape(&self.cfg.client_id),
                Some(tocsin_template::query_escape(&secret)),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .timeout(TOKEN_TIMEOUT)
            .send()
            .await
            .map_err(|e| (0, format!("oauth2: token request failed: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        // An endpoint is outside input: its answer is read no further than a token can be long.
        let mut resp = resp;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| (0, format!("oauth2: token response: {e}")))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_TOKEN_RESPONSE {
                return Err((
                    0,
                    format!("oauth2: token response larger than {MAX_TOKEN_RESPONSE} bytes"),
                ));
            }
        }
        if !(200..300).contains(&status) {
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err((status, format!("oauth2: token endpoint answered {status}: {head}")));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            access_token: String,
            #[serde(default)]
            token_type: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let t: Token = serde_json::from_slice(&bytes).map_err(|e| (0, format!("oauth2: token response: {e}")))?;
        if t.access_token.is_empty() {
            return Err((0, "oauth2: server response missing access_token".into()));
        }
        // Go's oauth2 spells the usual types its own way.
        let kind = match t.token_type.to_ascii_lowercase().as_str() {
            "" | "bearer" => "Bearer".to_string(),
            "mac" => "MAC".to_string(),
            "basic" => "Basic".to_string(),
            _ => t.token_type.clone(),
        };
        let header = format!("{kind} {}", t.access_token);
        let until = t
            .expires_in
            .filter(|s| *s > 0)
            .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s).saturating_sub(TOKEN_EXPIRY_DELTA));
        *cached = Some((header.clone(), until));
        Ok(header)
    }
}

/// The `http_headers` to send, name and value, files read now.
///
/// # Errors
/// Returns the file error when a header file cannot be read.
pub fn extra_headers(cfg: &HttpClientConfig) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (name, values) in &cfg.headers {
        for v in values {
            out.push((name.clone(), read_secret(v)?));
        }
    }
    Ok(out)
}

/// The `Authorization` header value of the configured authentication, if any; secrets in files
/// are read now.
///
/// # Errors
/// Returns the file error when a secret file cannot be read.
pub fn authorization(cfg: &HttpClientConfig) -> Result<Option<String>, String> {
    use base64::Engine;
    if let Some((user, pw)) = &cfg.basic_auth {
        let user = read_secret(user)?;
        let pw = pw.as_ref().map(read_secret).transpose()?.unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        return Ok(Some(format!("Basic {token}")));
    }
    if let Some((scheme, cred)) = &cfg.authorization {
        return Ok(Some(format!("{scheme} {}", read_secret(cred)?)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use tocsin_core::config::{HttpClientConfig, SecretSource};

    #[test]
    fn basic_auth_reads_the_username_and_password_files_at_use() {
        let dir = tempfile::tempdir().unwrap();
        let (u, p) = (dir.path().join("user"), dir.path().join("pass"));
        std::fs::write(&u, "alice\n").unwrap();
        std::fs::write(&p, "wonderland\n").unwrap();
        let cfg = HttpClientConfig {
            basic_auth: Some((SecretSource::File(u.clone()), Some(SecretSource::File(p)))),
            ..HttpClientConfig::default()
        };
        // base64("alice:wonderland")
        assert_eq!(
            super::authorization(&cfg).unwrap().as_deref(),
            Some("Basic YWxpY2U6d29uZGVybGFuZA==")
        );
        std::fs::write(&u, "bob").unwrap();
        assert_eq!(
            super::authorization(&cfg).unwrap().as_deref(),
            Some("Basic Ym9iOndvbmRlcmxhbmQ="),
            "a rotated file is read again"
        );
    }
}

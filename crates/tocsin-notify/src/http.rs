//! Builds HTTP clients from Prometheus' common `http_config` (§2.2) and applies its auth.

use tocsin_core::config::{HttpClientConfig, TlsConfig};

use crate::read_secret;

fn read_file(p: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("unable to read {}: {e}", p.display()))
}

fn apply_tls(mut b: reqwest::ClientBuilder, tls: &TlsConfig) -> Result<reqwest::ClientBuilder, String> {
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
    if tls.server_name.is_some() {
        return Err("tls_config.server_name is not supported by Tocsin yet".into());
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
    b = apply_tls(b, &cfg.tls)?;
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

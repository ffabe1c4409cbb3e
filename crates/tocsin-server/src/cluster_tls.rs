//! `--cluster.tls-config`: Alertmanager's YAML (`tls_server_config` as exporter-toolkit reads
//! it, `tls_client_config` as Prometheus' common config reads it), turned into the cluster
//! crate's TLS settings. Every key Tocsin cannot honour is refused by name: a cluster that runs
//! with weaker security than its file says is worse than one that does not start.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tocsin_cluster::tls::{ClientAuth, ClientSettings, ServerSettings, Settings, Version};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<ServerYaml>,
    tls_client_config: Option<ClientYaml>,
}

/// `tls_server_config`, as exporter-toolkit reads it (shared with `--web.config.file`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerYaml {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    min_version: String,
    #[serde(default)]
    max_version: String,
    // Read only to be refused with a clear message.
    #[serde(default)]
    cert: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    client_ca: String,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientYaml {
    #[serde(default)]
    ca_file: String,
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    server_name: String,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    min_version: String,
    #[serde(default)]
    max_version: String,
    #[serde(default)]
    ca: String,
    #[serde(default)]
    cert: String,
    #[serde(default)]
    key: String,
}

pub(crate) fn version(side: &str, key: &str, v: &str) -> anyhow::Result<Option<Version>> {
    Ok(match v {
        "" => None,
        "TLS12" => Some(Version::Tls12),
        "TLS13" => Some(Version::Tls13),
        "TLS10" | "TLS11" => anyhow::bail!("{side}.{key}: {v} is not offered (Tocsin speaks TLS 1.2 and 1.3)"),
        _ => anyhow::bail!("{side}.{key}: unknown version {v:?} (TLS12 or TLS13)"),
    })
}

/// Paths are relative to the file's directory, as Alertmanager resolves them.
pub(crate) fn path(dir: &Path, p: &str) -> Option<PathBuf> {
    (!p.is_empty()).then(|| dir.join(p))
}

/// Reads and checks the file at `file`.
///
/// # Errors
/// The file cannot be read or parsed, a required key is missing, or it asks for something
/// Tocsin cannot honour.
pub fn load(file: &str) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("--cluster.tls-config {file:?}: {e}"))?;
    let dir = Path::new(file).parent().unwrap_or(Path::new("."));
    parse(&text, dir).map_err(|e| anyhow::anyhow!("--cluster.tls-config {file:?}: {e}"))
}

fn parse(text: &str, dir: &Path) -> anyhow::Result<Settings> {
    let f: File = serde_saphyr::from_str(text)?;
    let (Some(s), Some(c)) = (f.tls_server_config, f.tls_client_config) else {
        anyhow::bail!("both tls_server_config and tls_client_config are required");
    };
    let cl = "tls_client_config";
    refuse(cl, "ca", !c.ca.is_empty(), "use ca_file")?;
    refuse(cl, "cert", !c.cert.is_empty(), "use cert_file")?;
    refuse(cl, "key", !c.key.is_empty(), "use key_file")?;
    refuse(
        cl,
        "insecure_skip_verify",
        c.insecure_skip_verify,
        "peers' certificates are always verified (set server_name if they do not carry the peers' addresses)",
    )?;
    let need = |side: &str, key: &str, v: &str| -> anyhow::Result<PathBuf> {
        path(dir, v).ok_or_else(|| anyhow::anyhow!("{side}.{key} is required"))
    };
    let sv = "tls_server_config";
    if s.cert_file.is_empty() || s.key_file.is_empty() {
        need(sv, "cert_file", &s.cert_file)?;
        need(sv, "key_file", &s.key_file)?;
    }
    Ok(Settings {
        server: server_settings(s, dir)?,
        client: ClientSettings {
            ca_file: need(cl, "ca_file", &c.ca_file)?,
            cert_file: path(dir, &c.cert_file),
            key_file: path(dir, &c.key_file),
            server_name: (!c.server_name.is_empty()).then_some(c.server_name),
            min_version: version(cl, "min_version", &c.min_version)?,
            max_version: version(cl, "max_version", &c.max_version)?,
        },
    })
}

fn refuse(side: &str, key: &str, set: bool, why: &str) -> anyhow::Result<()> {
    if set {
        anyhow::bail!("{side}.{key} is not supported by Tocsin: {why}");
    }
    Ok(())
}

/// Checks a `tls_server_config` with both `cert_file` and `key_file` set and turns it into
/// settings; every key Tocsin cannot honour is refused by name.
///
/// # Errors
/// Such a key, an unknown `client_auth_type` or version, or a client CA missing where client
/// certificates are to be verified.
pub(crate) fn server_settings(s: ServerYaml, dir: &Path) -> anyhow::Result<ServerSettings> {
    let sv = "tls_server_config";
    refuse(sv, "cert", !s.cert.is_empty(), "use cert_file")?;
    refuse(sv, "key", !s.key.is_empty(), "use key_file")?;
    refuse(sv, "client_ca", !s.client_ca.is_empty(), "use client_ca_file")?;
    refuse(
        sv,
        "cipher_suites",
        !s.cipher_suites.is_empty(),
        "rustls offers only modern suites; remove the key",
    )?;
    refuse(
        sv,
        "curve_preferences",
        !s.curve_preferences.is_empty(),
        "remove the key",
    )?;
    refuse(
        sv,
        "prefer_server_cipher_suites",
        s.prefer_server_cipher_suites.is_some(),
        "remove the key",
    )?;
    refuse(
        sv,
        "client_allowed_sans",
        !s.client_allowed_sans.is_empty(),
        "every certificate the client CA signed is a member; use a CA for the cluster alone",
    )?;
    let client_auth = match s.client_auth_type.as_str() {
        "" | "NoClientCert" => ClientAuth::None,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequestClientCert" | "RequireAnyClientCert" => anyhow::bail!(
            "{sv}.client_auth_type {:?} accepts certificates nobody verified; use RequireAndVerifyClientCert",
            s.client_auth_type
        ),
        other => anyhow::bail!("{sv}.client_auth_type: unknown value {other:?}"),
    };
    if client_auth != ClientAuth::None && s.client_ca_file.is_empty() {
        anyhow::bail!(
            "{sv}.client_ca_file is required with client_auth_type {:?}",
            s.client_auth_type
        );
    }
    if client_auth == ClientAuth::None && !s.client_ca_file.is_empty() {
        anyhow::bail!(
            "{sv}.client_ca_file is set but client_auth_type is NoClientCert: no client certificate would be checked"
        );
    }
    let file = |key: &str, v: &str| path(dir, v).ok_or_else(|| anyhow::anyhow!("{sv}.{key} is required"));
    Ok(ServerSettings {
        cert_file: file("cert_file", &s.cert_file)?,
        key_file: file("key_file", &s.key_file)?,
        client_ca_file: path(dir, &s.client_ca_file),
        client_auth,
        min_version: version(sv, "min_version", &s.min_version)?,
        max_version: version(sv, "max_version", &s.max_version)?,
    })
}

impl ServerYaml {
    /// Whether TLS is asked for at all (exporter-toolkit serves plain HTTP when neither
    /// `cert_file` nor `key_file` is set).
    pub(crate) fn wants_tls(&self) -> bool {
        !(self.cert_file.is_empty() && self.key_file.is_empty() && self.cert.is_empty() && self.key.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTLS: &str = "
tls_server_config:
  cert_file: node.crt
  key_file: node.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS13
tls_client_config:
  ca_file: ca.crt
  cert_file: node.crt
  key_file: node.key
  server_name: tocsin
";

    #[test]
    fn alertmanager_mutual_tls_file_is_read_with_paths_relative_to_it() {
        let s = parse(MTLS, Path::new("/etc/tocsin")).unwrap();
        assert_eq!(s.server.cert_file, PathBuf::from("/etc/tocsin/node.crt"));
        assert_eq!(s.server.client_ca_file, Some(PathBuf::from("/etc/tocsin/ca.crt")));
        assert_eq!(s.server.client_auth, ClientAuth::RequireAndVerify);
        assert_eq!(s.server.min_version, Some(Version::Tls13));
        assert_eq!(s.client.server_name.as_deref(), Some("tocsin"));
        assert_eq!(s.client.key_file, Some(PathBuf::from("/etc/tocsin/node.key")));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let err = parse(&format!("{MTLS}  insecure_skip_verify: true\n"), Path::new(".")).unwrap_err();
        assert!(
            err.to_string().contains("tls_client_config.insecure_skip_verify"),
            "{err}"
        );
        let any = MTLS.replace("RequireAndVerifyClientCert", "RequireAnyClientCert");
        let err = parse(&any, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("client_auth_type \"RequireAnyClientCert\""), "{err}");
        let sans = MTLS.replace("  min_version: TLS13\n", "  client_allowed_sans: [a]\n");
        let err = parse(&sans, Path::new(".")).unwrap_err().to_string();
        assert!(
            err.contains("tls_server_config.client_allowed_sans is not supported"),
            "{err}"
        );
        let old = MTLS.replace("TLS13", "TLS10");
        let err = parse(&old, Path::new(".")).unwrap_err().to_string();
        assert!(
            err.contains("tls_server_config.min_version: TLS10 is not offered"),
            "{err}"
        );
        let typo = MTLS.replace("server_name", "servername");
        assert!(
            parse(&typo, Path::new("."))
                .unwrap_err()
                .to_string()
                .contains("servername")
        );
        let half = "tls_server_config:\n  cert_file: a\n  key_file: b\n";
        let err = parse(half, Path::new(".")).unwrap_err().to_string();
        assert!(
            err.contains("both tls_server_config and tls_client_config are required"),
            "{err}"
        );
    }
}

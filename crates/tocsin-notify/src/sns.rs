//! Amazon SNS (`sns_configs`, reference §4 sns): the `Publish` action of SNS's query API,
//! signed with AWS Signature Version 4 by AWS's own `aws-sigv4` crate. Credentials are the
//! config's `sigv4` keys or the `AWS_*` environment; profiles and STS roles are refused at load.

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use tocsin_core::config::{HttpClientConfig, SecretSource, SnsConfig};
use tracing::warn;

use crate::fields::Render;
use crate::integration::{Encoded, Encoder, group_hash};
use crate::sender::{Reply, check_status};
use crate::{NotifyData, NotifyError, read_secret};

/// The integration.
pub struct Sns(pub SnsConfig);

/// The longest message SNS takes, in bytes; an SMS's.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
const MAX_SMS_BYTES: usize = 1600;

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// `s` cut to `n` bytes on a character boundary, without a marker (SNS's hard cut).
fn cut_bytes(s: &str, n: usize) -> (String, bool) {
    if s.len() <= n {
        return (s.to_string(), false);
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_string(), true)
}

impl Encoder for Sns {
    const KIND: &'static str = "sns";
    fn fields(&self) -> Vec<(String, &str)> {
        let c = &self.0;
        let mut v: Vec<(String, &str)> = vec![
            ("api_url".into(), &c.api_url),
            ("topic_arn".into(), &c.topic_arn),
            ("phone_number".into(), &c.phone_number),
            ("target_arn".into(), &c.target_arn),
            ("subject".into(), &c.subject),
            ("message".into(), &c.message),
        ];
        for (k, t) in &c.attributes {
            v.push((format!("attributes.{k}.name"), k));
            v.push((format!("attributes.{k}.value"), t));
        }
        v
    }
    fn endpoint(&self) -> SecretSource {
        // Each request names its URL (the region's endpoint or the rendered api_url).
        SecretSource::Inline("https://sns.amazonaws.com/".into())
    }
    fn http(&self) -> &HttpClientConfig {
        &self.0.http
    }
    fn secrets(&self) -> Result<Vec<String>, String> {
        let (access, secret, token) = match &self.0.keys {
            Some((a, s)) => (a.clone(), read_secret(s)?, String::new()),
            None => match (env(&["AWS_ACCESS_KEY_ID"]), env(&["AWS_SECRET_ACCESS_KEY"])) {
                (Some(a), Some(s)) => (a, s, env(&["AWS_SESSION_TOKEN"]).unwrap_or_default()),
                _ => {
                    return Err(
                        "no AWS credentials: set sigv4.access_key and secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                            .into(),
                    );
                }
            },
        };
        let region = if self.0.region.is_empty() {
            env(&["AWS_REGION", "AWS_DEFAULT_REGION"])
                .ok_or("no AWS region: set sigv4.region, or AWS_REGION".to_string())?
        } else {
            self.0.region.clone()
        };
        Ok(vec![access, secret, token, region])
    }
    /// The region is not a secret (it is in the endpoint's host and in topic ARNs).
    fn redacted(&self, secrets: &[String]) -> Vec<String> {
        secrets.iter().take(3).cloned().collect()
    }
    fn encode(&self, d: &NotifyData, secrets: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String> {
        let c = &self.0;
        let [access, secret, token, region] = secrets else {
            return Err("sns: the credentials were not read".into());
        };
        let api_url = r.field("api_url", "");
        let url = if api_url.is_empty() {
            format!("https://sns.{region}.amazonaws.com/")
        } else {
            api_url
        };
        let parsed = reqwest::Url::parse(&url).map_err(|e| format!("sns: invalid api_url: {e}"))?;
        let mut params: Vec<(String, String)> = vec![
            ("Action".into(), "Publish".into()),
            ("Version".into(), "2010-03-31".into()),
        ];
        let topic = r.field("topic_arn", "");
        let phone = r.field("phone_number", "");
        let target = r.field("target_arn", "");
        for (name, v) in [("TopicArn", &topic), ("PhoneNumber", &phone), ("TargetArn", &target)] {
            if !v.is_empty() {
                params.push((name.into(), v.clone()));
            }
        }
        let limit = if phone.is_empty() {
            MAX_MESSAGE_BYTES
        } else {
            MAX_SMS_BYTES
        };
        let (message, cut) = cut_bytes(&r.field("message", r#"{{ template "sns.default.message" . }}"#), limit);
        if cut {
            warn!(integration = "sns", max_bytes = limit, "truncated the message");
        }
        params.push(("Message".into(), message));
        let subject = r.field("subject", r#"{{ template "sns.default.subject" . }}"#);
        if !subject.is_empty() {
            params.push(("Subject".into(), subject));
        }
        let mut attributes: Vec<(String, String)> = c
            .attributes
            .keys()
            .map(|k| {
                (
                    r.field(&format!("attributes.{k}.name"), ""),
                    r.field(&format!("attributes.{k}.value"), ""),
                )
            })
            .collect();
        if cut {
            attributes.push(("truncated".into(), "true".into()));
        }
        attributes.sort();
        for (n, (name, value)) in attributes.into_iter().enumerate() {
            let p = format!("MessageAttributes.entry.{}", n + 1);
            params.push((format!("{p}.Name"), name));
            params.push((format!("{p}.Value.DataType"), "String".into()));
            params.push((format!("{p}.Value.StringValue"), value));
        }
        if topic.ends_with(".fifo") {
            let id = group_hash(&d.group_key);
            params.push(("MessageGroupId".into(), id.clone()));
            params.push(("MessageDeduplicationId".into(), id));
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish()
            .into_bytes();
        let content_type = "application/x-www-form-urlencoded";
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err("sns: api_url has no host".into()),
        };
        let headers = sign_request(
            &url,
            &host,
            content_type,
            &body,
            (access, secret, token),
            region,
            r.now(),
        )?;
        let authorization = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone());
        let mut e = Encoded::json(&())?;
        e.url = Some(url);
        e.content_type = content_type;
        e.body = body;
        e.authorization = authorization;
        e.headers = headers.into_iter().filter(|(k, _)| k != "authorization").collect();
        Ok(vec![e])
    }
    fn judge(&self, reply: &Reply, _: &Encoded) -> Result<(), NotifyError> {
        check_status(reply.status, &reply.quoted(), &[])
    }
}

/// The headers that sign a request (`authorization`, `x-amz-date`, and the session token's).
///
/// # Errors
/// The request cannot be signed (an invalid URL or header).
pub fn sign_request(
    url: &str,
    host: &str,
    content_type: &str,
    body: &[u8],
    (access, secret, token): (&str, &str, &str),
    region: &str,
    now: jiff::Timestamp,
) -> Result<Vec<(String, String)>, String> {
    let creds = aws_credential_types::Credentials::new(
        access,
        secret,
        (!token.is_empty()).then(|| token.to_string()),
        None,
        "tocsin",
    );
    let identity = creds.into();
    let time =
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(now.as_second()).unwrap_or(0));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sns")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("sns: signing: {e}"))?
        .into();
    let signed_headers = [("content-type", content_type), ("host", host)];
    let req = SignableRequest::new("POST", url, signed_headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| format!("sns: signing: {e}"))?;
    let (instructions, _) = sign(req, &params)
        .map_err(|e| format!("sns: signing: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_aws_signature_version_4() {
        // The expected value was computed by an independent implementation of the algorithm
        // (Python's hmac and hashlib following AWS's documented steps), not by aws-sigv4.
        let h = super::sign_request(
            "https://sns.us-east-1.amazonaws.com/",
            "sns.us-east-1.amazonaws.com",
            "application/x-www-form-urlencoded",
            b"Action=Publish",
            ("AKID", "SECRET", ""),
            "us-east-1",
            "2027-01-15T08:00:00Z".parse().unwrap(),
        )
        .unwrap();
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-date"), Some("20270115T080000Z"));
        assert_eq!(
            get("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKID/20270115/us-east-1/sns/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ed672efe6461a962454c122bb0d086c1bfb90f2d1ba214915edbe516ea2f73e1"
            )
        );
    }
}

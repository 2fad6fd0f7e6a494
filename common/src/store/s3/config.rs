//! Where an `s3://` store finds its endpoint, region and credentials, and
//! how its SDK client is built.
//!
//! [`S3Config::from_env`] reads the standard AWS variables (`store::open`
//! reads them through [`OpenOptions::var`], so variables the controller
//! forwarded come first, and are set on the client explicitly); tests use
//! [`S3Config::custom`] with explicit values so they never touch the process
//! environment. Whatever the config leaves unset falls to the SDK's standard
//! chains (credentials: env, profile, web identity, ECS, IMDS; profile from
//! `AWS_PROFILE`).
//!
//! The client is built for measurement, not convenience: no SDK retries (the
//! engine retries and logs each one), no operation timeout and no
//! stalled-stream watchdog (the engine's op timer is the one bound on a
//! request; the client has only a connect timeout), checksums only where an
//! operation requires one (S3-compatible servers such as Ceph RGW reject the
//! SDK's default `aws-chunked` trailing checksums), bodies signed as
//! `UNSIGNED-PAYLOAD` (no SHA-256 of each body on either side; see
//! `unsigned.rs`), and path-style addressing for custom endpoints (which
//! rarely have wildcard DNS).

use std::fmt;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};

use crate::store::OpenOptions;

/// Region used when none is configured. With a custom endpoint the region
/// only enters the signature, and S3-compatible servers accept this one;
/// looking further (profile, instance metadata) would only cost start time.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Name the static credentials carry inside the SDK (shows in its debug
/// logs as the provider, never the keys).
const PROVIDER_NAME: &str = "chorus-s3-config";

/// Static S3 credentials. `Debug` shows the access key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How to reach S3: every field optional, `None` meaning "the SDK's
/// standard chain decides".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Config {
    /// A custom endpoint (`http://127.0.0.1:9000`); `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// `None`: [`DEFAULT_REGION`] with a custom endpoint, else the SDK's
    /// region chain (profile, instance metadata), else [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// A named profile of `~/.aws/config` and `~/.aws/credentials`.
    pub profile: Option<String>,
    /// Static credentials; `None` for the SDK's credential chain.
    pub credentials: Option<S3Credentials>,
    /// Path-style (`endpoint/bucket/key`) rather than virtual-hosted
    /// (`bucket.endpoint/key`) addressing; `None`: path style exactly when
    /// a custom endpoint is set.
    pub path_style: Option<bool>,
}

impl S3Config {
    /// The config the standard AWS variables give: `AWS_ENDPOINT_URL_S3` or
    /// `AWS_ENDPOINT_URL`, `AWS_REGION` or `AWS_DEFAULT_REGION`,
    /// `AWS_PROFILE`, and `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY`
    /// (+ `AWS_SESSION_TOKEN`) when both keys are set. Empty values count
    /// as unset.
    pub fn from_env() -> S3Config {
        S3Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`S3Config::from_env`] over any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> S3Config {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Some(S3Credentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            _ => None,
        };
        S3Config {
            endpoint_url: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            profile: var("AWS_PROFILE"),
            credentials,
            path_style: None,
        }
    }

    /// An S3-compatible server at `endpoint_url` with static keys, region
    /// [`DEFAULT_REGION`], path-style addressing.
    pub fn custom(
        endpoint_url: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> S3Config {
        S3Config {
            endpoint_url: Some(endpoint_url.into()),
            region: Some(DEFAULT_REGION.to_string()),
            profile: None,
            credentials: Some(S3Credentials {
                access_key_id: access_key_id.into(),
                secret_access_key: secret_access_key.into(),
                session_token: None,
            }),
            path_style: None,
        }
    }

    /// This config with `region`.
    pub fn with_region(mut self, region: impl Into<String>) -> S3Config {
        self.region = Some(region.into());
        self
    }

    /// Whether requests use path-style addressing.
    pub fn uses_path_style(&self) -> bool {
        self.path_style.unwrap_or(self.endpoint_url.is_some())
    }

    /// The secrets in this config, for scrubbing error messages.
    pub(crate) fn secrets(&self) -> Vec<String> {
        self.credentials
            .iter()
            .flat_map(|c| {
                std::iter::once(c.secret_access_key.clone()).chain(c.session_token.clone())
            })
            .collect()
    }
}

/// Removes `user:password@` from a URL, for display.
pub(crate) fn without_userinfo(url: &str) -> String {
    let url = url.trim_end_matches('/');
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// A built client and what it resolved.
pub(crate) struct Built {
    pub client: aws_sdk_s3::Client,
    /// The endpoint URL requests go to, without credentials in it.
    pub endpoint: String,
}

/// Builds the SDK client for `config`, with `opts.timeout` as its connect
/// timeout.
///
/// The HTTP client is the SDK's own (hyper 1 + rustls with aws-lc,
/// TCP_NODELAY on) with its idle pool sized to `opts.concurrency`: every
/// worker finds a warm connection, and no more idle sockets are kept than
/// workers can use.
pub(crate) async fn build_client(config: &S3Config, opts: &OpenOptions) -> Built {
    // Connecting only, not an op timer: it bounds making a new connection
    // and ends once TCP (and TLS) is up; the engine's timer bounds each op
    // as a whole. Of the same length and inside it, it can end only an op
    // that spent all its time connecting, and then says what happened
    // (class `timeout`, "request not sent": the server never saw it).
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(opts.timeout)
        .build();
    let http = aws_smithy_http_client::Builder::new()
        .pool_max_idle_per_host(opts.concurrency.max(1) as usize)
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts)
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(p) = &config.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &config.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    let region = config.region.clone().or_else(|| {
        config
            .endpoint_url
            .as_ref()
            .map(|_| DEFAULT_REGION.to_string())
    });
    if let Some(r) = region {
        loader = loader.region(Region::new(r));
    }
    if let Some(c) = &config.credentials {
        loader = loader.credentials_provider(Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            c.session_token.clone(),
            None,
            PROVIDER_NAME,
        ));
    }
    let sdk = loader.load().await;
    let mut s3 = aws_sdk_s3::config::Builder::from(&sdk);
    let region = match sdk.region() {
        Some(r) => r.to_string(),
        None => {
            s3 = s3.region(Region::from_static(DEFAULT_REGION));
            DEFAULT_REGION.to_string()
        }
    };
    if config.uses_path_style() {
        s3 = s3.force_path_style(true);
    }
    // UNSIGNED-PAYLOAD: no SHA-256 of each body on either side (unsigned.rs).
    s3 = s3.interceptor(super::unsigned::UnsignedPayload);
    let endpoint = match sdk.endpoint_url().or(config.endpoint_url.as_deref()) {
        Some(e) => without_userinfo(e),
        None => format!("https://s3.{region}.amazonaws.com"),
    };
    Built {
        client: aws_sdk_s3::Client::from_conf(s3.build()),
        endpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn reads_the_standard_variables() {
        let c = S3Config::from_lookup(lookup(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_PROFILE", ""),
        ]));
        assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.region, None);
        assert_eq!(c.profile, None, "empty counts as unset");
        assert!(c.uses_path_style());
        let creds = c.credentials.clone().unwrap();
        assert_eq!(
            (
                creds.access_key_id.as_str(),
                creds.secret_access_key.as_str()
            ),
            ("AK", "SK")
        );
        assert_eq!(c.secrets(), vec!["SK".to_string()]);
    }

    #[test]
    fn service_endpoint_and_region_precedence() {
        let c = S3Config::from_lookup(lookup(&[
            ("AWS_ENDPOINT_URL", "http://a"),
            ("AWS_ENDPOINT_URL_S3", "http://b"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "AK"),
        ]));
        assert_eq!(c.endpoint_url.as_deref(), Some("http://b"));
        assert_eq!(c.region.as_deref(), Some("eu-central-1"));
        assert_eq!(c.credentials, None, "one key alone leaves it to the chain");
        let c = S3Config::from_lookup(lookup(&[]));
        assert!(!c.uses_path_style(), "AWS itself: virtual-hosted");
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = S3Config::custom("http://h:1", "AKID", "TOPSECRETKEY");
        c.credentials.as_mut().unwrap().session_token = Some("SESSIONTOKEN".into());
        let text = format!("{c:?}");
        assert!(text.contains("AKID"));
        assert!(
            !text.contains("TOPSECRETKEY") && !text.contains("SESSIONTOKEN"),
            "{text}"
        );
        assert_eq!(c.secrets().len(), 2);
    }

    #[test]
    fn strips_userinfo() {
        assert_eq!(
            without_userinfo("http://u:p@127.0.0.1:9000/"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(without_userinfo("https://s3.example"), "https://s3.example");
        assert_eq!(without_userinfo("http://h:1/path@x"), "http://h:1/path@x");
    }
}

//! Where a `gs://` store connects and how it authenticates: [`GcsConfig`],
//! from the standard Google variables or from explicit values.

use std::fmt;
use std::path::PathBuf;

use crate::store::OpenOptions;

/// Google's public JSON API endpoint.
pub const PUBLIC_ENDPOINT: &str = "https://storage.googleapis.com";

/// Project used to create buckets on an emulator, which accepts any name.
const EMULATOR_PROJECT: &str = "chorus-test";

/// How requests are authorized. `Debug` never shows credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum GcsAuth {
    /// No token (emulators, public buckets).
    Anonymous,
    /// Application default credentials: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// `GOOGLE_APPLICATION_CREDENTIALS_JSON`, gcloud's user credentials, or
    /// the metadata server on Google Cloud.
    ApplicationDefault,
    /// A service account (or other) credentials JSON file.
    CredentialsFile(PathBuf),
    /// The content of such a file, as forwarded by the controller in
    /// `GOOGLE_APPLICATION_CREDENTIALS_JSON`.
    CredentialsJson(String),
}

impl fmt::Debug for GcsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcsAuth::Anonymous => f.write_str("Anonymous"),
            GcsAuth::ApplicationDefault => f.write_str("ApplicationDefault"),
            GcsAuth::CredentialsFile(p) => f.debug_tuple("CredentialsFile").field(p).finish(),
            GcsAuth::CredentialsJson(_) => f.write_str("CredentialsJson(<redacted>)"),
        }
    }
}

/// Everything needed to reach GCS or an emulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsConfig {
    /// Base URL of the JSON API (no `/storage/v1`), e.g.
    /// `http://127.0.0.1:4443` for fake-gcs-server; `None` is Google's.
    pub endpoint: Option<String>,
    pub auth: GcsAuth,
    /// Project to create buckets in (ensure_ready); taken from the
    /// credentials when `None`.
    pub project: Option<String>,
}

impl GcsConfig {
    /// An emulator at `endpoint` (`http://host:port`, or `host:port`),
    /// without authentication.
    pub fn emulator(endpoint: &str) -> GcsConfig {
        GcsConfig {
            endpoint: Some(with_scheme(endpoint)),
            auth: GcsAuth::Anonymous,
            project: Some(EMULATOR_PROJECT.to_string()),
        }
    }

    /// Google Cloud Storage with application default credentials.
    pub fn google() -> GcsConfig {
        GcsConfig {
            endpoint: None,
            auth: GcsAuth::ApplicationDefault,
            project: None,
        }
    }

    /// The config from the process environment; see
    /// [`GcsConfig::from_lookup`].
    pub fn from_env() -> GcsConfig {
        GcsConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// The config for a store opened with `opts`: [`GcsConfig::from_lookup`]
    /// over [`OpenOptions::var`]. Google's application default credentials
    /// read this process's environment, so credentials the controller
    /// forwarded (`GOOGLE_APPLICATION_CREDENTIALS_JSON`, else
    /// `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's order) are handed over
    /// explicitly instead.
    pub fn from_options(opts: &OpenOptions) -> GcsConfig {
        let mut cfg = GcsConfig::from_lookup(|name| opts.var(name));
        let forwarded = |name: &str| {
            opts.env
                .as_ref()
                .and_then(|o| o.get(name))
                .filter(|v| !v.trim().is_empty())
                .map(str::to_string)
        };
        if cfg.auth == GcsAuth::ApplicationDefault {
            if let Some(json) = forwarded("GOOGLE_APPLICATION_CREDENTIALS_JSON") {
                cfg.auth = GcsAuth::CredentialsJson(json);
            } else if let Some(path) = forwarded("GOOGLE_APPLICATION_CREDENTIALS") {
                cfg.auth = GcsAuth::CredentialsFile(PathBuf::from(path.trim()));
            }
        }
        cfg
    }

    /// The config from variables read through `var` (a map in tests, so
    /// they never touch the process environment):
    ///
    /// - `STORAGE_EMULATOR_HOST` (the Google client libraries' emulator
    ///   variable): that endpoint, anonymous;
    /// - else `GCS_ENDPOINT_URL`: that endpoint, with application default
    ///   credentials if `GOOGLE_APPLICATION_CREDENTIALS` is set (a private
    ///   endpoint of real GCS), anonymous otherwise (an emulator);
    /// - else Google's endpoint with application default credentials.
    ///
    /// `GOOGLE_CLOUD_PROJECT` (or `CLOUDSDK_CORE_PROJECT`) names the
    /// project new buckets go to.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> GcsConfig {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut cfg = if let Some(host) = var("STORAGE_EMULATOR_HOST") {
            GcsConfig::emulator(host.trim())
        } else if let Some(url) = var("GCS_ENDPOINT_URL") {
            if var("GOOGLE_APPLICATION_CREDENTIALS").is_some() {
                GcsConfig {
                    endpoint: Some(with_scheme(url.trim())),
                    ..GcsConfig::google()
                }
            } else {
                GcsConfig::emulator(url.trim())
            }
        } else {
            GcsConfig::google()
        };
        if let Some(p) = var("GOOGLE_CLOUD_PROJECT").or_else(|| var("CLOUDSDK_CORE_PROJECT")) {
            cfg.project = Some(p);
        }
        cfg
    }

    /// The endpoint requests go to.
    pub fn endpoint_url(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| PUBLIC_ENDPOINT.to_string())
    }
}

/// `host:port` as `http://host:port` (the form `STORAGE_EMULATOR_HOST` is
/// often given in), without a trailing `/`.
fn with_scheme(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn emulator_host_is_anonymous_and_gets_a_scheme() {
        let cfg = GcsConfig::from_lookup(lookup(&[("STORAGE_EMULATOR_HOST", "localhost:4443")]));
        assert_eq!(cfg.endpoint_url(), "http://localhost:4443");
        assert_eq!(cfg.auth, GcsAuth::Anonymous);
    }

    #[test]
    fn endpoint_url_with_or_without_credentials() {
        let cfg = GcsConfig::from_lookup(lookup(&[("GCS_ENDPOINT_URL", "https://gcs.example/")]));
        assert_eq!(
            (cfg.endpoint_url().as_str(), &cfg.auth),
            ("https://gcs.example", &GcsAuth::Anonymous)
        );
        let cfg = GcsConfig::from_lookup(lookup(&[
            ("GCS_ENDPOINT_URL", "https://gcs.example"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"),
            ("GOOGLE_CLOUD_PROJECT", "p1"),
        ]));
        assert_eq!(cfg.auth, GcsAuth::ApplicationDefault);
        assert_eq!(cfg.project.as_deref(), Some("p1"));
    }

    #[test]
    fn forwarded_credentials_are_explicit_and_hidden() {
        use std::sync::Arc;
        let overlay = |pairs: &[(&str, &str)]| OpenOptions {
            env: Some(Arc::new(crate::store::EnvOverlay::new(
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            ))),
            ..Default::default()
        };
        let cfg = GcsConfig::from_options(&overlay(&[(
            "GOOGLE_APPLICATION_CREDENTIALS_JSON",
            "{\"private_key\": \"KEYTEXT\"}",
        )]));
        assert!(matches!(cfg.auth, GcsAuth::CredentialsJson(_)));
        assert!(!format!("{cfg:?}").contains("KEYTEXT"));
        let cfg = GcsConfig::from_options(&overlay(&[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            "/etc/k.json",
        )]));
        assert_eq!(cfg.auth, GcsAuth::CredentialsFile("/etc/k.json".into()));
        let cfg = GcsConfig::from_options(&overlay(&[("STORAGE_EMULATOR_HOST", "h:1")]));
        assert_eq!(cfg.auth, GcsAuth::Anonymous);
    }

    #[test]
    fn google_by_default() {
        let cfg = GcsConfig::from_lookup(lookup(&[]));
        assert_eq!(cfg, GcsConfig::google());
        assert_eq!(cfg.endpoint_url(), PUBLIC_ENDPOINT);
    }
}

//! Where an `az://` store connects and how it signs: [`AzureConfig`], built
//! from the standard `AZURE_STORAGE_*` variables or from explicit values.
//!
//! Secrets live only in [`AzureCredential`], whose `Debug` prints which kind
//! of credential it is and never its value, so a config can be logged.

use std::fmt;

/// Base URL of an account's blob service in the public cloud.
const PUBLIC_BLOB_SUFFIX: &str = "blob.core.windows.net";

/// Azurite's (and the old Storage Emulator's) well-known account, as
/// `UseDevelopmentStorage=true` means it.
pub const EMULATOR_ACCOUNT: &str = azure_storage::EMULATOR_ACCOUNT;

/// The endpoint `UseDevelopmentStorage=true` points at: Azurite's default
/// blob port on loopback, path-style.
const DEVELOPMENT_STORAGE_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// How requests are authorized.
#[derive(Clone, PartialEq, Eq)]
pub enum AzureCredential {
    /// Shared key: the account's base64 access key.
    Key(String),
    /// A shared access signature: the query string, with or without `?`.
    Sas(String),
    /// No authorization (public containers only).
    Anonymous,
}

impl AzureCredential {
    /// The secret text, to scrub it from any message that might echo it.
    pub(crate) fn secret(&self) -> Option<&str> {
        match self {
            AzureCredential::Key(k) => Some(k),
            AzureCredential::Sas(s) => Some(s),
            AzureCredential::Anonymous => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            AzureCredential::Key(_) => "shared key",
            AzureCredential::Sas(_) => "SAS token",
            AzureCredential::Anonymous => "anonymous",
        }
    }
}

impl fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the value: configs get logged.
        write!(f, "AzureCredential({})", self.kind())
    }
}

/// Everything needed to reach one storage account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureConfig {
    /// The storage account name (also what shared-key signatures name).
    pub account: String,
    pub credential: AzureCredential,
    /// Base URL of the account's blob service, e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1` for Azurite (path-style)
    /// or `https://acct.blob.core.windows.net`; `None` means the public
    /// cloud URL of `account`. Never holds a query string.
    pub endpoint: Option<String>,
}

impl AzureConfig {
    /// An explicit config: `account` signed with `credential`, at
    /// `endpoint` (`None`: the public cloud).
    pub fn new(
        account: impl Into<String>,
        credential: AzureCredential,
        endpoint: Option<String>,
    ) -> AzureConfig {
        AzureConfig {
            account: account.into(),
            credential,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
        }
    }

    /// Azurite at `endpoint` (`http://127.0.0.1:PORT/devstoreaccount1`)
    /// with its well-known account and key.
    pub fn azurite(endpoint: impl Into<String>) -> AzureConfig {
        AzureConfig::new(
            EMULATOR_ACCOUNT,
            AzureCredential::Key(azure_storage::EMULATOR_ACCOUNT_KEY.to_string()),
            Some(endpoint.into()),
        )
    }

    /// The config for `account` from the process environment; see
    /// [`AzureConfig::from_lookup`].
    pub fn from_env(account: &str) -> Result<AzureConfig, String> {
        AzureConfig::from_lookup(account, |name| std::env::var(name).ok())
    }

    /// The config for `account` from variables read through `var` (the
    /// process environment in [`AzureConfig::from_env`]; a map in tests, so
    /// they never touch the real environment):
    ///
    /// - `AZURE_STORAGE_CONNECTION_STRING`: key or SAS, and the blob
    ///   endpoint (`BlobEndpoint`, `EndpointSuffix`, `UseDevelopmentStorage`);
    /// - else `AZURE_STORAGE_KEY`, else `AZURE_STORAGE_SAS_TOKEN`, else
    ///   anonymous;
    /// - `AZURE_STORAGE_ENDPOINT` overrides the endpoint (Azurite and other
    ///   custom endpoints); a query string on it is taken as a SAS token
    ///   when no other credential is set.
    ///
    /// Errors never quote a variable's value, since values hold secrets.
    pub fn from_lookup(
        account: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<AzureConfig, String> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(named) = var("AZURE_STORAGE_ACCOUNT")
            && named != account
            && (var("AZURE_STORAGE_KEY").is_some() || var("AZURE_STORAGE_SAS_TOKEN").is_some())
        {
            return Err(format!(
                "AZURE_STORAGE_ACCOUNT is `{named}` but the target names account `{account}`: \
                 the credentials would not match"
            ));
        }
        let mut cfg = match var("AZURE_STORAGE_CONNECTION_STRING") {
            Some(cs) => from_connection_string(account, &cs)?,
            None => {
                let credential = if let Some(key) = var("AZURE_STORAGE_KEY") {
                    AzureCredential::Key(key.trim().to_string())
                } else if let Some(sas) = var("AZURE_STORAGE_SAS_TOKEN") {
                    AzureCredential::Sas(sas.trim().to_string())
                } else {
                    AzureCredential::Anonymous
                };
                AzureConfig::new(account, credential, None)
            }
        };
        if let Some(endpoint) = var("AZURE_STORAGE_ENDPOINT") {
            let (base, query) = match endpoint.trim().split_once('?') {
                Some((b, q)) => (b.to_string(), Some(q.to_string())),
                None => (endpoint.trim().to_string(), None),
            };
            if let Some(q) = query.filter(|q| !q.is_empty())
                && cfg.credential == AzureCredential::Anonymous
            {
                cfg.credential = AzureCredential::Sas(q);
            }
            cfg.endpoint = Some(base.trim_end_matches('/').to_string());
        }
        Ok(cfg)
    }

    /// The blob service URL requests go to (no query string, so it is safe
    /// to print and to put in the op-log).
    pub fn blob_endpoint(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("https://{}.{PUBLIC_BLOB_SUFFIX}", self.account),
        }
    }
}

/// Reads a connection string. Its parse errors are replaced by our own,
/// which name the variable but never echo its text.
fn from_connection_string(account: &str, text: &str) -> Result<AzureConfig, String> {
    let bad = |why: &str| format!("AZURE_STORAGE_CONNECTION_STRING {why}");
    let cs = azure_storage::ConnectionString::new(text)
        .map_err(|_| bad("is not a valid connection string"))?;
    if cs.use_development_storage == Some(true) {
        let endpoint = cs
            .development_storage_proxy_uri
            .map(|p| format!("{}/{EMULATOR_ACCOUNT}", p.trim_end_matches('/')))
            .unwrap_or_else(|| DEVELOPMENT_STORAGE_ENDPOINT.to_string());
        let mut cfg = AzureConfig::azurite(endpoint);
        cfg.account = account.to_string();
        return Ok(cfg);
    }
    if let Some(named) = cs.account_name
        && named != account
    {
        return Err(bad(&format!(
            "is for account `{named}` but the target names account `{account}`"
        )));
    }
    let credential = match (cs.sas, cs.account_key) {
        (Some(sas), _) => AzureCredential::Sas(sas.to_string()),
        (None, Some(key)) => AzureCredential::Key(key.to_string()),
        (None, None) => AzureCredential::Anonymous,
    };
    let endpoint = match (cs.blob_endpoint, cs.endpoint_suffix) {
        (Some(e), _) => Some(e.to_string()),
        (None, Some(suffix)) => {
            let proto = match cs.default_endpoints_protocol {
                Some(azure_storage::EndpointProtocol::Http) => "http",
                _ => "https",
            };
            Some(format!("{proto}://{account}.blob.{suffix}"))
        }
        (None, None) => None,
    };
    Ok(AzureConfig::new(account, credential, endpoint))
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
    fn key_and_endpoint() {
        let cfg = AzureConfig::from_lookup(
            "devstoreaccount1",
            lookup(&[
                ("AZURE_STORAGE_KEY", "a2V5"),
                (
                    "AZURE_STORAGE_ENDPOINT",
                    "http://127.0.0.1:1234/devstoreaccount1/",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.credential, AzureCredential::Key("a2V5".into()));
        assert_eq!(
            cfg.blob_endpoint(),
            "http://127.0.0.1:1234/devstoreaccount1"
        );
    }

    #[test]
    fn public_cloud_by_default_and_anonymous_without_credentials() {
        let cfg = AzureConfig::from_lookup("acct", lookup(&[])).unwrap();
        assert_eq!(cfg.credential, AzureCredential::Anonymous);
        assert_eq!(cfg.blob_endpoint(), "https://acct.blob.core.windows.net");
    }

    #[test]
    fn sas_from_variable_or_endpoint_query() {
        let cfg =
            AzureConfig::from_lookup("a", lookup(&[("AZURE_STORAGE_SAS_TOKEN", "?sv=1&sig=x")]))
                .unwrap();
        assert_eq!(cfg.credential, AzureCredential::Sas("?sv=1&sig=x".into()));
        let cfg = AzureConfig::from_lookup(
            "a",
            lookup(&[("AZURE_STORAGE_ENDPOINT", "https://h/a?sv=1&sig=y")]),
        )
        .unwrap();
        assert_eq!(cfg.credential, AzureCredential::Sas("sv=1&sig=y".into()));
        assert_eq!(
            cfg.blob_endpoint(),
            "https://h/a",
            "no query in the endpoint"
        );
    }

    #[test]
    fn connection_strings() {
        let cs = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.chinacloudapi.cn";
        let cfg =
            AzureConfig::from_lookup("acct", lookup(&[("AZURE_STORAGE_CONNECTION_STRING", cs)]))
                .unwrap();
        assert_eq!(cfg.credential, AzureCredential::Key("c2VjcmV0".into()));
        assert_eq!(
            cfg.blob_endpoint(),
            "https://acct.blob.core.chinacloudapi.cn"
        );

        let e =
            AzureConfig::from_lookup("other", lookup(&[("AZURE_STORAGE_CONNECTION_STRING", cs)]))
                .unwrap_err();
        assert!(
            e.contains("account `acct`") && !e.contains("c2VjcmV0"),
            "{e}"
        );

        let dev = AzureConfig::from_lookup(
            EMULATOR_ACCOUNT,
            lookup(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "UseDevelopmentStorage=true",
            )]),
        )
        .unwrap();
        assert_eq!(dev.blob_endpoint(), DEVELOPMENT_STORAGE_ENDPOINT);

        let e = AzureConfig::from_lookup(
            "a",
            lookup(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountKey=c2VjcmV0;garbage",
            )]),
        )
        .unwrap_err();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn debug_hides_secrets() {
        let cfg = AzureConfig::new("a", AzureCredential::Key("topsecret".into()), None);
        let text = format!("{cfg:?}");
        assert!(
            !text.contains("topsecret") && text.contains("shared key"),
            "{text}"
        );
    }

    #[test]
    fn mismatched_account_variable() {
        let e = AzureConfig::from_lookup(
            "a",
            lookup(&[("AZURE_STORAGE_ACCOUNT", "b"), ("AZURE_STORAGE_KEY", "k")]),
        )
        .unwrap_err();
        assert!(e.contains("`b`") && e.contains("`a`"), "{e}");
    }
}

//! Variables a controller forwarded to an agent (`--forward-env`), read
//! before the agent's own environment when a store is opened.
//!
//! The values are credentials, so [`EnvOverlay`] shows only variable names
//! in `Debug`; each backend scrubs the secrets it took from it out of error
//! text as it does its own. The process environment is never changed: two
//! sessions, or a store and the agent itself, never see each other's
//! forwarded values.

use std::collections::BTreeMap;
use std::fmt;

/// Forwarded variables, by name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvOverlay(BTreeMap<String, String>);

impl EnvOverlay {
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> EnvOverlay {
        EnvOverlay(vars.into_iter().collect())
    }

    /// The forwarded value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The forwarded names (never the values), for messages.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl From<BTreeMap<String, String>> for EnvOverlay {
    fn from(vars: BTreeMap<String, String>) -> EnvOverlay {
        EnvOverlay(vars)
    }
}

impl fmt::Debug for EnvOverlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: sessions and open options get logged.
        f.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_only() {
        let o = EnvOverlay::from(BTreeMap::from([(
            "AWS_SECRET_ACCESS_KEY".to_string(),
            "hunter22".to_string(),
        )]));
        let text = format!("{o:?}");
        assert!(text.contains("AWS_SECRET_ACCESS_KEY") && !text.contains("hunter22"));
        assert_eq!(o.get("AWS_SECRET_ACCESS_KEY"), Some("hunter22"));
    }

    fn forwarded(pairs: &[(&str, &str)]) -> crate::store::OpenOptions {
        crate::store::OpenOptions {
            timeout: std::time::Duration::from_secs(2),
            env: Some(std::sync::Arc::new(EnvOverlay::new(
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            ))),
            ..Default::default()
        }
    }

    /// Stores read forwarded variables first, and their errors never quote
    /// a forwarded secret (the port is closed, so every op fails).
    #[tokio::test]
    async fn stores_use_forwarded_values_and_hide_them_in_errors() {
        use crate::store::{GetOptions, open};
        const SECRET: &str = "fwd-secret-9b3e1f";
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let opts = forwarded(&[
            ("AWS_ACCESS_KEY_ID", "AKFWD"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_ENDPOINT_URL", &endpoint),
        ]);
        assert_eq!(opts.var("AWS_SECRET_ACCESS_KEY").as_deref(), Some(SECRET));
        assert!(!format!("{opts:?}").contains(SECRET));
        let s3 = open("s3://bkt/p", &opts).await.unwrap();
        let e = s3.get("k", &GetOptions::default()).await.unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(text.contains(&endpoint), "the forwarded endpoint: {text}");
        assert!(!text.contains(SECRET), "{text}");

        let opts = forwarded(&[
            ("AZURE_STORAGE_KEY", SECRET),
            ("AZURE_STORAGE_ENDPOINT", &format!("{endpoint}/acct")),
        ]);
        let az = open("az://acct/c/p", &opts).await;
        let text = match az {
            Ok(store) => {
                let e = store.get("k", &GetOptions::default()).await.unwrap_err();
                format!("{e} {e:?}")
            }
            Err(e) => format!("{e} {e:?}"),
        };
        assert!(!text.contains(SECRET), "{text}");
    }
}

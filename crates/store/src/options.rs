//! Connection options for cloud backends, from config or the environment.

use serde::{Deserialize, Serialize};

/// Endpoint, region and credentials for `s3://` stores. Unset fields fall back to the usual
/// `AWS_*` variables read by `object_store` (and to instance credentials on AWS).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreOptions {
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:8333`; none means AWS itself.
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when neither this nor `AWS_REGION` is set.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    /// Never serialized, so a saved copy of the resolved config holds no secret.
    #[serde(skip_serializing)]
    pub secret_access_key: Option<String>,
    /// Accept a plain `http://` endpoint. Even when set, only loopback hosts are accepted; a
    /// loopback `http://` endpoint is accepted without it, since that traffic never leaves the
    /// machine.
    #[serde(default)]
    pub allow_http: bool,
}

impl std::fmt::Debug for StoreOptions {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl StoreOptions {
    /// Reads `EASEL_S3_ENDPOINT`, `EASEL_S3_REGION`, `EASEL_S3_ACCESS_KEY_ID`,
    /// `EASEL_S3_SECRET_ACCESS_KEY` and `EASEL_S3_ALLOW_HTTP`, each falling back to its usual AWS
    /// variable (`AWS_ENDPOINT_URL`/`AWS_ENDPOINT`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`).
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let first = |keys: &[&str]| {
            keys.iter()
                .find_map(|key| lookup(key).filter(|value| !value.trim().is_empty()))
        };
        let truthy = |value: Option<String>| {
            value.is_some_and(|v| {
                matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")
            })
        };
        Self {
            endpoint: first(&["EASEL_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: first(&["EASEL_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: first(&["EASEL_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"]),
            secret_access_key: first(&["EASEL_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"]),
            allow_http: truthy(first(&["EASEL_S3_ALLOW_HTTP", "AWS_ALLOW_HTTP"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn easel_variables_win_over_aws_ones() {
        let env: HashMap<&str, &str> = [
            ("EASEL_S3_ENDPOINT", "http://127.0.0.1:8333"),
            ("AWS_ENDPOINT", "https://s3.example.com"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "key"),
            ("EASEL_S3_SECRET_ACCESS_KEY", "secret"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into();
        let options = StoreOptions::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(options.region.as_deref(), Some("eu-west-1"));
        assert_eq!(options.access_key_id.as_deref(), Some("key"));
        assert_eq!(options.secret_access_key.as_deref(), Some("secret"));
        assert!(options.allow_http);
        assert!(!format!("{options:?}").contains("secret\""));
    }

    #[test]
    fn empty_environment_gives_defaults() {
        assert_eq!(StoreOptions::from_lookup(|_| None), StoreOptions::default());
    }
}

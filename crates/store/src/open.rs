//! Turns a store URL plus options into an `object_store` backend and a key prefix.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use url::{Host, Url};

use crate::{Error, Result, StoreOptions};

#[derive(Debug)]
pub(crate) struct Backend {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The URL in canonical form (local paths become `file://` URLs).
    pub url: String,
}

/// Request-level retries inside `object_store` (5xx, connection errors, timeouts). Kept short:
/// `put_file_with_retry` adds slower, whole-upload retries on top and reports each one.
fn request_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(60),
    }
}

pub(crate) fn open_backend(url: &str, options: &StoreOptions) -> Result<Backend> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if !url.contains("://") {
        // A bare path is a local folder.
        let path =
            std::path::absolute(url).map_err(Error::io("cannot resolve local store path", url))?;
        return open_local(&path);
    }
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed.to_file_path().map_err(|()| {
                invalid("a file:// url needs an absolute local path, e.g. file:///data/artifacts")
            })?;
            open_local(&path)
        }
        "memory" => Ok(Backend {
            store: Arc::new(InMemory::new()),
            prefix: url_prefix(&parsed, url)?,
            url: url.to_owned(),
        }),
        "s3" | "s3a" => open_s3(&parsed, url, options),
        "gs" => cloud_backend(
            GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_retry(request_retry())
                .build(),
            &parsed,
            url,
        ),
        "az" | "azure" | "abfs" | "abfss" => cloud_backend(
            MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_retry(request_retry())
                .build(),
            &parsed,
            url,
        ),
        other => Err(invalid(&format!(
            "unsupported scheme `{other}` (use file://, s3://, gs://, az:// or memory://)"
        ))),
    }
}

fn open_local(path: &std::path::Path) -> Result<Backend> {
    std::fs::create_dir_all(path).map_err(Error::io("cannot create local store folder", path))?;
    // Writes go to a staging file that is renamed into place, so readers never see partial
    // files; fsync makes a finished write survive a crash the way an S3 PUT does.
    let store = LocalFileSystem::new_with_prefix(path)
        .map_err(|source| Error::Configure {
            url: path.display().to_string(),
            source,
        })?
        .with_fsync(true)
        .with_automatic_cleanup(true);
    let url = Url::from_directory_path(path)
        .map(String::from)
        .unwrap_or_else(|()| format!("file://{}", path.display()));
    Ok(Backend {
        store: Arc::new(store),
        prefix: Path::default(),
        url,
    })
}

fn open_s3(parsed: &Url, url: &str, options: &StoreOptions) -> Result<Backend> {
    let bucket = parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::InvalidUrl {
            url: url.to_owned(),
            reason: "missing bucket: use s3://bucket/prefix".into(),
        })?;
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(request_retry());

    let endpoint = options
        .endpoint
        .clone()
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    if let Some(endpoint) = &endpoint {
        let allow_http = check_endpoint(endpoint, options.allow_http)?;
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(allow_http)
            // S3-compatible servers are addressed as <endpoint>/<bucket>/<key>.
            .with_virtual_hosted_style_request(false);
    }
    let region = options
        .region
        .clone()
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Region))
        .unwrap_or_else(|| "us-east-1".to_owned());
    builder = builder.with_region(region);
    let has_key = options.access_key_id.is_some()
        || builder
            .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
            .is_some();
    if endpoint.is_some() && !has_key {
        // Without keys object_store would ask the cloud metadata service (169.254.169.254),
        // which an S3-compatible server elsewhere never backs.
        return Err(Error::InvalidUrl {
            url: url.to_owned(),
            reason: "a custom S3 endpoint needs credentials: set EASEL_S3_ACCESS_KEY_ID and \
                     EASEL_S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
                .into(),
        });
    }
    if let Some(key) = &options.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &options.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    cloud_backend(builder.build(), parsed, url)
}

/// Wraps a built cloud store (S3, GCS, Azure) with the key prefix taken from the URL path.
fn cloud_backend(
    built: object_store::Result<impl ObjectStore>,
    parsed: &Url,
    url: &str,
) -> Result<Backend> {
    let store = built.map_err(|source| Error::Configure {
        url: url.to_owned(),
        source,
    })?;
    Ok(Backend {
        store: Arc::new(store),
        prefix: url_prefix(parsed, url)?,
        url: url.to_owned(),
    })
}

/// Checks an S3 endpoint and returns whether plain http must be allowed for it.
fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<bool> {
    let parsed = Url::parse(endpoint).map_err(|e| Error::InvalidUrl {
        url: endpoint.to_owned(),
        reason: format!("endpoint must be a full url such as https://s3.example.com ({e})"),
    })?;
    match parsed.scheme() {
        "https" => Ok(allow_http),
        "http" if is_loopback(&parsed) => Ok(true),
        "http" => Err(Error::InsecureEndpoint {
            endpoint: endpoint.to_owned(),
        }),
        other => Err(Error::InvalidUrl {
            url: endpoint.to_owned(),
            reason: format!("endpoint scheme `{other}` is not http or https"),
        }),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn url_prefix(parsed: &Url, url: &str) -> Result<Path> {
    Path::from_url_path(parsed.path()).map_err(|e| Error::InvalidUrl {
        url: url.to_owned(),
        reason: format!("bad key prefix: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_to_loopback() {
        assert!(check_endpoint("http://127.0.0.1:8333", false).unwrap());
        assert!(check_endpoint("http://localhost:8333", false).unwrap());
        assert!(check_endpoint("http://[::1]:8333", false).unwrap());
        let err = check_endpoint("http://10.0.0.5:8333", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only allowed to a loopback host"), "{err}");
        assert!(!check_endpoint("https://s3.example.com", false).unwrap());
        assert!(check_endpoint("127.0.0.1:8333", false).is_err());
    }

    #[test]
    fn s3_url_needs_bucket_and_keeps_prefix() {
        let options = StoreOptions {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            ..Default::default()
        };
        let backend = open_backend("s3://bucket/team/easel", &options).unwrap();
        assert_eq!(backend.prefix.as_ref(), "team/easel");
        let err = open_s3(&Url::parse("s3:///x").unwrap(), "s3:///x", &options).unwrap_err();
        assert!(err.to_string().contains("missing bucket"), "{err}");
    }

    #[test]
    fn custom_endpoint_without_keys_is_refused() {
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
            return; // the environment supplies keys; nothing to check here
        }
        let options = StoreOptions {
            endpoint: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        };
        let err = open_backend("s3://bucket", &options)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs credentials"), "{err}");
    }

    #[test]
    fn unknown_scheme_is_named() {
        let err = open_backend("ftp://host/x", &StoreOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unsupported scheme `ftp`"), "{err}");
    }
}

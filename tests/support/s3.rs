//! The loopback S3 server the S3 tests share (its settings: `easel_test_support::S3Settings`), as
//! the worker and client are told about it, and stores on it.

pub use easel_test_support::skip_requested;

use easel_store::{ArtifactStore, StoreOptions};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

#[derive(Clone)]
pub struct S3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3 {
    /// The shared loopback server, or None when EASEL_SKIP_S3=1; panics with how to start it.
    pub fn shared(what: &str) -> Option<S3> {
        let settings = easel_test_support::S3Settings::shared(what)?;
        Some(S3 {
            endpoint: settings.endpoint,
            bucket: settings.bucket,
            access_key_id: settings.access_key_id,
            secret_access_key: settings.secret_access_key,
        })
    }

    /// What the worker and client read: credentials never go on a command line.
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("EASEL_S3_ENDPOINT", self.endpoint.as_str()),
            ("EASEL_S3_ACCESS_KEY_ID", self.access_key_id.as_str()),
            (
                "EASEL_S3_SECRET_ACCESS_KEY",
                self.secret_access_key.as_str(),
            ),
        ]
    }

    /// A fresh prefix in the bucket, so runs never see each other's objects.
    pub fn unique_url(&self, what: &str) -> String {
        format!(
            "s3://{}/{}",
            self.bucket,
            easel_test_support::S3Settings::unique_prefix(what)
        )
    }

    /// An artifact store on this server.
    pub fn store(&self, url: &str) -> ArtifactStore {
        let options = StoreOptions {
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some(self.access_key_id.clone()),
            secret_access_key: Some(self.secret_access_key.clone()),
            ..StoreOptions::default()
        };
        ArtifactStore::open(url, &options).unwrap()
    }

    /// The raw bucket, for putting objects the way another tool would.
    pub fn bucket_store(&self) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region("us-east-1")
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .build()
            .unwrap()
    }
}

//! The loopback S3 server the S3 tests share (its settings: `easel_test_support::S3Settings`), as
//! the worker and client are told about it, and stores on it.

pub use easel_test_support::skip_requested;

use easel_store::{ArtifactStore, StoreOptions};
use easel_test_support::S3Settings;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

/// The server's settings plus what the e2e tests do with them.
#[derive(Clone)]
pub struct S3(pub S3Settings);

impl std::ops::Deref for S3 {
    type Target = S3Settings;

    fn deref(&self) -> &S3Settings {
        &self.0
    }
}

impl S3 {
    /// The shared loopback server, or None when EASEL_SKIP_S3=1; panics with how to start it.
    pub fn shared(what: &str) -> Option<S3> {
        S3Settings::shared(what).map(S3)
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
        format!("s3://{}/{}", self.bucket, S3Settings::unique_prefix(what))
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

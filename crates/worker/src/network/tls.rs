//! The worker's TLS identity: a certificate given in worker.toml, or a self-signed pair made at
//! first start in `<data_dir>/tls/`. Clients pin the certificate's SHA-256 fingerprint, which the
//! worker prints and stores in `<data_dir>/tls/fingerprint`, so trust is set up over the channel
//! the user already trusts (SSH, the console) instead of a certificate authority.

use anyhow::Context;
use easel_spec::worker::TlsConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};

pub struct TlsIdentity {
    pub identity: tonic::transport::Identity,
    /// `sha256:<64 hex digits>` of the leaf certificate's DER bytes.
    pub fingerprint: String,
    pub fingerprint_path: PathBuf,
    pub created: bool,
}

/// The identity to serve: the configured PEM pair, else the self-signed one (made if absent).
pub fn load_or_create(data_dir: &Path, config: &TlsConfig) -> anyhow::Result<TlsIdentity> {
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let (cert_path, key_path, created) = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
        _ => {
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            let created = !(cert.is_file() && key.is_file());
            if created {
                write_self_signed(&cert, &key)?;
            }
            (cert, key, created)
        }
    };
    let cert_pem = std::fs::read_to_string(&cert_path)
        .with_context(|| format!("failed to read the TLS certificate {}", cert_path.display()))?;
    let key_pem = std::fs::read_to_string(&key_path)
        .with_context(|| format!("failed to read the TLS key {}", key_path.display()))?;
    let leaf = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .with_context(|| format!("{} holds no PEM certificate", cert_path.display()))?;
    let fingerprint = easel_proto::pinning::fingerprint_of(&leaf);
    let fingerprint_path = dir.join("fingerprint");
    std::fs::write(&fingerprint_path, format!("{fingerprint}\n"))
        .with_context(|| format!("failed to write {}", fingerprint_path.display()))?;
    Ok(TlsIdentity {
        identity: tonic::transport::Identity::from_pem(cert_pem, key_pem),
        fingerprint,
        fingerprint_path,
        created,
    })
}

fn write_self_signed(cert: &Path, key: &Path) -> anyhow::Result<()> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    let pair = rcgen::generate_simple_self_signed(names)
        .context("failed to make a self-signed TLS certificate")?;
    write_private(key, pair.signing_key.serialize_pem().as_bytes())?;
    let partial = cert.with_extension("pem.partial");
    std::fs::write(&partial, pair.cert.pem())
        .and_then(|()| std::fs::rename(&partial, cert))
        .with_context(|| format!("failed to write {}", cert.display()))
}

/// Written beside and renamed, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    easel_store::private_file::write_private(path, bytes)
        .with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_pair_is_made_once_and_its_fingerprint_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &TlsConfig::default()).unwrap();
        assert!(first.created);
        assert!(first.fingerprint.starts_with("sha256:") && first.fingerprint.len() == 71);
        let second = load_or_create(dir.path(), &TlsConfig::default()).unwrap();
        assert!(!second.created);
        assert_eq!(first.fingerprint, second.fingerprint);
        let stored = std::fs::read_to_string(dir.path().join("tls/fingerprint")).unwrap();
        assert_eq!(stored.trim(), first.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls/key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

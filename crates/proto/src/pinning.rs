//! Trusting a worker by its certificate's SHA-256 fingerprint (read over SSH or from the
//! worker's console), not by a certificate authority: the self-signed certificate a worker makes
//! at its first start is accepted exactly when its fingerprint is the pinned one. The worker
//! prints and stores the fingerprint ([`fingerprint_of`]), the client pins it
//! ([`PinnedCertificate`]): one spelling for both ends.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// `sha256:` and 64 lowercase hex digits, as the worker prints it.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex = text.trim().strip_prefix("sha256:").unwrap_or(text.trim());
    let hex: String = hex.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return Err(format!(
            "`{text}` is not a certificate fingerprint (sha256: and 64 hex digits, as the worker prints it)"
        ));
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("`{text}` is not a certificate fingerprint (hex digits only)"))?;
    }
    Ok(bytes)
}

/// The fingerprint of a certificate (its DER bytes), as the worker prints it.
pub fn fingerprint_of(der: &[u8]) -> String {
    format_fingerprint(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

pub fn format_fingerprint(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Accepts exactly the certificate whose fingerprint was pinned.
#[derive(Debug)]
pub struct PinnedCertificate {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl PinnedCertificate {
    pub fn new(fingerprint: [u8; 32]) -> Arc<Self> {
        Arc::new(PinnedCertificate {
            fingerprint,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// The cryptography it verifies with, for a TLS configuration of its own.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.provider.clone()
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if found.as_ref() == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the worker's certificate has fingerprint {}, not the pinned {}: this is not the worker you pinned (or it has a new certificate); check the fingerprint in <data-dir>/tls/fingerprint on the worker",
                format_fingerprint(found.as_ref()),
                format_fingerprint(&self.fingerprint)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_as_the_worker_prints_them() {
        let text = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(parse_fingerprint(&text).unwrap(), [0xab; 32]);
        assert_eq!(format_fingerprint(&[0xab; 32]), text);
        assert!(parse_fingerprint("sha256:abc").is_err());
        assert!(parse_fingerprint(&format!("sha256:{}", "zz".repeat(32))).is_err());
    }
}

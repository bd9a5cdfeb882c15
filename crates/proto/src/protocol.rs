//! What both ends of the wire agree on beyond the messages: the protocol version and how it is
//! compared, the metadata keys every call carries, the client's interceptor that adds them, and
//! the checksum upload chunks carry.

use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::{Request, Status};

/// Bumped whenever a message or RPC changes incompatibly. Client and worker must agree.
pub const PROTOCOL_VERSION: u32 = 4;

/// Most digests one MissingBlobs call may ask about (about 1.1 MB of request): a client asks
/// in batches, so no request grows with the dataset.
pub const MAX_DIGESTS_PER_QUERY: usize = 16_384;

/// Most chunks one UploadBlobs message may carry: small files travel many to a message (one
/// message per file costs more than the file), and this bounds what the framing adds to a
/// message's data.
pub const MAX_CHUNKS_PER_MESSAGE: usize = 512;

/// What a message's framing may add to its chunks' data: each chunk's digest, sizes and
/// checksum (under 128 bytes), plus room for the message itself.
pub const MESSAGE_OVERHEAD_BYTES: usize = 64 * 1024 + MAX_CHUNKS_PER_MESSAGE * 128;

/// Metadata key carrying the client's [`PROTOCOL_VERSION`] on every call.
pub const PROTOCOL_HEADER: &str = "x-easel-protocol";

/// Metadata key of the access token, sent as `Bearer <token>`.
pub const AUTHORIZATION_HEADER: &str = "authorization";

const BEARER: &str = "Bearer ";

/// The message either side gives when versions differ: `worker` names the worker as the reader
/// sees it ("this worker", "the worker at host:port").
pub fn incompatible(
    client_version: impl std::fmt::Display,
    worker: &str,
    worker_version: impl std::fmt::Display,
) -> String {
    format!(
        "incompatible protocol: the client speaks easel protocol {client_version}, {worker} speaks \
         {worker_version}; use a client and worker from the same release"
    )
}

/// The worker's check of a call's protocol header (a call without one is let through: gRPC
/// health probes and plain tools send none).
pub fn check_protocol_header(metadata: &MetadataMap) -> Result<(), Status> {
    let Some(version) = metadata.get(PROTOCOL_HEADER) else {
        return Ok(());
    };
    let theirs = version.to_str().unwrap_or("?");
    if theirs.parse::<u32>().ok() == Some(PROTOCOL_VERSION) {
        Ok(())
    } else {
        Err(Status::failed_precondition(incompatible(
            theirs,
            "this worker",
            PROTOCOL_VERSION,
        )))
    }
}

/// The token a call presents, if any.
pub fn presented_token(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get(AUTHORIZATION_HEADER)?
        .to_str()
        .ok()?
        .strip_prefix(BEARER)
        .map(str::trim)
}

/// The client's interceptor: adds the access token (when there is one) and the protocol
/// version to every call.
#[derive(Clone, Default)]
pub struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
}

impl Credentials {
    /// Credentials presenting `token`; refused when the token holds characters HTTP/2 metadata
    /// cannot carry.
    pub fn new(token: Option<&str>) -> Result<Credentials, InvalidToken> {
        let authorization = match token {
            Some(token) => Some(
                format!("{BEARER}{}", token.trim())
                    .parse()
                    .map_err(|_| InvalidToken)?,
            ),
            None => None,
        };
        Ok(Credentials { authorization })
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert(AUTHORIZATION_HEADER, value.clone());
        }
        request
            .metadata_mut()
            .insert(PROTOCOL_HEADER, PROTOCOL_VERSION.into());
        Ok(request)
    }
}

/// A token with characters that cannot be sent as metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidToken;

impl std::fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the token contains characters that cannot be sent")
    }
}

impl std::error::Error for InvalidToken {}

/// CRC-32C (Castagnoli) of an upload chunk's data, as `BlobChunk.crc32c` carries it.
pub fn chunk_checksum(data: &[u8]) -> u32 {
    // A 32-bit CRC: the cast drops nothing.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn credentials_carry_the_token_and_the_version_the_worker_checks() {
        let mut credentials = Credentials::new(Some(" secret \n")).unwrap();
        let request = credentials.call(Request::new(())).unwrap();
        assert_eq!(presented_token(request.metadata()), Some("secret"));
        assert!(check_protocol_header(request.metadata()).is_ok());
        let anonymous = Credentials::default().call(Request::new(())).unwrap();
        assert_eq!(presented_token(anonymous.metadata()), None);
        assert_eq!(
            Credentials::new(Some("bad\u{7}token")).err(),
            Some(InvalidToken)
        );
    }

    #[test]
    fn another_version_is_refused_naming_both() {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert(PROTOCOL_HEADER, "99".parse().unwrap());
        let status = check_protocol_header(request.metadata()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            format!(
                "incompatible protocol: the client speaks easel protocol 99, this worker speaks \
                 {PROTOCOL_VERSION}; use a client and worker from the same release"
            )
        );
    }

    #[test]
    fn the_chunk_checksum_is_crc32c() {
        // The check value of CRC-32C (RFC 3720, B.4).
        assert_eq!(chunk_checksum(b"123456789"), 0xe306_9283);
    }
}

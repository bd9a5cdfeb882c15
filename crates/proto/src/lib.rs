//! Easel's gRPC protocol: the messages generated from `proto/easel/v1/*.proto`; in [`events`]
//! their conversion to and from the one event vocabulary; in [`protocol`] what both sides agree
//! on beyond the messages (version, metadata keys, the client's interceptor, the chunk checksum);
//! in [`status`] the one table between error kinds and gRPC status codes; in [`job_state`] the
//! names of job states; in [`transport`] the HTTP/2 settings both ends share.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("easel.v1");
}

pub mod events;
pub mod job_state;
pub mod pinning;
pub mod protocol;
pub mod status;
pub mod transport;

pub use protocol::{PROTOCOL_HEADER, PROTOCOL_VERSION};

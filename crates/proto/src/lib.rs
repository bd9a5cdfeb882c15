//! Easel's gRPC protocol: the messages generated from `proto/easel/v1/*.proto`, and in
//! [`protocol`] what both sides agree on beyond them (version, metadata keys, the client's
//! interceptor, the chunk checksum).

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("easel.v1");
}

pub mod protocol;

pub use protocol::{PROTOCOL_HEADER, PROTOCOL_VERSION};

//! Easel's gRPC protocol, generated from `proto/easel/v1/*.proto`. No logic beyond the version
//! constants both sides compare.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("easel.v1");
}

/// Bumped whenever a message or RPC changes incompatibly. Client and worker must agree.
pub const PROTOCOL_VERSION: u32 = 1;

/// Metadata key carrying the client's `PROTOCOL_VERSION` on every call.
pub const PROTOCOL_HEADER: &str = "x-easel-protocol";

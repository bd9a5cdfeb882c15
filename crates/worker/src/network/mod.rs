//! What faces the network: the gRPC adapter and its server, the connections it admits, the TLS
//! identity, serving artifacts to `client fetch`, and records turned into protocol messages.

pub mod connections;
pub(crate) mod convert;
pub mod fetch;
pub(crate) mod grpc;
mod grpc_sweeps;
pub(crate) mod server;
pub mod tls;

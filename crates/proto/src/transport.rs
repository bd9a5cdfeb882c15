//! HTTP/2 settings both ends of a connection share.

/// HTTP/2 flow-control window of one stream: how much a peer may send on it before the receiver
/// acknowledges. The protocol's default, 64 KiB, would hold an upload or a fetch over a link of
/// 50 ms round trip to about 1 MB/s a stream; 8 MiB keeps a long fat link full. The worker
/// receives uploads with it, the client receives fetches.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;

/// HTTP/2 flow-control window of a whole connection: room for several streams in flight (the
/// client uploads over a few at once) at [`STREAM_WINDOW_BYTES`] each.
pub const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

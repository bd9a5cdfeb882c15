//! Caps on the connections the worker serves at once, in all and from one IP address.
//!
//! Every connection holds a socket and HTTP/2 buffers whatever it sends, so without a cap a
//! flood of them (or of TLS handshakes that never finish) would exhaust the worker's file
//! descriptors and memory and shut out everyone else. A connection past a cap is closed as it
//! arrives; its slot comes back when a served one closes.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// How many connections may be served at once.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub total: usize,
    pub per_address: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The connections being served, shared by the accept loop and every connection's slot.
#[derive(Debug, Clone)]
pub struct ConnectionCounter {
    limits: ConnectionLimits,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionCounter {
    pub fn new(limits: ConnectionLimits) -> Self {
        ConnectionCounter {
            limits,
            counts: Arc::default(),
        }
    }

    /// A slot for a connection from `address`, or why there is none.
    pub fn admit(&self, address: IpAddr) -> Result<Slot, &'static str> {
        let mut counts = self.counts.lock().expect("connection counts poisoned");
        if counts.total >= self.limits.total {
            return Err("limits.max_connections");
        }
        let from_address = counts.per_address.entry(address).or_default();
        if *from_address >= self.limits.per_address {
            return Err("limits.max_connections_per_address");
        }
        *from_address += 1;
        counts.total += 1;
        Ok(Slot {
            address,
            counts: self.counts.clone(),
        })
    }

    /// Connections being served now.
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .expect("connection counts poisoned")
            .total
    }
}

/// One served connection's place in the counts, given back when it is dropped.
#[derive(Debug)]
pub struct Slot {
    address: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("connection counts poisoned");
        counts.total -= 1;
        if let Some(from_address) = counts.per_address.get_mut(&self.address) {
            *from_address -= 1;
            if *from_address == 0 {
                counts.per_address.remove(&self.address);
            }
        }
    }
}

/// A TCP connection holding its slot for as long as the server keeps it.
pub struct CountedConnection {
    stream: TcpStream,
    _slot: Slot,
}

/// The accepted connections of `incoming` that fit under the caps; the rest are closed at once.
pub fn admitted(
    incoming: TcpIncoming,
    counter: ConnectionCounter,
) -> impl Stream<Item = io::Result<CountedConnection>> {
    incoming.filter_map(move |accepted| {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => return Some(Err(error)),
        };
        let peer = stream
            .peer_addr()
            .map(|address| address.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        match counter.admit(peer) {
            Ok(slot) => Some(Ok(CountedConnection {
                stream,
                _slot: slot,
            })),
            Err(limit) => {
                tracing::warn!(%peer, limit, "connection closed: the worker serves no more at once");
                None
            }
        }
    })
}

impl Connected for CountedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CountedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for CountedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_in_all_and_per_address_and_come_back_when_dropped() {
        let counter = ConnectionCounter::new(ConnectionLimits {
            total: 3,
            per_address: 2,
        });
        let first = IpAddr::from([10, 0, 0, 1]);
        let second = IpAddr::from([10, 0, 0, 2]);
        let a = counter.admit(first).unwrap();
        let _b = counter.admit(first).unwrap();
        assert_eq!(
            counter.admit(first).unwrap_err(),
            "limits.max_connections_per_address"
        );
        let _c = counter.admit(second).unwrap();
        assert_eq!(counter.admit(second).unwrap_err(), "limits.max_connections");
        drop(a);
        assert_eq!(counter.open(), 2);
        let _d = counter.admit(first).unwrap();
        assert_eq!(counter.open(), 3);
    }
}

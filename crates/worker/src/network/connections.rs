//! Caps on the connections the worker serves at once, in all and from one IP address (one
//! IPv6 /64), and deadlines that close connections which are not a client's.
//!
//! Every connection holds a socket and HTTP/2 buffers whatever it sends, so without a cap a
//! flood of them (or of TLS handshakes that never finish) would exhaust the worker's file
//! descriptors and memory and shut out everyone else. A connection past a cap is closed as it
//! arrives; its slot comes back when a served one closes.
//!
//! A cap alone lets a few peers that connect and then say nothing hold every slot for good:
//! HTTP/2 keepalive starts only after the client's preface, and TCP keepalive is answered by the
//! peer's kernel. So a connection that sends no request within `limits.first_request_timeout_seconds`
//! of being accepted, or makes no request with a valid token within
//! `limits.authentication_timeout_seconds`, is closed. Health checks need no token by design:
//! they count as requests but never as authentication, so a peer cannot hold a slot by
//! watching health. A connection that has presented a valid token once is a client's and no
//! deadline applies to it any more (HTTP/2 keepalive then drops a peer that is gone).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// How many connections may be served at once.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub total: usize,
    /// Per IPv4 address, per IPv6 /64 (see [`address_group`]).
    pub per_address: usize,
    /// A connection that has sent no request this long after it was accepted is closed.
    pub first_request: Duration,
    /// A connection that has made no request with a valid token this long after it was
    /// accepted is closed, whatever else it sends.
    pub authentication: Duration,
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
        let address = address_group(address);
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

/// What a peer counts under for `limits.max_connections_per_address`: an IPv4 address itself
/// (an IPv4-mapped IPv6 address as that IPv4 address), an IPv6 address as its /64. One IPv6 host
/// is routinely given a whole /64 (SLAAC, privacy addresses), so counting exact addresses would
/// let one machine take every slot with addresses of its own prefix.
pub fn address_group(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        },
    }
}

/// One served connection's place in the counts, given back when it is dropped.
#[derive(Debug)]
pub struct Slot {
    /// The [`address_group`] it counts under.
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

/// What a connection has done so far. The request handlers find it in each request's
/// extensions (tonic puts the connection's [`Connected::ConnectInfo`] there) and report progress;
/// the connection's IO reads it to decide which deadline applies.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    tcp: TcpConnectInfo,
    progress: Arc<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    requested: AtomicBool,
    authenticated: AtomicBool,
}

impl ConnectionInfo {
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.tcp.remote_addr
    }

    /// A request arrived on this connection (any request, health checks included).
    pub fn note_request(&self) {
        self.progress.requested.store(true, Ordering::Release);
    }

    /// A request on this connection presented a valid token: it is a client's connection, and
    /// neither deadline applies to it any more.
    pub fn note_authenticated(&self) {
        self.progress.requested.store(true, Ordering::Release);
        self.progress.authenticated.store(true, Ordering::Release);
    }

    fn requested(&self) -> bool {
        self.progress.requested.load(Ordering::Acquire)
    }

    fn authenticated(&self) -> bool {
        self.progress.authenticated.load(Ordering::Acquire)
    }
}

/// Which deadline closed a connection: the config key that sets it, and what the log says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadline {
    key: &'static str,
    what: &'static str,
}

const FIRST_REQUEST: Deadline = Deadline {
    key: "limits.first_request_timeout_seconds",
    what: "it sent no request in time",
};

const AUTHENTICATION: Deadline = Deadline {
    key: "limits.authentication_timeout_seconds",
    what: "it made no request with a valid token in time",
};

/// The deadlines of a connection not yet authenticated.
struct Deadlines {
    first_request: Instant,
    authentication: Instant,
    timer: Pin<Box<Sleep>>,
    /// The deadline that closed the connection, once one has: every later read and write fails.
    expired: Option<Deadline>,
}

impl Deadlines {
    fn new(limits: &ConnectionLimits) -> Deadlines {
        let accepted = Instant::now();
        let first_request = accepted + limits.first_request;
        Deadlines {
            first_request,
            authentication: accepted + limits.authentication,
            timer: Box::pin(tokio::time::sleep_until(first_request)),
            expired: None,
        }
    }

    /// Ready with the deadline that has passed for a connection that has done what `info` says;
    /// otherwise registers a wake-up for the next one.
    fn poll_expired(&mut self, info: &ConnectionInfo, context: &mut Context<'_>) -> Poll<Deadline> {
        if let Some(expired) = self.expired {
            return Poll::Ready(expired);
        }
        let (at, deadline) = if info.requested() || self.authentication <= self.first_request {
            (self.authentication, AUTHENTICATION)
        } else {
            (self.first_request, FIRST_REQUEST)
        };
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
        ready!(self.timer.as_mut().poll(context));
        self.expired = Some(deadline);
        Poll::Ready(deadline)
    }
}

/// A TCP connection holding its slot for as long as the server keeps it, closed by its own
/// reads and writes failing once a deadline passes before it is authenticated.
pub struct CountedConnection {
    stream: TcpStream,
    info: ConnectionInfo,
    /// `None` once the connection is authenticated.
    deadlines: Option<Deadlines>,
    /// Given back as soon as a deadline closes the connection, before the peer can see it
    /// closed, so whoever it blocked can be served the moment it is gone.
    slot: Option<Slot>,
}

impl CountedConnection {
    fn new(stream: TcpStream, slot: Slot, limits: &ConnectionLimits) -> CountedConnection {
        CountedConnection {
            info: ConnectionInfo {
                tcp: stream.connect_info(),
                progress: Arc::default(),
            },
            stream,
            deadlines: Some(Deadlines::new(limits)),
            slot: Some(slot),
        }
    }

    /// Ready with the error every read and write gives once a deadline has passed.
    fn poll_closed(&mut self, context: &mut Context<'_>) -> Poll<io::Error> {
        let expired = self.deadlines.as_ref().is_some_and(|d| d.expired.is_some());
        if self.info.authenticated() && !expired {
            self.deadlines = None;
        }
        let Some(deadlines) = &mut self.deadlines else {
            return Poll::Pending;
        };
        let first_time = deadlines.expired.is_none();
        let deadline = ready!(deadlines.poll_expired(&self.info, context));
        if first_time {
            self.slot = None;
            let peer = self.info.remote_addr().map(|address| address.ip());
            tracing::info!(
                peer = %peer.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                limit = deadline.key,
                "connection closed: {}",
                deadline.what
            );
        }
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connection closed: {} ({})", deadline.what, deadline.key),
        ))
    }
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
            Ok(slot) => Some(Ok(CountedConnection::new(stream, slot, &counter.limits))),
            Err(limit) => {
                tracing::warn!(%peer, limit, "connection closed: the worker serves no more at once");
                None
            }
        }
    })
}

/// Notes every request on its connection, health checks included (as a server-wide layer:
/// `tonic::service::InterceptorLayer::new(connections::note_request)`).
pub fn note_request(request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(connection) = request.extensions().get::<ConnectionInfo>() {
        connection.note_request();
    }
    Ok(request)
}

impl Connected for CountedConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for CountedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Poll::Ready(closed) = self.poll_closed(context) {
            return Poll::Ready(Err(closed));
        }
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for CountedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(closed) = self.poll_closed(context) {
            return Poll::Ready(Err(closed));
        }
        Pin::new(&mut self.stream).poll_write(context, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(closed) = self.poll_closed(context) {
            return Poll::Ready(Err(closed));
        }
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

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(total: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            total,
            per_address,
            first_request: Duration::from_secs(10),
            authentication: Duration::from_secs(30),
        }
    }

    #[test]
    fn slots_are_capped_in_all_and_per_address_and_come_back_when_dropped() {
        let counter = ConnectionCounter::new(limits(3, 2));
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

    #[test]
    fn ipv6_peers_count_per_64_and_mapped_ipv4_as_the_ipv4_address() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(address_group(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(address_group(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(
            address_group(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        let counter = ConnectionCounter::new(limits(10, 2));
        // Two addresses of one /64 take its two slots; a third address of it gets none.
        let _a = counter.admit(ip("2001:db8:1:2::1")).unwrap();
        let _b = counter.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            counter.admit(ip("2001:db8:1:2:1234::")).unwrap_err(),
            "limits.max_connections_per_address"
        );
        // The neighbouring /64 is another network.
        let c = counter.admit(ip("2001:db8:1:3::1")).unwrap();
        // An IPv4 peer counts the same whichever way the socket shows it; its slot is given
        // back under the group it was taken in.
        let _d = counter.admit(ip("10.0.0.1")).unwrap();
        let e = counter.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert!(counter.admit(ip("10.0.0.1")).is_err());
        drop(e);
        drop(c);
        let _f = counter.admit(ip("10.0.0.1")).unwrap();
        let _g = counter.admit(ip("2001:db8:1:3::2")).unwrap();
        assert_eq!(counter.open(), 5);
    }

    /// The worker's end of a fresh loopback connection, counted under `counter`, and the peer's.
    async fn accepted(counter: &ConnectionCounter) -> (CountedConnection, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, from) = listener.accept().await.unwrap();
        let slot = counter.admit(from.ip()).unwrap();
        (CountedConnection::new(stream, slot, &counter.limits), peer)
    }

    /// What the worker's next read on `connection` gives: bytes, or the error closing it.
    async fn next_read(connection: &mut CountedConnection) -> io::Result<Vec<u8>> {
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(60), connection.read(&mut buffer))
            .await
            .expect("the connection was neither read nor closed");
        read.map(|length| buffer[..length].to_vec())
    }

    #[tokio::test]
    async fn a_connection_that_sends_no_request_is_closed_at_the_first_request_deadline() {
        let counter = ConnectionCounter::new(ConnectionLimits {
            first_request: Duration::from_millis(100),
            ..limits(4, 4)
        });
        let (mut connection, _peer) = accepted(&counter).await;
        let error = next_read(&mut connection).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            error
                .to_string()
                .contains("it sent no request in time (limits.first_request_timeout_seconds)"),
            "{error}"
        );
        // Writes fail the same way, and the slot is back before the server drops it.
        assert!(connection.write_all(b"x").await.is_err());
        assert_eq!(counter.open(), 0);
    }

    #[tokio::test]
    async fn requests_without_a_valid_token_keep_a_connection_only_until_the_authentication_deadline()
     {
        let counter = ConnectionCounter::new(ConnectionLimits {
            first_request: Duration::from_millis(50),
            authentication: Duration::from_millis(300),
            ..limits(4, 4)
        });
        let (mut connection, _peer) = accepted(&counter).await;
        // A health check: a request, but no token. The connection then lives past the first
        // request deadline, and no longer than the authentication one.
        connection.connect_info().note_request();
        let error = next_read(&mut connection).await.unwrap_err();
        assert!(
            error.to_string().contains(
                "it made no request with a valid token in time (limits.authentication_timeout_seconds)"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_authenticated_connection_outlives_both_deadlines() {
        let counter = ConnectionCounter::new(ConnectionLimits {
            first_request: Duration::from_millis(50),
            authentication: Duration::from_millis(100),
            ..limits(4, 4)
        });
        let (mut client, mut client_peer) = accepted(&counter).await;
        client.connect_info().note_authenticated();
        // Accepted after the client's with the same limits: once its deadline has passed, so
        // have the client's.
        let (mut stranger, _stranger_peer) = accepted(&counter).await;
        stranger.connect_info().note_request();
        next_read(&mut stranger).await.unwrap_err();
        client_peer.write_all(b"job").await.unwrap();
        assert_eq!(next_read(&mut client).await.unwrap(), b"job");
        client.write_all(b"ok").await.unwrap();
        assert_eq!(counter.open(), 1);
        drop(stranger);
    }
}

//! hickory's connections, with a closed connection reported as closed.
//!
//! A name server that closes a kept TCP connection (dnsmasq after 100
//! queries on one connection, Consul and BIND when it sits idle) leaves
//! hickory's pool holding a handle whose background task has ended. The next
//! query on it fails at once with `NetError::Busy` (its request channel is
//! closed), which hickory 0.26 treats as server backpressure: it drops the
//! connection but first sleeps a 20 ms backoff before connecting again.
//! Every answer that needs TCP after such a close paid those 20 ms, as the
//! p99 of the 100-record benchmark showed.
//!
//! [`Provider`] wraps hickory's own connections and reports that `Busy` as
//! a closed connection (`ConnectionAborted`), for which hickory reconnects
//! at once and resends. This is sound because Caravan never makes a live
//! connection busy: [`MAX_ACTIVE_REQUESTS`] is above the number of lookups
//! that can be in flight, and a request handed to a live connection always
//! has room in its queue (each sender keeps a slot of its own), so `Busy`
//! can only mean "closed".

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;

use futures_util::stream::{Stream, StreamExt};
use hickory_resolver::config::ConnectionConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::{DnsExchange, DnsHandle};
use hickory_resolver::net::NetError;
use hickory_resolver::proto::op::{DnsRequest, DnsResponse};
use hickory_resolver::{ConnectionProvider, PoolContext};

use super::lookup::MAX_IN_FLIGHT;

/// Requests one connection may carry at once: above [`MAX_IN_FLIGHT`], so
/// Caravan's own load never meets hickory's per-connection limit (32 by
/// default), whose `Busy` would otherwise be read as "closed".
pub const MAX_ACTIVE_REQUESTS: usize = 2 * MAX_IN_FLIGHT;

/// hickory's connection provider for tokio, with [`Conn`] handles.
#[derive(Clone, Default)]
pub struct Provider(TokioRuntimeProvider);

impl ConnectionProvider for Provider {
    type Conn = Conn;
    type FutureConn = Pin<Box<dyn Future<Output = Result<Conn, NetError>> + Send + 'static>>;
    type RuntimeProvider = TokioRuntimeProvider;

    fn new_connection(
        &self,
        ip: IpAddr,
        config: &ConnectionConfig,
        cx: &PoolContext,
    ) -> Result<Self::FutureConn, NetError> {
        let connecting = self.0.new_connection(ip, config, cx)?;
        Ok(Box::pin(async move { connecting.await.map(Conn) }))
    }

    fn runtime_provider(&self) -> &TokioRuntimeProvider {
        &self.0
    }
}

/// One of hickory's connections; see the module documentation.
#[derive(Clone)]
pub struct Conn(DnsExchange<TokioRuntimeProvider>);

/// The answers to one request on a [`Conn`].
pub type Responses = Pin<Box<dyn Stream<Item = Result<DnsResponse, NetError>> + Send>>;

impl DnsHandle for Conn {
    type Response = Responses;
    type Runtime = TokioRuntimeProvider;

    fn send(&self, request: DnsRequest) -> Responses {
        Box::pin(self.0.send(request).map(closed_if_busy))
    }
}

/// `Busy` from a connection means it has closed (see the module docs).
fn closed_if_busy(result: Result<DnsResponse, NetError>) -> Result<DnsResponse, NetError> {
    match result {
        Err(NetError::Busy) => Err(NetError::from(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the name server closed the connection",
        ))),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_reads_as_a_closed_connection_and_nothing_else_changes() {
        let closed = closed_if_busy(Err(NetError::Busy)).unwrap_err();
        assert!(closed.is_connection_closed(), "{closed:?}");
        let timeout = closed_if_busy(Err(NetError::Timeout)).unwrap_err();
        assert!(matches!(timeout, NetError::Timeout));
    }
}

//! Accepting connections with bounds, so that what an unauthenticated peer can hold open is capped
//! before any request is parsed: a connection that has not sent its request headers within
//! `header_read_timeout` is closed; no peer address holds more than `max_connections_per_ip`
//! connections and the process no more than `max_connections` — a connection over either cap is
//! closed as soon as it is accepted, so idle sockets cannot pile up in the kernel's queue or use up
//! the file descriptors while others wait.
//!
//! hyper serves each connection (HTTP/1.1 and HTTP/2, `hyper_util`'s auto builder); the peer address
//! reaches handlers and layers as axum's `ConnectInfo`. On shutdown the listener closes at once and the
//! connections finish their in-flight requests (graceful shutdown).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The bounds of [`serve`]; from the `server` section of the config.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Open connections at most, over all peers.
    pub max_connections: usize,
    /// Open connections at most from one peer address.
    pub max_connections_per_ip: usize,
    /// How long a connection may take to send a request's headers.
    pub header_read_timeout: Duration,
}

/// Open connections, in all and per peer address.
#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection's place in [`OpenConnections`], given back when it closes.
struct Admitted {
    open: Arc<Mutex<OpenConnections>>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(count) = open.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A place for a new connection from `ip`, or `None` when a cap is reached.
fn admit(open: &Arc<Mutex<OpenConnections>>, ip: IpAddr, limits: &ConnectionLimits) -> Option<Admitted> {
    let mut guard = open.lock().unwrap_or_else(|e| e.into_inner());
    let from_ip = guard.per_ip.get(&ip).copied().unwrap_or(0);
    if guard.total >= limits.max_connections || from_ip >= limits.max_connections_per_ip {
        return None;
    }
    guard.total += 1;
    *guard.per_ip.entry(ip).or_insert(0) += 1;
    Some(Admitted { open: open.clone(), ip })
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then waits for the open
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    let mut refused_logged = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait a little rather than spin; the accept is retried.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = admit(&open, peer.ip(), &limits) else {
            if !std::mem::replace(&mut refused_logged, true) {
                tracing::warn!(peer = %peer.ip(), "connection cap reached: refusing new connections while it lasts");
            }
            drop(stream);
            continue;
        };
        refused_logged = false;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = TowerToHyperService::new(app.map_request(move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            request
        }));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the peer's (reset, timed out, malformed); nothing to do but close.
            let _ = connection.await;
            drop(admitted);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cap_refuses_once_reached_and_frees_on_close() {
        let limits =
            ConnectionLimits { max_connections: 3, max_connections_per_ip: 2, header_read_timeout: Duration::ZERO };
        let open = Arc::new(Mutex::new(OpenConnections::default()));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let first = admit(&open, a, &limits).unwrap();
        let _second = admit(&open, a, &limits).unwrap();
        assert!(admit(&open, a, &limits).is_none(), "per address");
        let _third = admit(&open, b, &limits).unwrap();
        assert!(admit(&open, b, &limits).is_none(), "in all");
        drop(first);
        assert!(admit(&open, b, &limits).is_some(), "a closed connection frees its place");
        assert_eq!(open.lock().unwrap().per_ip.len(), 2);
    }
}

//! Serving a role's router on a listener (ingest's API, the edge's viewers and internal link, every admin
//! port) so that a client cannot hold a connection without sending a request:
//!
//! - **headers**: a request's headers must be complete within `--header-timeout-ms`, counted from the
//!   connection's accept (a connection that sends nothing is closed then too) or, on a kept-alive connection,
//!   from the next request's first byte; else the connection is closed.
//! - **body**: a body the handler reads must have arrived whole within `--body-timeout-ms` of its headers;
//!   else the answer is `408` (`urn:chorus:problem:request-timeout`) and the connection is closed.
//! - **idle**: a kept-alive connection with no request under way is closed after `--idle-timeout-ms`.
//! - **pending**: a connection is pending from its accept until its first request's headers are complete;
//!   past `--max-pending-per-address` pending from one client address (an IPv6 one by its /64), or
//!   `--max-pending` on the listener, a new connection is closed at once. Half-open connections thus count
//!   against their own address and cannot keep anyone else out.
//!
//! The pending cap's counting is in [`pending`]; the rest (the accept loop, each connection's watchdog and
//! the body timer) is here.
//!
//! Only reading the request is timed: a response (an SSE stream, a long-poll's wait) and an upgraded
//! WebSocket run as long as their handlers want.
//!
//! Why not hyper's `header_read_timeout`: its timer also runs while a kept-alive connection waits for its next
//! request, so it cannot give a short header timeout and a longer idle one. Why not tower-http's body
//! timeout: it restarts at every frame, so a body trickled a byte at a time never times out.

mod pending;

pub use pending::client_key;
use pending::{Pending, PendingGuard};

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::serve::Listener;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::metrics::Metrics;
use crate::problem::Problem;

/// How long a client may take to send its request, and how many connections may wait for one. Every role
/// flattens these into its options; they apply to each of its listeners.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// A request's headers must be complete this long after the connection's accept (or, on a kept-alive
    /// connection, after the request's first byte); else the connection is closed.
    #[arg(long, env = "CHORUS_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// A request's body must have arrived whole this long after its headers; else `408`.
    #[arg(long, env = "CHORUS_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// A kept-alive connection with no request under way is closed after this long.
    #[arg(long, env = "CHORUS_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Most connections from one client address (an IPv6 one by its /64) that have not sent their first
    /// request's headers yet; more from that address are closed at once. Not lower: a burst of viewers
    /// connecting at once from one address (a NAT, a reconnect after a drain) is pending for a moment too.
    #[arg(long, env = "CHORUS_MAX_PENDING_PER_ADDRESS", default_value_t = 256)]
    pub max_pending_per_address: usize,
    /// Most such connections on one listener, from all addresses.
    #[arg(long, env = "CHORUS_MAX_PENDING", default_value_t = 4_096)]
    pub max_pending: usize,
}

/// What a role serves its listeners with: the limits of its [`ServeArgs`] and its connection metrics.
#[derive(Debug, Clone)]
pub struct Server {
    limits: Arc<Limits>,
    metrics: ServeMetrics,
}

#[derive(Debug)]
struct Limits {
    header: Duration,
    body: Duration,
    idle: Duration,
    per_address: usize,
    total: usize,
}

impl Server {
    /// Registers `chorus_<role>_connections_*` in `registry`; call once per role.
    pub fn new(
        args: &ServeArgs,
        registry: &Registry,
        role: &str,
    ) -> Result<Self, prometheus::Error> {
        // A zero timeout would close every connection at once: at least a millisecond.
        let ms = |value: u64| Duration::from_millis(value.max(1));
        Ok(Server {
            limits: Arc::new(Limits {
                header: ms(args.header_timeout_ms),
                body: ms(args.body_timeout_ms),
                idle: ms(args.idle_timeout_ms),
                per_address: args.max_pending_per_address.max(1),
                total: args.max_pending.max(1),
            }),
            metrics: ServeMetrics::register(registry, role)?,
        })
    }

    /// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting and waits for the
    /// connections' requests under way (hyper's graceful shutdown). `name` labels the listener's metrics
    /// (`public`, `internal`, `admin`). Handlers see the client's address as `ConnectInfo<SocketAddr>`.
    pub fn serve<L>(
        &self,
        mut listener: L,
        name: &'static str,
        router: Router,
        shutdown: CancellationToken,
    ) -> impl Future<Output = io::Result<()>> + Send + 'static
    where
        L: Listener<Addr = SocketAddr>,
    {
        let limits = self.limits.clone();
        let metrics = self.metrics.listener(name);
        async move {
            let pending = Arc::new(Pending::new(&limits, metrics.pending.clone()));
            let connections = TaskTracker::new();
            loop {
                let (io, addr) = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = shutdown.cancelled() => break,
                };
                let Some(guard) = pending.admit(addr.ip(), &metrics) else {
                    // Closed at once: this address (or everyone) has enough connections waiting to send.
                    drop(io);
                    continue;
                };
                let connection = Connection {
                    addr,
                    router: router.clone(),
                    limits: limits.clone(),
                    metrics: metrics.clone(),
                    watch: Arc::new(Watch::new(guard)),
                };
                connections.spawn(connection.run(io, shutdown.clone()));
            }
            drop(listener);
            connections.close();
            connections.wait().await;
            Ok(())
        }
    }
}

/// The metrics of every listener of a role, by listener.
#[derive(Debug, Clone)]
struct ServeMetrics {
    timed_out: IntCounterVec,
    pending: IntGaugeVec,
    refused: IntCounterVec,
}

impl ServeMetrics {
    fn register(registry: &Registry, role: &str) -> Result<Self, prometheus::Error> {
        let m = Metrics::new(registry);
        Ok(ServeMetrics {
            timed_out: m.counter_vec(
                &format!("chorus_{role}_connections_timed_out_total"),
                "Connections closed (or answered 408) because the client was too slow to send its request, by \
                 listener and phase (headers, body, idle)",
                &["listener", "phase"],
            )?,
            pending: m.gauge_vec(
                &format!("chorus_{role}_connections_pending"),
                "Connections that have not sent their first request's headers yet, by listener",
                &["listener"],
            )?,
            refused: m.counter_vec(
                &format!("chorus_{role}_connections_refused_pending_total"),
                "Connections closed at accept because too many were pending, by listener and limit (address, \
                 total)",
                &["listener", "limit"],
            )?,
        })
    }

    fn listener(&self, name: &str) -> ListenerMetrics {
        let timed_out = |phase| self.timed_out.with_label_values(&[name, phase]);
        let refused = |limit| self.refused.with_label_values(&[name, limit]);
        ListenerMetrics {
            headers_timed_out: timed_out("headers"),
            body_timed_out: timed_out("body"),
            idle_timed_out: timed_out("idle"),
            pending: self.pending.with_label_values(&[name]),
            refused_address: refused("address"),
            refused_total: refused("total"),
        }
    }
}

/// One listener's metrics, their labels resolved once.
#[derive(Debug, Clone)]
struct ListenerMetrics {
    headers_timed_out: IntCounter,
    body_timed_out: IntCounter,
    idle_timed_out: IntCounter,
    pending: IntGauge,
    refused_address: IntCounter,
    refused_total: IntCounter,
}

/// What a connection is doing, which decides its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's headers to be complete: `--header-timeout-ms`.
    Headers,
    /// A request is with its handler, or its response is being written: no deadline.
    Busy,
    /// Kept alive between requests: `--idle-timeout-ms`.
    Idle,
    /// Closed or upgraded: no longer watched.
    Done,
}

/// One connection's phase and since when, shared by its reads, its requests and its watchdog.
#[derive(Debug)]
struct Watch {
    state: Mutex<(Phase, Instant)>,
    changed: Notify,
    pending: Mutex<Option<PendingGuard>>,
}

impl Watch {
    fn new(guard: PendingGuard) -> Self {
        Watch {
            state: Mutex::new((Phase::Headers, Instant::now())),
            changed: Notify::new(),
            pending: Mutex::new(Some(guard)),
        }
    }

    fn current(&self) -> (Phase, Instant) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `to` if the connection is in `from` (any phase but `Done` when `from` is `None`).
    fn enter(&self, from: Option<Phase>, to: Phase) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let allowed = match from {
            Some(from) => state.0 == from,
            None => state.0 != Phase::Done,
        };
        if allowed {
            *state = (to, Instant::now());
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: on an idle connection they start the next request, whose headers are now timed.
    fn received(&self) {
        self.enter(Some(Phase::Idle), Phase::Headers);
    }

    /// A request's headers are complete: the connection is no longer pending.
    fn request_started(&self) {
        drop(
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.enter(None, Phase::Busy);
    }

    fn response_written(&self) {
        self.enter(Some(Phase::Busy), Phase::Idle);
    }

    fn finish(&self) {
        self.enter(None, Phase::Done);
        drop(
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Resolves with the phase whose time ran out; never while a request is busy.
    async fn expired(&self, limits: &Limits) -> Phase {
        loop {
            // Created before the state is read, so that a change in between is not missed.
            let changed = self.changed.notified();
            let (phase, since) = self.current();
            let limit = match phase {
                Phase::Headers => limits.header,
                Phase::Idle => limits.idle,
                Phase::Busy | Phase::Done => {
                    changed.await;
                    continue;
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(since + limit) => {
                    if self.current() == (phase, since) {
                        return phase;
                    }
                }
                () = changed => {}
            }
        }
    }
}

/// One accepted connection: its requests, served by hyper, and its watchdog.
struct Connection {
    addr: SocketAddr,
    router: Router,
    limits: Arc<Limits>,
    metrics: ListenerMetrics,
    watch: Arc<Watch>,
}

impl Connection {
    async fn run<I>(self, io: I, shutdown: CancellationToken)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let watch = self.watch.clone();
        let (limits, metrics, addr) = (self.limits.clone(), self.metrics.clone(), self.addr);
        let io = TokioIo::new(Watched {
            io,
            watch: watch.clone(),
        });
        let handler = Arc::new(self);
        let service = hyper::service::service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(request).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The watchdog below times headers: hyper's own timer would also cut idle kept-alive connections.
        builder.header_read_timeout(None);
        let mut connection = pin!(builder.serve_connection(io, service).with_upgrades());
        let mut draining = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %addr, "connection ended with an error");
                    }
                    break;
                }
                () = shutdown.cancelled(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
                phase = watch.expired(&limits) => {
                    // Dropping the connection closes it.
                    let counter = match phase {
                        Phase::Idle => &metrics.idle_timed_out,
                        _ => &metrics.headers_timed_out,
                    };
                    counter.inc();
                    tracing::debug!(?phase, %addr, "connection timed out");
                    break;
                }
            }
        }
        watch.finish();
    }

    /// One request whose headers are complete: to the router with a timed body; a `408` instead of its
    /// answer if the body timed out.
    async fn handle(&self, request: Request<Incoming>) -> Response<WatchedBody> {
        self.watch.request_started();
        let timed_out = Arc::new(AtomicBool::new(false));
        let mut request = request.map(|body| {
            if body.is_end_stream() {
                Body::new(body)
            } else {
                Body::new(TimedBody {
                    inner: body,
                    deadline: Box::pin(tokio::time::sleep(self.limits.body)),
                    timed_out: timed_out.clone(),
                    counter: self.metrics.body_timed_out.clone(),
                })
            }
        });
        request.extensions_mut().insert(ConnectInfo(self.addr));
        let response = match self.router.clone().call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let response = if timed_out.load(Ordering::Relaxed) {
            body_timed_out(self.limits.body)
        } else {
            response
        };
        response.map(|inner| WatchedBody {
            inner,
            watch: self.watch.clone(),
        })
    }
}

/// The answer to a request whose body did not arrive in time; the connection closes after it.
fn body_timed_out(limit: Duration) -> Response<Body> {
    let mut response = Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "request-timeout",
        "Request timeout",
        format!(
            "the request body did not arrive within {} ms",
            limit.as_millis()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A connection's socket, telling its watch when bytes arrive.
struct Watched<I> {
    io: I,
    watch: Arc<Watch>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.watch.received();
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A request body that must arrive whole by a deadline (not per frame: a trickled body times out too).
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
    counter: IntCounter,
}

/// Why a request body ended early: it did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl TimedBody {
    fn time_out(&self) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if !self.timed_out.swap(true, Ordering::Relaxed) {
            self.counter.inc();
        }
        Poll::Ready(Some(Err(BodyTimedOut.into())))
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.deadline.is_elapsed() {
            return this.time_out();
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => this.time_out(),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells its connection's watch when hyper is done with it (written, or abandoned).
struct WatchedBody {
    inner: Body,
    watch: Arc<Watch>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.watch.response_written();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Bound of every wait in these tests.
    const WAIT: Duration = Duration::from_secs(5);

    struct Served {
        addr: SocketAddr,
        registry: Registry,
        shutdown: CancellationToken,
    }

    impl Drop for Served {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    /// `/echo` answers its body; `/stream` writes a chunk every 100 ms for 1.2 s (longer than every timeout).
    async fn serve(flags: &[&str]) -> Served {
        let args: ServeArgs = crate::parse_args(flags).expect("serve args");
        let registry = Registry::new();
        let server = Server::new(&args, &registry, "test").expect("metrics");
        let router = Router::new()
            .route("/echo", post(|body: Bytes| async move { body }))
            .route("/stream", get(|| async { Body::from_stream(chunks()) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        tokio::spawn(server.serve(listener, "public", router, shutdown.clone()));
        Served {
            addr,
            registry,
            shutdown,
        }
    }

    fn chunks() -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
        futures_util::stream::unfold(0, |n| async move {
            if n == 12 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok(Bytes::from("tick\n")), n + 1))
        })
    }

    /// Everything the server sends until it closes the connection (a reset counts as a close).
    async fn until_closed(stream: &mut (impl AsyncRead + Unpin)) -> String {
        let mut all = Vec::new();
        let read = tokio::time::timeout(WAIT, async {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        });
        read.await
            .expect("the server closes the connection in time");
        String::from_utf8_lossy(&all).into_owned()
    }

    fn sample(served: &Served, name: &str, labels: &[(&str, &str)]) -> f64 {
        served
            .registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric())
            .filter(|metric| {
                labels.iter().all(|(k, v)| {
                    metric
                        .get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|metric| metric.get_counter().get_value() + metric.get_gauge().get_value())
            .sum()
    }

    const SHORT: &[&str] = &[
        "--header-timeout-ms=300",
        "--body-timeout-ms=300",
        "--idle-timeout-ms=900",
    ];

    #[tokio::test]
    async fn silent_and_half_sent_headers_are_closed_after_the_header_timeout() {
        let served = serve(SHORT).await;
        let started = Instant::now();
        let mut silent = TcpStream::connect(served.addr).await.expect("connect");
        let mut half = TcpStream::connect(served.addr).await.expect("connect");
        half.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        assert_eq!(until_closed(&mut silent).await, "");
        assert_eq!(until_closed(&mut half).await, "");
        assert!(started.elapsed() >= Duration::from_millis(250));
        let timed_out = [("listener", "public"), ("phase", "headers")];
        assert_eq!(
            sample(
                &served,
                "chorus_test_connections_timed_out_total",
                &timed_out
            ),
            2.0
        );
        assert_eq!(sample(&served, "chorus_test_connections_pending", &[]), 0.0);
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_whole_is_answered_408() {
        let served = serve(SHORT).await;
        let requests: [&[u8]; 3] = [
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
        ];
        for request in requests {
            let mut stream = TcpStream::connect(served.addr).await.expect("connect");
            stream.write_all(request).await.expect("write");
            let answer = until_closed(&mut stream).await;
            // A problem document (its content type is `Problem`'s to test).
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(
                answer.contains("urn:chorus:problem:request-timeout"),
                "{answer}"
            );
        }
        let timed_out = [("phase", "body")];
        assert_eq!(
            sample(
                &served,
                "chorus_test_connections_timed_out_total",
                &timed_out
            ),
            3.0
        );
    }

    #[tokio::test]
    async fn a_body_trickled_faster_than_the_timeout_per_byte_still_times_out_whole() {
        let served = serve(SHORT).await;
        let stream = TcpStream::connect(served.addr).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        let started = Instant::now();
        // A byte every 100 ms (a third of the body timeout) would take 3 s for the whole body.
        let trickle = tokio::spawn(async move {
            let head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n";
            writer.write_all(head).await.expect("write");
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if writer.write_all(b"x").await.is_err() {
                    return;
                }
            }
        });
        let answer = until_closed(&mut reader).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "whole-body deadline"
        );
        trickle.abort();
    }

    #[tokio::test]
    async fn a_kept_alive_connection_lives_its_idle_timeout_not_the_header_one() {
        let served = serve(SHORT).await;
        let mut stream = TcpStream::connect(served.addr).await.expect("connect");
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let answered = Instant::now();
        // Past the header timeout, the idle connection is still open...
        let early = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
        assert!(early.is_err(), "closed before the idle timeout");
        // ...until its idle timeout.
        assert_eq!(until_closed(&mut stream).await, "");
        assert!(answered.elapsed() >= Duration::from_millis(850));
        let timed_out = [("phase", "idle")];
        assert_eq!(
            sample(
                &served,
                "chorus_test_connections_timed_out_total",
                &timed_out
            ),
            1.0
        );
    }

    #[tokio::test]
    async fn a_response_longer_than_every_timeout_is_not_cut() {
        let served = serve(SHORT).await;
        let mut stream = TcpStream::connect(served.addr).await.expect("connect");
        stream
            .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let answer = until_closed(&mut stream).await;
        assert_eq!(answer.matches("tick").count(), 12, "{answer}");
    }

    #[tokio::test]
    async fn past_the_pending_cap_an_address_is_closed_at_once_until_one_sends_its_request() {
        let served = serve(&["--max-pending-per-address=2"]).await;
        let mut first = TcpStream::connect(served.addr).await.expect("connect");
        let _second = TcpStream::connect(served.addr).await.expect("connect");
        let pending = [("listener", "public")];
        let counted = async {
            while sample(&served, "chorus_test_connections_pending", &pending) < 2.0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(WAIT, counted)
            .await
            .expect("both pending");
        let started = Instant::now();
        let mut third = TcpStream::connect(served.addr).await.expect("connect");
        assert_eq!(until_closed(&mut third).await, "");
        assert!(started.elapsed() < Duration::from_secs(2), "closed at once");
        let refused = [("limit", "address")];
        assert_eq!(
            sample(
                &served,
                "chorus_test_connections_refused_pending_total",
                &refused
            ),
            1.0
        );

        // A connection whose request is under way no longer counts.
        first
            .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        tokio::time::timeout(WAIT, first.read(&mut buf))
            .await
            .expect("response starts")
            .expect("read");
        assert_eq!(
            sample(&served, "chorus_test_connections_pending", &pending),
            1.0
        );
        let mut fourth = TcpStream::connect(served.addr).await.expect("connect");
        fourth
            .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        assert!(until_closed(&mut fourth).await.starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn addresses_count_by_ipv4_address_and_ipv6_slash_64() {
        let key = |s: &str| client_key(s.parse().expect("ip"));
        assert_eq!(key("192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
    }
}

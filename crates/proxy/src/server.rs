//! Serving with graceful shutdown: readiness turns 503, the listener closes,
//! in-flight requests and streams finish (bounded by the drain timeout).
//!
//! Connections are served thread-per-core: one single-threaded runtime per CPU,
//! all accepting from the same listener; a connection is served from accept to
//! close by one thread (the one that accepted it, or a less loaded one it was
//! handed to, see [`Balance`]). A request then never changes thread: the client
//! connection, the handler, and the pooled upstream connection (one pool per
//! thread, see `gateway::transport`) are polled by the same thread, so a proxied
//! request costs no cross-thread wake-up (a futex call and, when the other CPU
//! sleeps, an inter-processor interrupt) and its memory is freed where it was
//! allocated. A work-stealing runtime woke a second worker for every request.

use crate::state::AppState;
use axum::body::Body;
use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct ServeOptions {
    pub drain_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Serving,
    /// Stop accepting; let open connections finish.
    Draining,
    /// The drain timeout passed: close everything.
    Abort,
}

/// Serving threads: one per CPU, or `TOKIO_WORKER_THREADS` (tokio's own knob
/// for its worker count) when set.
fn serving_threads() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// Serve until `shutdown` resolves, then drain. Returns `Ok(true)` when every
/// connection finished within the drain timeout.
pub async fn serve<S, B>(
    state: Arc<AppState>,
    app: S,
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<bool>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = listener.into_std()?;
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let mut finished = Vec::new();
    let threads = serving_threads();
    // How many threads have no connection of their own left. A thread's
    // runtime may still drive connections other threads' requests use (the
    // reqwest transport and the OAuth token client pool across threads), so
    // no runtime is dropped before every thread has drained.
    let (drained_tx, drained_rx) = watch::channel(0usize);
    let drained_tx = Arc::new(drained_tx);
    let mut inboxes = Vec::with_capacity(threads);
    let mut balance = Balance {
        live: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
        inboxes: Vec::with_capacity(threads),
    };
    for _ in 0..threads {
        let (tx, rx) = mpsc::unbounded_channel();
        balance.inboxes.push(tx);
        inboxes.push(rx);
    }
    let balance = Arc::new(balance);
    for (i, inbox) in inboxes.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = listener.try_clone()?;
        let app = app.clone();
        let phase = phase_rx.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let drained_tx = drained_tx.clone();
        let mut drained_rx = drained_rx.clone();
        let seat = Seat {
            index: i,
            balance: balance.clone(),
            inbox,
        };
        std::thread::Builder::new()
            .name(format!("liter-llm-serve-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut abort = phase.clone();
                    serve_on_this_thread(listener, seat, app, phase).await;
                    drained_tx.send_modify(|n| *n += 1);
                    tokio::select! {
                        _ = drained_rx.wait_for(|n| *n >= threads) => {}
                        _ = abort.wait_for(|p| *p == Phase::Abort) => {}
                    }
                });
                // Dropping the runtime closes whatever is still open.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        finished.push(done_rx);
    }
    drop(listener);
    drop(phase_rx);
    drop(drained_rx);
    if let Some(h) = &state.health {
        h.clone().spawn();
    }
    state.mark_ready();
    shutdown.await;
    state.start_draining();
    tracing::info!(
        "shutdown requested: readiness is now 503, no new connections; draining in-flight requests"
    );
    let _ = phase_tx.send(Phase::Draining);
    let all_finished = async {
        for done in finished {
            let _ = done.await;
        }
    };
    let clean = tokio::select! {
        _ = all_finished => true,
        _ = tokio::time::sleep(opts.drain_timeout) => {
            tracing::warn!("drain timeout of {} s reached; closing the remaining connections", opts.drain_timeout.as_secs());
            let _ = phase_tx.send(Phase::Abort);
            false
        }
    };
    state.layers.shutdown();
    Ok(clean)
}

/// How many connections each serving thread holds, and where to hand one to.
///
/// Every thread is woken by a new connection and the first to run accepts it,
/// often all of a burst: 16 streams opened at once all landed on one thread,
/// and a wrk run at c=64 split its connections about 64/36. A thread holding
/// more than one connection above the least loaded one hands the new
/// connection over; a balanced proxy hands over none.
struct Balance {
    live: Vec<AtomicUsize>,
    inboxes: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
}

/// One serving thread's place in the [`Balance`].
struct Seat {
    index: usize,
    balance: Arc<Balance>,
    inbox: mpsc::UnboundedReceiver<std::net::TcpStream>,
}

impl Seat {
    /// The thread that should serve a new connection (its count already
    /// raised), this one unless another holds at least two fewer.
    fn place(&self) -> usize {
        let live = &self.balance.live;
        let mine = live[self.index].load(Ordering::Relaxed);
        let (least, fewest) = live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|(_, n)| *n)
            .unwrap_or((self.index, mine));
        let target = if mine > fewest + 1 { least } else { self.index };
        live[target].fetch_add(1, Ordering::Relaxed);
        target
    }

    fn hand_over(&self, target: usize, tcp: TcpStream) -> Result<(), TcpStream> {
        let std = match tcp.into_std() {
            Ok(std) => std,
            Err(e) => {
                tracing::debug!("cannot hand a connection over: {e}");
                self.balance.live[target].fetch_sub(1, Ordering::Relaxed);
                return Ok(());
            }
        };
        match self.balance.inboxes[target].send(std) {
            Ok(()) => Ok(()),
            // That thread has stopped serving: serve it here after all.
            Err(returned) => {
                self.balance.live[target].fetch_sub(1, Ordering::Relaxed);
                match TcpStream::from_std(returned.0) {
                    Ok(tcp) => {
                        self.balance.live[self.index].fetch_add(1, Ordering::Relaxed);
                        Err(tcp)
                    }
                    Err(e) => {
                        tracing::debug!("cannot take a connection back: {e}");
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Lowers a thread's connection count when the connection it counts ends.
struct Counted(Arc<Balance>, usize);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.live[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One serving thread: accept, serve each connection on this thread (or hand
/// it to a less loaded one), and on drain stop accepting and wait for this
/// thread's connections (as axum's `serve` does), unless told to abort.
async fn serve_on_this_thread<S, B>(
    listener: std::net::TcpListener,
    mut seat: Seat,
    app: S,
    mut phase: watch::Receiver<Phase>,
) where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot serve on this thread: {e}");
            return;
        }
    };
    let mut builder = Builder::new(TokioExecutor::new());
    // As axum's `serve`: the CONNECT protocol for HTTP/2 upgrades.
    builder.http2().enable_connect_protocol();
    // Connections watch `signal_tx` to learn about the drain; this thread
    // watches `close_tx` to learn that they are all gone.
    let (signal_tx, signal_rx) = watch::channel(());
    let (close_tx, close_rx) = watch::channel(());
    let mut inbox_open = true;
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let target = seat.place();
                    if target == seat.index {
                        tcp
                    } else {
                        match seat.hand_over(target, tcp) {
                            Ok(()) => continue,
                            Err(tcp) => tcp,
                        }
                    }
                }
                Err(e) => {
                    handle_accept_error(e).await;
                    continue;
                }
            },
            handed = seat.inbox.recv(), if inbox_open => match handed.map(TcpStream::from_std) {
                Some(Ok(tcp)) => tcp,
                Some(Err(e)) => {
                    tracing::debug!("cannot take a connection over: {e}");
                    seat.balance.live[seat.index].fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
                None => {
                    inbox_open = false;
                    continue;
                }
            },
            _ = phase.wait_for(|p| *p != Phase::Serving) => break,
        };
        let counted = Counted(seat.balance.clone(), seat.index);
        // Small JSON answers must not wait for a delayed ACK (Nagle).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("set_nodelay failed: {e}");
        }
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|req: Request<Incoming>| req.map(Body::new)),
        );
        let builder = builder.clone();
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let _counted = counted;
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            let mut conn = std::pin::pin!(conn);
            let mut draining = std::pin::pin!(signal_tx.closed().fuse());
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!("connection ended with an error: {e}");
                        }
                        break;
                    }
                    _ = &mut draining => conn.as_mut().graceful_shutdown(),
                }
            }
            drop(close_rx);
        });
    }
    drop(listener);
    // Connections handed over but not yet taken are closed now, as the
    // listener's own queue is.
    drop(seat);
    drop(signal_rx);
    drop(close_rx);
    tokio::select! {
        _ = close_tx.closed() => {}
        _ = phase.wait_for(|p| *p == Phase::Abort) => {}
    }
}

/// As axum's `serve`: a connection that failed before it was accepted is the
/// client's problem; anything else (out of file descriptors) is logged and
/// retried after a pause rather than spun on.
async fn handle_accept_error(e: std::io::Error) {
    if matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn seats(live: &[usize]) -> Vec<Seat> {
        let mut inboxes = Vec::new();
        let mut senders = Vec::new();
        for _ in live {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            inboxes.push(rx);
        }
        let balance = Arc::new(Balance {
            live: live.iter().map(|n| AtomicUsize::new(*n)).collect(),
            inboxes: senders,
        });
        inboxes
            .into_iter()
            .enumerate()
            .map(|(index, inbox)| Seat {
                index,
                balance: balance.clone(),
                inbox,
            })
            .collect()
    }

    fn counts(seat: &Seat) -> Vec<usize> {
        seat.balance
            .live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn a_burst_accepted_by_one_thread_is_spread_over_all() {
        let seats = seats(&[0, 0, 0]);
        // Thread 0 wins every accept of a burst of 30 connections.
        let handed = (0..30).filter(|_| seats[0].place() != 0).count();
        let live = counts(&seats[0]);
        assert!(live.iter().all(|n| (9..=11).contains(n)), "{live:?}");
        assert!(handed >= 18, "{handed}");
    }

    #[test]
    fn a_balanced_thread_keeps_its_connections() {
        let seats = seats(&[5, 4, 5]);
        assert_eq!(seats[0].place(), 0);
        assert_eq!(counts(&seats[0]), [6, 4, 5]);
        // Now two above the least loaded: the next one goes there.
        assert_eq!(seats[0].place(), 1);
        assert_eq!(counts(&seats[0]), [6, 5, 5]);
    }
}

//! Serving with graceful shutdown: readiness turns 503, the listener closes,
//! in-flight requests and streams finish (bounded by the drain timeout).

use crate::state::AppState;
use axum::serve::ListenerExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct ServeOptions {
    pub drain_timeout: Duration,
}

/// Serve until `shutdown` resolves, then drain. Returns `Ok(true)` when every
/// connection finished within the drain timeout.
pub async fn serve(
    state: Arc<AppState>,
    app: axum::Router,
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<bool> {
    let listener = listener.tap_io(|tcp| {
        // Small JSON answers must not wait for a delayed ACK (Nagle).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("set_nodelay failed: {e}");
        }
    });
    let (drain_started_tx, drain_started_rx) = tokio::sync::oneshot::channel::<()>();
    let signal_state = state.clone();
    let graceful = async move {
        shutdown.await;
        signal_state.start_draining();
        tracing::info!("shutdown requested: readiness is now 503, no new connections; draining in-flight requests");
        let _ = drain_started_tx.send(());
    };
    if let Some(h) = &state.health {
        h.clone().spawn();
    }
    state.mark_ready();
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    let drain_deadline = async move {
        if drain_started_rx.await.is_ok() {
            tokio::time::sleep(opts.drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let clean = tokio::select! {
        r = server => { r?; true }
        _ = drain_deadline => {
            tracing::warn!("drain timeout of {} s reached; closing the remaining connections", opts.drain_timeout.as_secs());
            false
        }
    };
    state.layers.shutdown();
    Ok(clean)
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

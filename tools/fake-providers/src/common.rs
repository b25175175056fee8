//! Plumbing every fake shares: the request log behind `requests()` and
//! `GET /__requests`, the queue of faults the next requests consume, and the
//! server task bound to `127.0.0.1:0` that stops when the fake is dropped.

use axum::Router;
use http::HeaderMap;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide later requests.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds `127.0.0.1:<free port>`.
pub(crate) async fn bind_local() -> std::io::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await
}

/// A fake's server task; dropping it stops the server.
pub(crate) struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `app` on `listener` on the current tokio runtime.
    pub(crate) fn spawn(listener: TcpListener, app: Router) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Server { addr, task })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every request a fake received, in arrival order.
pub(crate) struct Recorder<R>(Mutex<Vec<R>>);

impl<R: Clone> Recorder<R> {
    pub(crate) fn new() -> Self {
        Recorder(Mutex::new(Vec::new()))
    }

    pub(crate) fn push(&self, request: R) {
        lock(&self.0).push(request);
    }

    pub(crate) fn all(&self) -> Vec<R> {
        lock(&self.0).clone()
    }

    /// The body of `GET /__requests`: every request as JSON, oldest first.
    pub(crate) fn to_json(&self, one: impl Fn(&R) -> Value) -> Value {
        Value::Array(lock(&self.0).iter().map(one).collect())
    }
}

/// Faults queued for the next requests; each request consumes one.
pub(crate) struct FaultQueue<F>(Mutex<VecDeque<F>>);

impl<F> FaultQueue<F> {
    pub(crate) fn new() -> Self {
        FaultQueue(Mutex::new(VecDeque::new()))
    }

    pub(crate) fn push(&self, fault: F) {
        lock(&self.0).push_back(fault);
    }

    pub(crate) fn pop(&self) -> Option<F> {
        lock(&self.0).pop_front()
    }
}

/// `{method, path, query, headers, body}`; repeated headers are joined with `, `.
pub(crate) fn request_json(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Value,
) -> Value {
    let mut joined = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match joined.get_mut(name.as_str()) {
            Some(Value::String(seen)) => {
                seen.push_str(", ");
                seen.push_str(&value);
            }
            _ => {
                joined.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": joined,
        "body": body,
    })
}

/// A query parameter's raw value.
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

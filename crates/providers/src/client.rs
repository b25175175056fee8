//! The single pooled upstream HTTP client shared by every request.

use std::time::Duration;

/// Pool and socket settings for the upstream client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 1024,
        }
    }
}

/// One client (or transport) per connect timeout in use, the default first.
/// A connect timeout is a property of the connector, so deployments with
/// different `connect_timeout_secs` need clients of their own; each picks its
/// own by value.
#[derive(Clone, Debug)]
pub struct ByConnectTimeout<T>(std::sync::Arc<Vec<(Duration, T)>>);

impl<T> ByConnectTimeout<T> {
    /// One `T` per timeout, built from `opts` with that connect timeout.
    /// `timeouts[0]` is the default; an empty list means `opts.connect_timeout`.
    pub fn build<E>(
        opts: &ClientOptions,
        timeouts: &[Duration],
        mut make: impl FnMut(&ClientOptions) -> Result<T, E>,
    ) -> Result<Self, E> {
        let default = [opts.connect_timeout];
        let timeouts = if timeouts.is_empty() {
            &default[..]
        } else {
            timeouts
        };
        let mut all = Vec::with_capacity(timeouts.len());
        for t in timeouts {
            let opts = ClientOptions {
                connect_timeout: *t,
                ..opts.clone()
            };
            all.push((*t, make(&opts)?));
        }
        Ok(ByConnectTimeout(std::sync::Arc::new(all)))
    }

    /// The one with the default connect timeout.
    pub fn default_one(&self) -> &T {
        &self.0[0].1
    }

    /// The one with connect timeout `t`, or the default one.
    pub fn get(&self, t: Duration) -> &T {
        self.0
            .iter()
            .find(|(have, _)| *have == t)
            .map_or(self.default_one(), |(_, one)| one)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Duration, &T)> {
        self.0.iter().map(|(t, one)| (*t, one))
    }
}

/// reqwest clients for the calls that do not go through the gateway's
/// upstream transport (health probes, OAuth token fetches).
pub type ClientsByConnectTimeout = ByConnectTimeout<reqwest::Client>;

impl ClientsByConnectTimeout {
    pub fn new(opts: &ClientOptions, timeouts: &[Duration]) -> Result<Self, reqwest::Error> {
        Self::build(opts, timeouts, build_client)
    }
}

/// Build the process-wide upstream client. `TCP_NODELAY` avoids the 40 ms
/// Nagle/delayed-ACK stall on small request bodies; HTTP/2 is negotiated by ALPN
/// where the provider offers it. No overall timeout is set here: it depends on
/// the model and on whether the response is a stream, so callers set it per request.
pub fn build_client(opts: &ClientOptions) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(opts.connect_timeout)
        .pool_idle_timeout(opts.pool_idle_timeout)
        .pool_max_idle_per_host(opts.pool_max_idle_per_host)
        .user_agent(concat!("liter-llm/", env!("CARGO_PKG_VERSION")))
        // A redirect would carry the provider key (x-api-key, api-key, ...) to
        // wherever it points; reqwest strips only Authorization and cookies. No
        // provider API redirects model calls, so a 3xx is answered, not followed.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use mock_upstream::{Fault, MockConfig, MockServer};
use tokio::net::{TcpListener, TcpSocket};

/// A fast, scriptable OpenAI-shaped upstream for tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "mock-upstream", version, about)]
struct Cli {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (read it from the "listening on" line).
    #[arg(long, default_value_t = 4010)]
    port: u16,
    /// Wait before sending the headers of every response.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Content chunks per streamed response.
    #[arg(long, default_value_t = 8)]
    chunks: usize,
    /// Pacing between streamed content chunks.
    #[arg(long, default_value_t = 0)]
    chunk_interval_ms: u64,
    /// Fraction (0..=1) of requests answered 500.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    fail_rate: f64,
    /// Fraction (0..=1) of requests answered 429.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    rate_limit_rate: f64,
    /// `retry-after` value on 429 responses.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Require `Authorization: Bearer <KEY>`.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Misbehave deterministically on every request.
    #[arg(long, value_enum)]
    fault: Option<CliFault>,
    /// Runtime worker threads [default: number of CPUs].
    #[arg(long)]
    workers: Option<NonZeroUsize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CliFault {
    Garbage,
    HtmlError,
    TruncateStream,
    Stall,
}

impl From<CliFault> for Fault {
    fn from(fault: CliFault) -> Self {
        match fault {
            CliFault::Garbage => Fault::Garbage,
            CliFault::HtmlError => Fault::HtmlError,
            CliFault::TruncateStream => Fault::TruncateStream,
            CliFault::Stall => Fault::Stall,
        }
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not between 0 and 1"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workers = cli.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        NonZeroUsize::get,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mock-upstream: cannot start runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mock-upstream: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> io::Result<()> {
    let config = MockConfig {
        delay_ms: cli.delay_ms,
        chunks: cli.chunks,
        chunk_interval_ms: cli.chunk_interval_ms,
        fail_rate: cli.fail_rate,
        rate_limit_rate: cli.rate_limit_rate,
        retry_after_secs: cli.retry_after_secs,
        expected_api_key: cli.api_key,
        fault: cli.fault.map(Fault::from),
        // A long benchmark would otherwise grow memory without bound.
        record: false,
    };
    let listener = bind(&cli.host, cli.port).await?;
    let server = MockServer::start_on(listener, config).await?;
    {
        let mut stdout = io::stdout().lock();
        writeln!(
            stdout,
            "mock-upstream listening on http://{}",
            server.addr()
        )?;
        // Scripts block on this line; it must not sit in a buffer when stdout is a pipe.
        stdout.flush()?;
    }
    shutdown_signal().await;
    drop(server);
    Ok(())
}

/// Binds with a deep accept backlog: load generators open many connections at once and
/// the default backlog would turn that burst into connect timeouts.
async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match listen(addr) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{host} did not resolve to any address"),
        )
    }))
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // Without a handler the signal cannot be observed, so never resolve rather than
        // exiting immediately.
        std::future::pending::<()>().await;
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                () = ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    ctrl_c().await;
}

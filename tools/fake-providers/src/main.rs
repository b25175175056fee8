#![forbid(unsafe_code)]
//! `fake-providers`: one provider-faithful fake as a process, for tests that
//! cannot link the library (the Python SDK suite).
//!
//! Prints `fake-providers listening on http://IP:PORT` once the socket is bound,
//! then serves until SIGINT or SIGTERM. `GET /__requests` returns what the fake
//! received, as a JSON array of `{method, path, query, headers, body}`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use fake_providers::{anthropic, gemini};
use tokio::net::TcpListener;

/// A provider-faithful fake upstream (Anthropic Messages or Gemini API).
#[derive(Debug, Parser)]
#[command(name = "fake-providers", version, about)]
struct Cli {
    /// Which provider's API to fake.
    #[arg(long, value_enum)]
    provider: Provider,
    /// The key requests must carry (`x-api-key` / `x-goog-api-key`).
    #[arg(long, value_name = "KEY")]
    api_key: String,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (read it from the "listening on" line).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Provider {
    Anthropic,
    Gemini,
}

/// Keeps the fake alive; dropping it stops the server.
enum Running {
    Anthropic(anthropic::FakeAnthropic),
    Gemini(gemini::FakeGemini),
}

impl Running {
    fn addr(&self) -> SocketAddr {
        match self {
            Running::Anthropic(fake) => fake.addr(),
            Running::Gemini(fake) => fake.addr(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fake-providers: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> io::Result<()> {
    let listener = TcpListener::bind((cli.host.as_str(), cli.port)).await?;
    let fake = match cli.provider {
        Provider::Anthropic => {
            Running::Anthropic(anthropic::FakeAnthropic::start_on(listener, &cli.api_key).await?)
        }
        Provider::Gemini => Running::Gemini(gemini::start_on(listener, &cli.api_key).await?),
    };
    {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "fake-providers listening on http://{}", fake.addr())?;
        // Scripts block on this line; it must not sit in a buffer when stdout is a pipe.
        stdout.flush()?;
    }
    shutdown_signal().await;
    drop(fake);
    Ok(())
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // Without a handler the signal cannot be observed, so never resolve rather
        // than exiting immediately.
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

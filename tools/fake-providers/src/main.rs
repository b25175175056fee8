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
use fake_providers::{anthropic, azure, bedrock, cohere, gemini};
use tokio::net::TcpListener;

/// A provider-faithful fake upstream (Anthropic Messages, Gemini API, or Azure
/// OpenAI with Azure AI Foundry model inference).
#[derive(Debug, Parser)]
#[command(name = "fake-providers", version, about)]
struct Cli {
    /// Which provider's API to fake.
    #[arg(long, value_enum)]
    provider: Provider,
    /// The key requests must carry (`x-api-key` / `x-goog-api-key` / `api-key` /
    /// `Authorization: Bearer`).
    #[arg(long, value_name = "KEY")]
    api_key: String,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (read it from the "listening on" line).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Bedrock: the access key id requests must be SigV4-signed with
    /// (`--api-key` is not used by bedrock).
    #[arg(long, value_name = "ID", default_value = "AKIDEXAMPLE")]
    aws_access_key_id: String,
    /// Bedrock: the secret access key the fake verifies signatures with.
    #[arg(
        long,
        value_name = "SECRET",
        default_value = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    )]
    aws_secret_access_key: String,
    /// Bedrock: when set, requests must send and sign this `x-amz-security-token`.
    #[arg(long, value_name = "TOKEN")]
    aws_session_token: Option<String>,
    /// Bedrock: the region the credential scope must name.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    aws_region: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Provider {
    Anthropic,
    Gemini,
    /// Azure OpenAI (`/openai/deployments/...`, `/openai/v1`) and Foundry (`/models`).
    Azure,
    /// Cohere's v2 Chat API (`/v2/chat`, `Authorization: Bearer`).
    Cohere,
    /// Amazon Bedrock Converse / ConverseStream, SigV4-verified.
    Bedrock,
}

/// Keeps the fake alive; dropping it stops the server.
enum Running {
    Anthropic(anthropic::FakeAnthropic),
    Gemini(gemini::FakeGemini),
    Azure(azure::FakeAzure),
    Cohere(cohere::FakeCohere),
    Bedrock(bedrock::FakeBedrock),
}

impl Running {
    fn addr(&self) -> SocketAddr {
        match self {
            Running::Anthropic(fake) => fake.addr(),
            Running::Gemini(fake) => fake.addr(),
            Running::Cohere(fake) => fake.addr(),
            Running::Azure(fake) => fake.addr(),
            Running::Bedrock(fake) => fake.addr(),
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
        Provider::Cohere => Running::Cohere(cohere::start_on(listener, &cli.api_key).await?),
        Provider::Azure => Running::Azure(azure::start_on(listener, &cli.api_key).await?),
        Provider::Bedrock => {
            let mut creds = bedrock::Credentials::new(
                &cli.aws_access_key_id,
                &cli.aws_secret_access_key,
                &cli.aws_region,
            );
            if let Some(token) = cli.aws_session_token.as_deref() {
                creds = creds.with_session_token(token);
            }
            Running::Bedrock(bedrock::FakeBedrock::start_on(listener, creds).await?)
        }
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

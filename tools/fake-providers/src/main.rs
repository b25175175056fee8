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
use fake_providers::{
    anthropic, azure, bedrock, cohere, deepgram, elevenlabs, gemini, jina, mistral, ollama,
    sagemaker, search, stability, vertex, voyage, watsonx,
};
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
    /// Bedrock and SageMaker: the access key id requests must be SigV4-signed
    /// with (`--api-key` is not used by them).
    #[arg(long, value_name = "ID", default_value = "AKIDEXAMPLE")]
    aws_access_key_id: String,
    /// Bedrock and SageMaker: the secret access key the fake verifies signatures with.
    #[arg(
        long,
        value_name = "SECRET",
        default_value = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    )]
    aws_secret_access_key: String,
    /// Bedrock and SageMaker: when set, requests must send and sign this
    /// `x-amz-security-token`.
    #[arg(long, value_name = "TOKEN")]
    aws_session_token: Option<String>,
    /// Bedrock and SageMaker: the region the credential scope must name.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    aws_region: String,
    /// Vertex: the project the URLs must name.
    #[arg(long, value_name = "PROJECT", default_value = "liter-llm-test")]
    vertex_project: String,
    /// Vertex: the location the URLs must name.
    #[arg(long, value_name = "LOCATION", default_value = "us-central1")]
    vertex_location: String,
    /// Vertex: the service-account key file whose public key verifies the JWTs
    /// (default: the committed test key, `testdata/test-service-account.json`).
    #[arg(long, value_name = "PATH")]
    service_account: Option<std::path::PathBuf>,
    /// Vertex and watsonx: `expires_in` of the tokens the fake issues.
    #[arg(long, value_name = "SECS")]
    token_ttl: Option<u64>,
    /// watsonx: the project `project_id` must name (`--api-key` is the IBM
    /// Cloud API key the IAM endpoint accepts).
    #[arg(long, value_name = "ID", default_value = "wx-test-project")]
    watsonx_project_id: String,
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
    /// Google Vertex AI (Gemini and Claude publishers) with its OAuth2 token
    /// endpoint at `/token`, JWTs verified (`--api-key` is not used).
    Vertex,
    /// IBM watsonx.ai chat with its IAM token endpoint at `/identity/token`.
    Watsonx,
    /// Web search APIs (Tavily, Brave, Exa, Firecrawl, Serper, Linkup,
    /// SearXNG), each under its own path prefix (`/tavily`, `/brave/res/v1`, ...).
    Search,
    /// Stability AI's Stable Image API (`/v2beta/stable-image/generate/...`).
    Stability,
    /// ElevenLabs text to speech and Scribe (`/v1/text-to-speech/..`,
    /// `/v1/speech-to-text`, `xi-api-key`).
    Elevenlabs,
    /// Deepgram `/v1/listen` and `/v1/speak` (`Authorization: Token`).
    Deepgram,
    /// Mistral AI's API (`/v1/...`) plus Azure AI Foundry's Mistral OCR route
    /// (`/providers/mistral/azure/ocr`, `api-key` or Bearer).
    Mistral,
    /// Voyage AI's embeddings and reranker (`/v1/embeddings`, `/v1/rerank`, Bearer).
    Voyage,
    /// Jina AI's embeddings and reranker (`/v1/embeddings`, `/v1/rerank`, Bearer).
    Jina,
    /// Amazon SageMaker Runtime in front of chat-schema containers (LMI, or TGI
    /// for endpoint names containing `tgi`), SigV4-verified for `sagemaker`
    /// with the `--aws-*` credentials (`--api-key` is not used).
    Sagemaker,
    /// Ollama's native `/api/chat`; an empty `--api-key` is a local server
    /// (no auth), another needs it as `Authorization: Bearer`.
    Ollama,
}

/// Keeps the fake alive; dropping it stops the server.
enum Running {
    Anthropic(anthropic::FakeAnthropic),
    Gemini(gemini::FakeGemini),
    Azure(azure::FakeAzure),
    Cohere(cohere::FakeCohere),
    Bedrock(bedrock::FakeBedrock),
    Vertex(vertex::FakeVertex),
    Watsonx(watsonx::FakeWatsonx),
    Search(search::FakeSearch),
    Stability(stability::FakeStability),
    Elevenlabs(elevenlabs::FakeElevenLabs),
    Deepgram(deepgram::FakeDeepgram),
    Mistral(mistral::FakeMistral),
    Voyage(voyage::FakeVoyage),
    Jina(jina::FakeJina),
    Sagemaker(sagemaker::FakeSagemaker),
    Ollama(ollama::FakeOllama),
}

impl Running {
    fn addr(&self) -> SocketAddr {
        match self {
            Running::Anthropic(fake) => fake.addr(),
            Running::Gemini(fake) => fake.addr(),
            Running::Cohere(fake) => fake.addr(),
            Running::Azure(fake) => fake.addr(),
            Running::Bedrock(fake) => fake.addr(),
            Running::Vertex(fake) => fake.addr(),
            Running::Watsonx(fake) => fake.addr(),
            Running::Search(fake) => fake.addr(),
            Running::Stability(fake) => fake.addr(),
            Running::Elevenlabs(fake) => fake.addr(),
            Running::Deepgram(fake) => fake.addr(),
            Running::Mistral(fake) => fake.addr(),
            Running::Voyage(fake) => fake.addr(),
            Running::Jina(fake) => fake.addr(),
            Running::Sagemaker(fake) => fake.addr(),
            Running::Ollama(fake) => fake.addr(),
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
        Provider::Vertex => {
            let key = match &cli.service_account {
                Some(path) => std::fs::read_to_string(path)?,
                None => vertex::TEST_SERVICE_ACCOUNT_JSON.to_string(),
            };
            let account = vertex::ServiceAccount::from_key_json(&key).map_err(io::Error::other)?;
            let fake =
                vertex::start_on(listener, account, &cli.vertex_project, &cli.vertex_location)
                    .await?;
            if let Some(ttl) = cli.token_ttl {
                fake.set_token_ttl(ttl);
            }
            Running::Vertex(fake)
        }
        Provider::Watsonx => {
            let fake = watsonx::start_on(listener, &cli.api_key, &cli.watsonx_project_id).await?;
            if let Some(ttl) = cli.token_ttl {
                fake.set_token_ttl(ttl);
            }
            Running::Watsonx(fake)
        }
        Provider::Search => Running::Search(search::start_on(listener, &cli.api_key).await?),
        Provider::Stability => {
            Running::Stability(stability::start_on(listener, &cli.api_key).await?)
        }
        Provider::Elevenlabs => {
            Running::Elevenlabs(elevenlabs::start_on(listener, &cli.api_key).await?)
        }
        Provider::Deepgram => Running::Deepgram(deepgram::start_on(listener, &cli.api_key).await?),
        Provider::Mistral => Running::Mistral(mistral::start_on(listener, &cli.api_key).await?),
        Provider::Voyage => Running::Voyage(voyage::start_on(listener, &cli.api_key).await?),
        Provider::Jina => Running::Jina(jina::start_on(listener, &cli.api_key).await?),
        Provider::Sagemaker => {
            let mut creds = bedrock::Credentials::new(
                &cli.aws_access_key_id,
                &cli.aws_secret_access_key,
                &cli.aws_region,
            );
            if let Some(token) = cli.aws_session_token.as_deref() {
                creds = creds.with_session_token(token);
            }
            Running::Sagemaker(sagemaker::start_on(listener, creds).await?)
        }
        Provider::Ollama => Running::Ollama(ollama::start_on(listener, &cli.api_key).await?),
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

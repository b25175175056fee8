//! `stream-bench`: opens N concurrent streaming chat completions and measures what a
//! client sees: time to first event, every gap between events, chunks lost, streams
//! stalled. Each stream slot owns one HTTP/1.1 connection (TCP_NODELAY), so N slots
//! are N sockets on the server under test.

mod client;
mod sse;
mod stats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use serde::Serialize;

use crate::client::{Shared, StreamRecord};
use crate::stats::{summarize, Summary};

/// Concurrent SSE streaming client for benchmarking an OpenAI-compatible endpoint.
#[derive(Debug, Parser)]
#[command(name = "stream-bench", version, about)]
struct Cli {
    /// Endpoint: a full `http://host:port/.../chat/completions` URL, or an OpenAI-style
    /// base URL (`http://host:port` or `http://host:port/v1`) to which
    /// `/v1/chat/completions` (or `/chat/completions`) is appended.
    #[arg(long)]
    url: String,
    /// Bearer token sent with every request.
    #[arg(long)]
    key: String,
    /// Model name in the request body.
    #[arg(long)]
    model: String,
    /// Concurrent stream slots; each owns one connection.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Content chunks (non-empty `delta.content`) every stream must deliver.
    #[arg(long)]
    expect_chunks: usize,
    /// Upstream pacing between content chunks, in ms. A gap between two events longer
    /// than `--stall-factor` times this is a stall. 0 disables stall detection.
    #[arg(long, default_value_t = 0)]
    pacing_ms: u64,
    /// Multiple of `--pacing-ms` above which a gap counts as a stall.
    #[arg(long, default_value_t = 10)]
    stall_factor: u64,
    /// Spread the slots' start times evenly over this many ms.
    #[arg(long, default_value_t = 0)]
    ramp_ms: u64,
    /// Streams each slot runs one after another on its kept-alive connection.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Limit for connecting, and separately for each whole stream.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Runtime worker threads [default: number of CPUs].
    #[arg(long)]
    workers: Option<NonZeroUsize>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    url: String,
    model: String,
    streams: usize,
    repeat: usize,
    expect_chunks: usize,
    pacing_ms: u64,
    stall_threshold_ms: Option<u64>,
    ramp_ms: u64,
    /// What `ttft_us` is measured to.
    ttft_basis: &'static str,
    requests: usize,
    completed: usize,
    lost: usize,
    stalled: usize,
    failed: usize,
    /// Most streams open at once (request sent, response not yet finished).
    peak_concurrent: usize,
    wall_secs: f64,
    /// TCP connect + HTTP/1 handshake of each new connection.
    connect_us: Summary,
    ttft_us: Summary,
    ttft_content_us: Summary,
    gap_us: Summary,
    content_chunks_received: usize,
    errors: BTreeMap<String, usize>,
    error_samples: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stream-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.streams == 0 || cli.repeat == 0 {
        bail!("--streams and --repeat must be at least 1");
    }
    let workers = cli.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        NonZeroUsize::get,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let report = runtime.block_on(bench(&cli))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
}

async fn resolve(url: &str) -> anyhow::Result<Target> {
    let uri: http::Uri = url.parse().with_context(|| format!("bad --url {url}"))?;
    if uri.scheme_str() != Some("http") {
        bail!("--url must be plain http:// (got {url})");
    }
    let host = uri.host().ok_or_else(|| anyhow!("--url has no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri
        .authority()
        .map_or_else(|| host.to_string(), |a| a.as_str().to_string());
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((bare_host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} resolved to no address"))?;
    let path = uri.path().trim_end_matches('/');
    let path = if path.ends_with("/chat/completions") {
        path.to_string()
    } else if path.is_empty() {
        "/v1/chat/completions".to_string()
    } else {
        format!("{path}/chat/completions")
    };
    Ok(Target {
        addr,
        authority,
        path,
    })
}

async fn bench(cli: &Cli) -> anyhow::Result<Report> {
    let target = resolve(&cli.url).await?;
    let body = serde_json::json!({
        "model": cli.model,
        "stream": true,
        "messages": [{"role": "user", "content": "Benchmark: say hello."}],
    })
    .to_string();
    let shared = Arc::new(Shared {
        addr: target.addr,
        authority: target.authority,
        path: target.path,
        authorization: format!("Bearer {}", cli.key),
        body: bytes::Bytes::from(body),
        timeout: Duration::from_secs(cli.timeout_secs.max(1)),
        repeat: cli.repeat,
        live: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });

    let started = Instant::now();
    let origin = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(cli.streams);
    for slot in 0..cli.streams {
        let offset_us = cli.ramp_ms.saturating_mul(1000) * slot as u64 / cli.streams as u64;
        let start_at = origin + Duration::from_micros(offset_us);
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(client::run_slot(shared, start_at)));
    }
    let mut records: Vec<StreamRecord> = Vec::with_capacity(cli.streams * cli.repeat);
    for task in tasks {
        match task.await {
            Ok(mut slot_records) => records.append(&mut slot_records),
            Err(error) => records.push(StreamRecord::failed("task", error.to_string())),
        }
    }
    let wall_secs = started.elapsed().as_secs_f64();
    Ok(aggregate(
        cli,
        records,
        shared.peak.load(Ordering::Relaxed),
        wall_secs,
    ))
}

fn aggregate(cli: &Cli, records: Vec<StreamRecord>, peak: usize, wall_secs: f64) -> Report {
    let stall_threshold_us = (cli.pacing_ms > 0).then(|| cli.pacing_ms * cli.stall_factor * 1000);
    let mut connect = Vec::with_capacity(records.len());
    let mut ttft = Vec::with_capacity(records.len());
    let mut ttft_content = Vec::with_capacity(records.len());
    let mut gaps = Vec::with_capacity(records.len() * (cli.expect_chunks + 3));
    let (mut completed, mut lost, mut stalled, mut failed, mut chunks) = (0, 0, 0, 0, 0);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut error_samples = Vec::new();
    let requests = records.len();
    for rec in records {
        connect.extend(rec.connect_us);
        ttft.extend(rec.ttft_event_us);
        ttft_content.extend(rec.ttft_content_us);
        chunks += rec.content;
        let max_gap = rec.gaps_us.iter().copied().max().unwrap_or(0);
        if stall_threshold_us.is_some_and(|limit| max_gap > limit) {
            stalled += 1;
        }
        if rec.content != cli.expect_chunks || !rec.done {
            lost += 1;
        }
        if let Some((kind, message)) = rec.error {
            failed += 1;
            *errors.entry(kind).or_default() += 1;
            if error_samples.len() < 5 {
                error_samples.push(message);
            }
        } else if rec.done {
            completed += 1;
        }
        gaps.extend(rec.gaps_us);
    }
    Report {
        url: cli.url.clone(),
        model: cli.model.clone(),
        streams: cli.streams,
        repeat: cli.repeat,
        expect_chunks: cli.expect_chunks,
        pacing_ms: cli.pacing_ms,
        stall_threshold_ms: stall_threshold_us.map(|us| us / 1000),
        ramp_ms: cli.ramp_ms,
        ttft_basis: "request sent (connection already open) -> first complete SSE data event",
        requests,
        completed,
        lost,
        stalled,
        failed,
        peak_concurrent: peak,
        wall_secs,
        connect_us: summarize(connect),
        ttft_us: summarize(ttft),
        ttft_content_us: summarize(ttft_content),
        gap_us: summarize(gaps),
        content_chunks_received: chunks,
        errors,
        error_samples,
    }
}

fn fmt_us(v: Option<u64>) -> String {
    match v {
        None => "-".to_string(),
        Some(us) if us >= 10_000 => format!("{:.1} ms", us as f64 / 1000.0),
        Some(us) => format!("{us} µs"),
    }
}

fn print_text(r: &Report) {
    println!("stream-bench {} model={}", r.url, r.model);
    println!(
        "  streams={} repeat={} expect_chunks={} pacing={} ms ramp={} ms wall={:.2} s peak_concurrent={}",
        r.streams, r.repeat, r.expect_chunks, r.pacing_ms, r.ramp_ms, r.wall_secs, r.peak_concurrent
    );
    println!(
        "  requests={} completed={} lost={} stalled={} failed={}",
        r.requests, r.completed, r.lost, r.stalled, r.failed
    );
    println!(
        "  connect               p50={} p99={} max={}",
        fmt_us(r.connect_us.p50),
        fmt_us(r.connect_us.p99),
        fmt_us(r.connect_us.max)
    );
    println!(
        "  TTFT (first event)    p50={} p99={} max={}",
        fmt_us(r.ttft_us.p50),
        fmt_us(r.ttft_us.p99),
        fmt_us(r.ttft_us.max)
    );
    println!(
        "  TTFT (first content)  p50={} p99={} max={}",
        fmt_us(r.ttft_content_us.p50),
        fmt_us(r.ttft_content_us.p99),
        fmt_us(r.ttft_content_us.max)
    );
    println!(
        "  inter-event gap       p50={} p99={} max={} (n={})",
        fmt_us(r.gap_us.p50),
        fmt_us(r.gap_us.p99),
        fmt_us(r.gap_us.max),
        r.gap_us.count
    );
    for (kind, n) in &r.errors {
        println!("  error {kind}: {n}");
    }
    for sample in &r.error_samples {
        println!("    e.g. {sample}");
    }
}

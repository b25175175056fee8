use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use liter_llm_config::{discover, process_env, Config, Secret};
use liter_llm_providers::registry::Registry;
use liter_llm_proxy::{build_app, serve, shutdown_signal, AppState, ServeOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "liter-llm",
    version,
    about = "An OpenAI-compatible proxy in front of every LLM provider"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the OpenAI-compatible HTTP proxy.
    Api(ApiArgs),
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List the provider registry: name, endpoints, auth, key env var, adapter.
    Providers,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a config and print the effective config with secrets redacted.
    Check(ConfigSource),
}

#[derive(Args, Debug)]
struct ConfigSource {
    /// Path to liter-llm-proxy.toml. Without it, the file is searched for from the
    /// current directory up to the filesystem root.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
}

// No clap defaults on the overrides: a flag that was not given must leave the
// file's value alone. Defaults live in the config types.
#[derive(Args, Debug)]
struct ApiArgs {
    #[command(flatten)]
    source: ConfigSource,
    /// Bind address [default: 0.0.0.0]. Overrides [server].host.
    #[arg(long)]
    host: Option<String>,
    /// Bind port [default: 4000]. Overrides [server].port.
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Master API key. Overrides [general].master_key.
    #[arg(
        long = "master-key",
        env = "LITER_LLM_MASTER_KEY",
        hide_env_values = true
    )]
    master_key: Option<String>,
    /// Debug-level tracing (same as RUST_LOG=debug).
    #[arg(long)]
    debug: bool,
}

fn load(source: &ConfigSource) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = match &source.config {
        Some(p) => Some(p.clone()),
        None => discover(&std::env::current_dir().context("cannot read the current directory")?),
    };
    let config = match &path {
        Some(p) => Config::from_file(p, &process_env)?,
        None => Config::default(),
    };
    Ok((config, path))
}

fn apply_overrides(config: &mut Config, args: &ApiArgs) -> anyhow::Result<()> {
    if let Some(h) = &args.host {
        config.server.host = h.clone();
    }
    if let Some(p) = args.port {
        config.server.port = p;
    }
    if let Some(k) = &args.master_key {
        set_master_key(config, k)?;
    }
    Ok(())
}

fn set_master_key(config: &mut Config, key: &str) -> anyhow::Result<()> {
    if key.is_empty() {
        return Err(anyhow!(
            "the master key given by --master-key or LITER_LLM_MASTER_KEY is empty; an empty key must never authenticate"
        ));
    }
    config.general.master_key = Some(Secret::new(key));
    Ok(())
}

fn init_logging(debug: bool) {
    let filter = if debug {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn env_arc() -> liter_llm_config::EnvLookup {
    Arc::new(process_env)
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Api(args) => run_api(args),
        Command::Config {
            command: ConfigCommand::Check(source),
        } => {
            let (mut config, path) = load(&source)?;
            // The same override `api` applies, so both accept and refuse the same setups.
            if let Some(k) = process_env("LITER_LLM_MASTER_KEY") {
                set_master_key(&mut config, &k)?;
            }
            AppState::build_with(&config, env_arc(), false)?;
            let header = match &path {
                Some(p) => format!("# {}: valid\n", p.display()),
                None => "# no liter-llm-proxy.toml found; effective defaults: valid\n".to_string(),
            };
            // A closed pipe (`| head`) is not an error worth a panic.
            let mut out = std::io::stdout().lock();
            let _ = out
                .write_all(header.as_bytes())
                .and_then(|()| out.write_all(config.to_redacted_toml().as_bytes()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Providers => {
            print_providers()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_api(args: ApiArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.debug);
    let (mut config, path) = load(&args.source)?;
    apply_overrides(&mut config, &args)?;
    match &path {
        Some(p) => tracing::info!("config: {}", p.display()),
        None => tracing::warn!(
            "no liter-llm-proxy.toml found from the current directory up; using defaults"
        ),
    }
    // Requests are served on threads of their own (`proxy::server`); this
    // runtime only starts them and runs background work (health probes, the
    // spend writer, signals), which one thread covers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let state = Arc::new(AppState::build(&config, env_arc())?);
        let app = build_app(state.clone(), &config.server.cors_origins).map_err(|e| anyhow!(e))?;
        let addr = format!("{}:{}", config.server.host, config.server.port);
        let listener = bind(&addr)
            .await
            .with_context(|| format!("cannot bind {addr}"))?;
        let bound: SocketAddr = listener.local_addr()?;
        tracing::info!(
            "liter-llm {} listening on http://{bound} ({} models, {} aliases)",
            env!("CARGO_PKG_VERSION"),
            state.router.groups().count(),
            state.router.alias_patterns().count()
        );
        let opts = ServeOptions {
            drain_timeout: Duration::from_secs(config.server.drain_timeout_secs),
        };
        let clean = serve(state, app, listener, opts, shutdown_signal()).await?;
        tracing::info!(clean, "stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Bind with a deep accept queue: the default of 128 overflows when thousands of
/// clients connect at once, and an overflow costs a client a SYN retransmit (1 s).
async fn bind(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    const BACKLOG: u32 = 4096;
    let mut last_err = None;
    for sock_addr in tokio::net::lookup_host(addr).await? {
        let socket = if sock_addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(sock_addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_err = Some(e),
        }
    }
    Err(match last_err {
        Some(e) => e.into(),
        None => anyhow!("`{addr}` resolved to no address"),
    })
}

fn print_providers() -> anyhow::Result<()> {
    let registry = Registry::builtin()?;
    let rows: Vec<[String; 5]> = registry
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.endpoints.join(","),
                p.auth.as_str().to_string(),
                p.env_var.clone().unwrap_or_else(|| "-".into()),
                p.adapter.as_str().to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "ENDPOINTS", "AUTH", "KEY ENV VAR", "ADAPTER"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        let mut s = s.trim_end().to_string();
        s.push('\n');
        s
    };
    let mut out = line(header);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out.push_str(&format!("\n{} providers\n", registry.len()));
    // `liter-llm providers | head` closes the pipe early; that is the reader's
    // choice, not an error worth a panic (println! would panic on EPIPE).
    match std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Into::into),
    }
}

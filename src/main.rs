//! The `tim-gateway` binary: command line, logging, runtime, exit codes.
//!
//! `tim-gateway [--config FILE]` serves; `tim-gateway demo` serves in front of the built-in
//! simulated Tencent; `tim-gateway sim --listen ADDR` runs that simulated Tencent alone (for
//! soaks and fleets of gateways); `tim-gateway usersig --identifier ID` prints a UserSig signed
//! with the configured key. An invalid config prints one line and exits 64 (EX_USAGE) before
//! binding.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tim_gateway::config::{Config, LogFormat, ProcessEnv};
use tim_gateway::sim::{Sim, SimCallbacks, SimConfig};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: a request allocates and frees a few short-lived buffers
/// (its body, the answer, the decoded lists); glibc spent ~6 % of the hit path's CPU on them
/// (docs/benchmarks-history.md, State I).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG_PATH: &str = "config/tim-gateway.toml";
/// sysexits.h EX_USAGE: the configuration is wrong.
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "tim-gateway",
    version,
    about = "Caching, coalescing, rate-limiting gateway for the Tencent IM REST API"
)]
struct Cli {
    /// Config file (TOML); env TIM_GATEWAY__<SECTION>__<KEY> overrides any key.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway in front of the built-in simulated Tencent upstream, and print a curl.
    Demo,
    /// Run the simulated Tencent IM upstream alone, for gateways started separately.
    ///
    /// It serves v4/profile/portrait_get and portrait_set for accounts user0..user999999 with
    /// the same app as `demo`: [upstream] sdkappid, secret_key (the demo key when unset) and
    /// identifier plus [auth] admins as app admins, so a gateway with the same config (and
    /// upstream.base_url = the printed URL) talks to it. Prints "tim-gateway sim: listening on
    /// http://ADDR" once bound; on SIGTERM or Ctrl-C prints one JSON line of counters
    /// (calls, rate_limited, faulted, oversized) and exits 0.
    Sim(SimArgs),
    /// Check the config file and the environment's overrides as serving would, binding
    /// nothing: exit 0 with one line on stdout when valid; 64 with one line on stderr naming the
    /// problem when not (as `nginx -t`).
    Check,
    /// Print an admin UserSig signed with the configured secret key.
    Usersig {
        /// The identifier (UserID) to sign for.
        #[arg(long)]
        identifier: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        expire: u64,
    },
}

#[derive(clap::Args)]
struct SimArgs {
    /// Address to listen on; port 0 lets the OS choose (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Calls per API the sim accepts in any sliding second, from all callers together;
    /// past it, calls get Tencent's 60007. 0 disables the limit.
    #[arg(long, default_value_t = 200)]
    requests_per_second: u32,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Flap every this many seconds: each cycle is healthy 60 %, HTTP 502 burst 5 %, latency
    /// spike (+400 ms) 10 %, dropped connections 5 %, then one answer padded past 16 MiB and
    /// healthy for the remaining 20 %. 0 never flaps.
    #[arg(long, default_value_t = 0)]
    flap_period_seconds: u64,
    /// Send `Profile.CallbackPortraitSet` here after every successful portrait_set, as Tencent
    /// does (e.g. http://127.0.0.1:8080/tim/callback); empty sends none.
    #[arg(long, default_value = "")]
    callback_url: String,
    /// The callback token to sign callbacks with (Tencent's Sign); empty sends them unsigned.
    #[arg(
        long,
        default_value = "",
        env = "TIM_SIM_CALLBACK_TOKEN",
        hide_env_values = true
    )]
    callback_token: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path_is_default = cli.config.is_none();
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let config = match Config::load(&path, path_is_default, &ProcessEnv) {
        Ok(config) => config,
        Err(e) => return usage_error(&e),
    };
    match cli.command {
        Some(Command::Usersig { identifier, expire }) => {
            print_usersig(&config, &identifier, expire)
        }
        Some(Command::Check) => match config.require_secret_key() {
            Ok(()) => {
                println!("tim-gateway: {} is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(&e),
        },
        Some(Command::Demo) => serve(config, None),
        Some(Command::Sim(args)) => block_on(config.log.format, run_sim(config, args)),
        None => match config.require_secret_key() {
            Ok(()) => serve(
                config,
                Some(ConfigFile {
                    path,
                    path_is_default,
                }),
            ),
            Err(e) => usage_error(&e),
        },
    }
}

fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("tim-gateway: {e}");
    ExitCode::from(EXIT_USAGE)
}

fn print_usersig(config: &Config, identifier: &str, expire: u64) -> ExitCode {
    if let Err(e) = config.require_secret_key() {
        return usage_error(&e);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let key = config.upstream.secret_key.expose();
    println!(
        "{}",
        tim_gateway::usersig::sign(config.upstream.sdkappid, key, identifier, now, expire)
    );
    ExitCode::SUCCESS
}

/// Where the served config came from, to read again on SIGHUP.
struct ConfigFile {
    path: PathBuf,
    path_is_default: bool,
}

/// Serves `config`: from `file` (reloaded on SIGHUP), or the demo's (no file: `None`).
fn serve(config: Config, file: Option<ConfigFile>) -> ExitCode {
    block_on(config.log.format, serve_async(config, file))
}

/// Reads the config file and the environment again on every SIGHUP and sends the result to
/// the gateway (which applies what can change live); the demo ignores SIGHUP.
fn reload_on_sighup(file: Option<ConfigFile>) -> anyhow::Result<tim_gateway::reload::Reloads> {
    use tim_gateway::reload::Reload;
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let Some(file) = &file else {
                tracing::warn!("SIGHUP: the demo's config is built in, nothing to reload");
                continue;
            };
            let read = Config::load(&file.path, file.path_is_default, &ProcessEnv)
                .map_err(|e| e.to_string())
                .and_then(|config| match config.require_secret_key() {
                    Ok(()) => Ok(config),
                    Err(e) => Err(e.to_string()),
                });
            let reload = match read {
                Ok(config) => Reload::Read(Box::new(config)),
                Err(why) => Reload::Refused(why),
            };
            if tx.send(reload).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// Runs `work` to completion on a multi-threaded runtime, with logging set up.
fn block_on(
    format: LogFormat,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tim-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The span exporter's batches run on the runtime: logging is set up inside it.
    let traces = runtime.block_on(async { init_tracing(format) });
    let code = match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tim-gateway: {e:#}");
            ExitCode::FAILURE
        }
    };
    if let Some(provider) = traces {
        // Sends the spans still batched; blocks on the runtime's workers, not inside them.
        let _ = provider.shutdown();
    }
    code
}

async fn run_sim(mut config: Config, args: SimArgs) -> anyhow::Result<()> {
    let sim_config = SimConfig {
        requests_per_second: args.requests_per_second,
        latency: Duration::from_millis(args.latency_ms),
        call_log: false,
        callback: (!args.callback_url.is_empty()).then(|| SimCallbacks {
            url: args.callback_url.clone(),
            token: (!args.callback_token.is_empty()).then(|| args.callback_token.clone()),
        }),
        ..tim_gateway::demo::sim_config(&mut config)
    };
    let latency = sim_config.latency;
    let sim = Sim::start_on(sim_config, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("tim-gateway sim: listening on {}", sim.base_url());
    let flapping = async {
        match args.flap_period_seconds {
            0 => std::future::pending().await,
            seconds => tim_gateway::sim::flap(&sim, Duration::from_secs(seconds), latency).await,
        }
    };
    tokio::select! {
        _ = tim_gateway::shutdown::signal() => {}
        _ = flapping => {}
    }
    let stats = sim.stats();
    sim.shutdown().await;
    let counters = serde_json::json!({
        "portrait_get_calls": stats.portrait_get_calls,
        "portrait_set_calls": stats.portrait_set_calls,
        "other_calls": stats.other_calls,
        "rate_limited": stats.rate_limited,
        "faulted": stats.faulted,
        "oversized": stats.oversized,
        "callbacks_sent": stats.callbacks_sent,
        "callback_failures": stats.callback_failures,
    });
    println!("{counters}");
    Ok(())
}

async fn serve_async(config: Config, file: Option<ConfigFile>) -> anyhow::Result<()> {
    let demo = file.is_none();
    let reloads = reload_on_sighup(file)?;
    let (sim, config) = if demo {
        let (sim, config) = tim_gateway::demo::start_sim(config)
            .await
            .context("cannot start the simulated upstream")?;
        (Some(sim), config)
    } else {
        (None, config)
    };
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    if demo {
        let addr = listener.local_addr()?;
        println!("tim-gateway demo: simulated Tencent IM upstream and gateway on loopback. Try:\n");
        println!("{}\n", tim_gateway::demo::curl_command(&config, addr));
        println!("The list reads, coalesced the same way:\n");
        for curl in tim_gateway::demo::list_curl_commands(&config, addr) {
            println!("{curl}\n");
        }
        println!("Ctrl-C stops it. Metrics: curl -s http://{addr}/metrics");
    }
    let callbacks = match config.callback.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for callbacks on {addr}"))?,
        ),
        None => None,
    };
    let listeners = tim_gateway::Listeners {
        api: listener,
        callbacks,
    };
    tim_gateway::run_reloading(config, listeners, reloads, tim_gateway::shutdown::signal()).await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    Ok(())
}

/// Logs to stderr as `format` says, filtered by RUST_LOG (default `tim_gateway=info`); and, when
/// the OTEL_* variables ask for it, spans to OTLP (the gateway's own, at debug, whatever
/// RUST_LOG says). The exporting provider, to shut down at exit.
fn init_tracing(format: LogFormat) -> Option<SdkTracerProvider> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("tim_gateway=info"));
    // Colours only for a person at a terminal: escape codes would garble a log collector's text
    // and cost every request's span a formatting pass.
    let ansi = std::io::stderr().is_terminal();
    if !tim_gateway::traces::requested() {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(std::io::stderr);
        match format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => builder.init(),
        }
        return None;
    }
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
        LogFormat::Text => logs.with_filter(filter).boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs);
    match tim_gateway::traces::exporter() {
        Ok((provider, spans)) => {
            let spans = spans.with_filter(EnvFilter::new("tim_gateway=debug"));
            registry.with(spans).init();
            tracing::info!("exporting traces over OTLP/HTTP");
            Some(provider)
        }
        Err(why) => {
            registry.init();
            tracing::warn!(error = %why, "traces not exported");
            None
        }
    }
}

//! The `tim-gateway` binary: command line, logging, runtime, exit codes.
//!
//! `tim-gateway [--config FILE]` serves; `tim-gateway demo` serves in front of the built-in
//! simulated Tencent; `tim-gateway usersig --identifier ID` prints a UserSig signed with the
//! configured key. An invalid config prints one line and exits 64 (EX_USAGE) before binding.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tim_gateway::config::{Config, LogFormat, ProcessEnv};
use tracing_subscriber::EnvFilter;

const DEFAULT_CONFIG_PATH: &str = "config/tim-gateway.toml";
/// sysexits.h EX_USAGE: the configuration is wrong.
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "tim-gateway",
    version,
    about = "Caching, coalescing, rate-limiting gateway for Tencent IM portrait_get"
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
        Some(Command::Demo) => serve(config, true),
        None => match config.require_secret_key() {
            Ok(()) => serve(config, false),
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

fn serve(config: Config, demo: bool) -> ExitCode {
    init_tracing(config.log.format);
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
    match runtime.block_on(serve_async(config, demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tim-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_async(config: Config, demo: bool) -> anyhow::Result<()> {
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
        println!("Ctrl-C stops it. Metrics: curl -s http://{addr}/metrics");
    }
    tim_gateway::run(config, listener, tim_gateway::shutdown::signal()).await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("tim_gateway=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

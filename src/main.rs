//! The `bella-vista` binary: the command line, settings, logging, and the modes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use bella_vista::app::{
    AppError, RoomCalls, language_model, open_store, restaurant, start_delivery, start_session,
    voice_services,
};
use bella_vista::bella_vista::delivery::{DeliveryTask, Webhook, deliver_forever};
use bella_vista::bella_vista::store::OrdersDb;
use bella_vista::config::LiveKitServer;
use bella_vista::config::Provider;
use bella_vista::config::{Config, ConfigError, EnvOverrides};
use bella_vista::eval;
use bella_vista::io::board;
use bella_vista::io::console::{self, ConsoleRenderer};
use bella_vista::io::file_audio::{FileInput, Recording};
use bella_vista::io::http;
use bella_vista::io::livekit::agent_call::ServerApi;
use bella_vista::io::livekit::worker::{self, WorkerOptions};
use bella_vista::io::wav::{read_wav, write_wav};
use bella_vista::voice::call::{Pace, run_call};
use clap::{Parser, Subcommand};
use livekit_api::access_token::{AccessToken, VideoGrants};

/// Bella Vista: the voice agent that takes restaurant orders.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Settings file (default: the built-in config/default.toml).
    #[arg(long, global = true, env = "BELLA_VISTA_CONFIG")]
    config: Option<PathBuf>,
    /// Order database: a SQLite file (default: $XDG_DATA_HOME/bella-vista/orders.db or
    /// ~/.local/share/bella-vista/orders.db, else ./orders.db) or a postgres:// URL that
    /// many workers share (also BELLA_VISTA_ORDERS_DB).
    #[arg(long, global = true)]
    orders_db: Option<String>,
    /// Model name at the OpenAI-compatible server (overrides config and BELLA_VISTA_MODEL).
    #[arg(long, global = true)]
    model: Option<String>,
    /// Menu file (overrides paths.menu).
    #[arg(long, global = true)]
    menu: Option<PathBuf>,
    /// Which models answer: local (in this process, no account) or openai (any
    /// OpenAI-compatible server). Default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is
    /// set, else local.
    #[arg(long, global = true, value_enum)]
    provider: Option<Provider>,
    /// How log lines are written to stderr: text for people (coloured only on a
    /// terminal), json for log shippers (one object per line; the image's default).
    #[arg(long, global = true, value_enum, env = "BELLA_VISTA_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Talk to the agent through this computer's microphone and speaker.
    #[arg(long, conflicts_with = "list_devices")]
    local: bool,
    /// List audio devices (for --input-device and --output-device).
    #[arg(long)]
    list_devices: bool,
    /// Microphone to use with --local (name or part of it; default device when absent).
    #[arg(long, requires = "local")]
    input_device: Option<String>,
    /// Speaker to use with --local.
    #[arg(long, requires = "local")]
    output_device: Option<String>,
    /// Let the caller interrupt the agent with --local. Use it with a headset: without
    /// echo cancellation the agent would hear itself through the speaker. Off: half duplex.
    #[arg(long, requires = "local")]
    barge_in: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A text conversation in the terminal (one caller turn per line when piped).
    Console,
    /// One call from a WAV file: the caller's audio in, the agent's audio and a JSON report
    /// (each turn's transcript, reply and latencies) out.
    Simulate {
        /// The caller's audio (WAV, any rate).
        #[arg(long)]
        caller: PathBuf,
        /// Where to write the agent's audio (WAV).
        #[arg(long)]
        out: PathBuf,
        /// Where to write the report (JSON).
        #[arg(long)]
        report: PathBuf,
        /// Run faster than real time (provider waits take no call time).
        #[arg(long)]
        fast: bool,
    },
    /// Run as a LiveKit agent worker: register with the server (LIVEKIT_URL,
    /// LIVEKIT_API_KEY, LIVEKIT_API_SECRET), take dispatched calls, many at once.
    Start,
    /// Join one room directly, for development (token made from the API key and secret).
    Connect {
        /// The room.
        #[arg(long)]
        room: String,
    },
    /// Plays the scripted callers in eval/ against the configured model and reports per
    /// scenario whether the expected order was stored (exit 1 if fewer passed than
    /// --min-pass, by default all).
    Eval {
        /// Directory of scenario files.
        #[arg(long, default_value = "eval")]
        scenarios: PathBuf,
        /// Only scenarios whose file name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Where to write the full report (JSON).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Exit with status 1 when fewer scenarios pass than this (default: all of them).
        #[arg(long)]
        min_pass: Option<usize>,
    },
    /// The kitchen's order board: today's orders live in a browser, marked done there
    /// (`[board] listen`, default 127.0.0.1:8090; elsewhere BELLA_VISTA_BOARD_TOKEN).
    Board,
    /// The stored orders.
    Orders {
        #[command(subcommand)]
        command: OrdersCommand,
    },
}

#[derive(Debug, Subcommand)]
enum OrdersCommand {
    /// List stored orders.
    List {
        /// Print a JSON array (for other programs).
        #[arg(long)]
        json: bool,
        /// Only orders the webhook receiver has not accepted yet (pending or parked), with
        /// the last error.
        #[arg(long)]
        undelivered: bool,
    },
    /// Deliver confirmed orders to the webhook (`[orders] webhook_url`) from this process
    /// alone, until stopped; for deployments whose workers run with `[orders] deliver =
    /// false`.
    Deliver,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Several TLS back ends are linked in (through different crates); pick one for the
    // process, or the first wss:// or https:// connection would not know which to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_tracing(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let config_error = error.downcast_ref::<ConfigError>().or_else(|| {
                match error.downcast_ref::<AppError>() {
                    Some(AppError::Config(e)) => Some(e),
                    _ => None,
                }
            });
            let usage = config_error.is_some_and(|e| {
                matches!(
                    e,
                    ConfigError::NoProvider | ConfigError::NoLiveKit(_) | ConfigError::Invalid(_)
                )
            });
            eprintln!("error: {error:#}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings). Colour only when stderr is
/// a terminal and `NO_COLOR` is unset: a file or a pipe gets plain text.
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    config.apply_env(&EnvOverrides::from_process());
    if let Some(model) = cli.model {
        config.llm.model = model;
    }
    if let Some(db) = cli.orders_db {
        config.paths.orders_db = Some(OrdersDb::parse(&db));
    }
    if let Some(path) = cli.menu {
        config.paths.menu = path;
    }
    if cli.provider.is_some() {
        config.provider = cli.provider;
    }
    if cli.list_devices {
        return local_audio::list_devices();
    }
    if cli.local {
        let devices = local_audio::LocalDevices {
            input: cli.input_device,
            output: cli.output_device,
            barge_in: cli.barge_in,
        };
        return local_audio::run_local(&config, devices);
    }
    let Some(command) = cli.command else {
        anyhow::bail!(
            "nothing to do: give a command (console, simulate, orders) or --local; see --help"
        );
    };
    match command {
        Command::Console => run_console(&config),
        Command::Simulate {
            caller,
            out,
            report,
            fast,
        } => simulate(&config, &caller, &out, &report, fast),
        Command::Start => run_worker(config),
        Command::Eval {
            scenarios,
            only,
            report,
            min_pass,
        } => run_eval(
            &config,
            &scenarios,
            only.as_deref(),
            report.as_deref(),
            min_pass,
        ),
        Command::Connect { room } => connect(config, &room),
        Command::Orders {
            command: OrdersCommand::List { json, undelivered },
        } => list_orders(&config, json, undelivered),
        Command::Orders {
            command: OrdersCommand::Deliver,
        } => deliver_orders(&config),
        Command::Board => run_board(&config),
    }
}

fn run_console(config: &Config) -> anyhow::Result<()> {
    let llm = language_model(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let restaurant = restaurant(config).await?;
        let _delivery = start_delivery(config, &restaurant)?;
        let session = start_session(config, &restaurant, llm);
        let interactive = std::io::stdin().is_terminal();
        let styled = std::io::stdout().is_terminal();
        let mut renderer = ConsoleRenderer::new(std::io::stdout(), styled);
        console::run(session, tokio::io::stdin(), &mut renderer, interactive).await?;
        Ok(())
    })
}

fn simulate(
    config: &Config,
    caller: &std::path::Path,
    out: &std::path::Path,
    report_path: &std::path::Path,
    fast: bool,
) -> anyhow::Result<()> {
    let llm = language_model(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let restaurant = runtime.block_on(restaurant(config))?;
    let audio = read_wav(caller).with_context(|| format!("reading {}", caller.display()))?;
    let pipeline = config.pipeline_config(&restaurant.prompts.did_not_catch);
    runtime.block_on(async {
        let _delivery = start_delivery(config, &restaurant)?;
        let services = voice_services(config, &restaurant)?;
        let session = start_session(config, &restaurant, llm);
        let input = FileInput::new(&audio, pipeline.frame, !fast);
        let output = Recording::new(config.voice.tts_sample_rate);
        let pace = if fast { Pace::Fast } else { Pace::RealTime };
        let (report, recording) =
            run_call(session, &services, pipeline, input, output, pace).await?;
        write_wav(out, &recording.into_frame())
            .with_context(|| format!("writing {}", out.display()))?;
        std::fs::write(report_path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", report_path.display()))?;
        eprintln!(
            "{} turns, {:.1} s of call; report in {}",
            report.turns.len(),
            report.duration_s,
            report_path.display()
        );
        Ok(())
    })
}

async fn room_calls(
    config: Config,
    server: &LiveKitServer,
) -> anyhow::Result<(RoomCalls, Option<DeliveryTask>)> {
    let llm = language_model(&config)?;
    let restaurant = restaurant(&config).await?;
    let delivery = start_delivery(&config, &restaurant)?;
    let services = voice_services(&config, &restaurant)?;
    let api = ServerApi::new(&server.url, &server.api_key, server.api_secret.expose());
    let calls = RoomCalls::new(Arc::new(config), restaurant, llm, services).with_server_api(api);
    Ok((calls, delivery))
}

fn run_worker(config: Config) -> anyhow::Result<()> {
    let server = LiveKitServer::from_env()?;
    let mut options = WorkerOptions::new(
        &server.url,
        &server.api_key,
        server.api_secret.expose(),
        &config.livekit.agent_name,
    );
    options.capacity = config.livekit.max_jobs;
    if config.provider() == Provider::Local {
        eprintln!(
            "warning: answering with the local model on this machine's CPU; a hosted \
             provider (OPENAI_API_KEY or OPENAI_BASE_URL) is much faster. Taking {} call(s) \
             at once.",
            config.local.max_jobs
        );
        options.capacity = config.local.max_jobs.min(options.capacity);
    }
    options.drain_timeout = std::time::Duration::from_millis(config.livekit.drain_timeout_ms);
    options.cpu_full = Some(config.livekit.cpu_full).filter(|share| *share > 0.0);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        serve_health(&config.livekit.http_listen).await;
        let (calls, _delivery) = room_calls(config, &server).await?;
        let shutdown = async {
            shutdown_signal().await;
            tracing::info!("shutting down: no new calls; finishing the running ones");
        };
        worker::run_worker(options, Arc::new(calls), shutdown).await?;
        Ok(())
    })
}

/// Serves `/health` and `/metrics` on `listen` for as long as the process runs; a port that
/// cannot be had is a warning, not a reason to take no calls (several workers may share a
/// machine).
async fn serve_health(listen: &str) {
    if listen.is_empty() {
        return;
    }
    match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => {
            if let Ok(address) = listener.local_addr() {
                tracing::info!(%address, "health and metrics on http://{address}/health and /metrics");
            }
            let telemetry = bella_vista::telemetry::global();
            tokio::spawn(http::serve(listener, telemetry, std::future::pending()));
        }
        Err(error) => {
            tracing::warn!(listen, %error, "health and metrics endpoint not served");
        }
    }
}

/// SIGTERM (what `docker stop` and Kubernetes send) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn connect(config: Config, room: &str) -> anyhow::Result<()> {
    let server = LiveKitServer::from_env()?;
    let token = AccessToken::with_api_key(&server.api_key, server.api_secret.expose())
        .with_identity("bella-vista-agent")
        .with_name("Bella Vista")
        .with_kind("agent")
        .with_grants(VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            can_update_own_metadata: Some(true),
            agent: true,
            ..VideoGrants::default()
        })
        .to_jwt()?;
    let url = worker::ServerUrl::parse(&server.url)?
        .room_url()
        .to_string();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (calls, _delivery) = room_calls(config, &server).await?;
        tokio::select! {
            result = calls.run(&url, &token) => result.map_err(anyhow::Error::msg)?,
            _ = shutdown_signal() => eprintln!("left the room"),
        }
        Ok(())
    })
}

/// Talking through this computer's microphone and speaker (feature `local-audio`, on by
/// default; off in the container image, which has no sound devices).
#[cfg(feature = "local-audio")]
mod local_audio {
    use bella_vista::app::{language_model, restaurant, start_session, voice_services};
    use bella_vista::config::Config;
    use bella_vista::io::local;
    use bella_vista::voice::call::{Pace, run_call};

    pub(crate) fn list_devices() -> anyhow::Result<()> {
        for device in local::list_devices()? {
            println!("{device}");
        }
        Ok(())
    }

    /// The devices and duplex mode asked for with --local.
    pub(crate) struct LocalDevices {
        pub(crate) input: Option<String>,
        pub(crate) output: Option<String>,
        pub(crate) barge_in: bool,
    }

    pub(crate) fn run_local(config: &Config, devices: LocalDevices) -> anyhow::Result<()> {
        let llm = language_model(config)?;
        let runtime = tokio::runtime::Runtime::new()?;
        let restaurant = runtime.block_on(restaurant(config))?;
        let (input, output) = local::open(devices.input.as_deref(), devices.output.as_deref())?;
        let mut pipeline = config.pipeline_config(&restaurant.prompts.did_not_catch);
        pipeline.interruption.enabled = devices.barge_in;
        eprintln!(
            "Talking through {} and {}{}. Ctrl-C ends the call.",
            input.device(),
            output.device(),
            if devices.barge_in {
                " (barge-in on)"
            } else {
                " (half duplex)"
            }
        );
        runtime.block_on(async {
            let _delivery = super::start_delivery(config, &restaurant)?;
            let services = voice_services(config, &restaurant)?;
            let session = start_session(config, &restaurant, llm);
            let call = run_call(session, &services, pipeline, input, output, Pace::RealTime);
            tokio::select! {
                finished = call => {
                    let (report, _) = finished?;
                    eprintln!("{}", serde_json::to_string_pretty(&report.summary)?);
                }
                _ = tokio::signal::ctrl_c() => eprintln!("call ended"),
            }
            Ok(())
        })
    }
}

/// A build without sound devices: `--local` and `--list-devices` say so.
#[cfg(not(feature = "local-audio"))]
mod local_audio {
    use bella_vista::config::Config;

    const MISSING: &str = "this build has no microphone or speaker support (it was built \
        without the local-audio feature, as the container image is); run it as a LiveKit \
        worker (start) or in the text console";

    pub(crate) struct LocalDevices {
        pub(crate) input: Option<String>,
        pub(crate) output: Option<String>,
        pub(crate) barge_in: bool,
    }

    pub(crate) fn list_devices() -> anyhow::Result<()> {
        anyhow::bail!(MISSING)
    }

    pub(crate) fn run_local(_config: &Config, devices: LocalDevices) -> anyhow::Result<()> {
        let _ = (devices.input, devices.output, devices.barge_in);
        anyhow::bail!(MISSING)
    }
}

fn run_eval(
    config: &Config,
    scenarios: &std::path::Path,
    only: Option<&str>,
    report_path: Option<&std::path::Path>,
    min_pass: Option<usize>,
) -> anyhow::Result<()> {
    let model = match config.provider() {
        Provider::Local => format!("local {}", config.local.llm),
        Provider::Openai => format!("openai {}", config.llm.model),
    };
    let llm = language_model(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(eval::run(config, llm, scenarios, only, model))?;
    eprintln!(
        "{} of {} scenarios stored the expected order ({})",
        report.passed,
        report.scenarios.len(),
        report.model
    );
    if let Some(path) = report_path {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if report.passed < min_pass.unwrap_or(report.scenarios.len()) {
        std::process::exit(1);
    }
    Ok(())
}

fn list_orders(config: &Config, json: bool, undelivered: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    if undelivered {
        return runtime.block_on(list_undelivered(config, json));
    }
    let orders = runtime.block_on(async {
        let store = open_store(config).await?;
        anyhow::Ok(store.list(None).await?)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&orders)?);
        return Ok(());
    }
    if orders.is_empty() {
        println!("No orders yet.");
    }
    for order in &orders {
        println!(
            "#{} {} {} {}",
            order.id(),
            order.created_at(),
            order.total(),
            order.order().payment.method
        );
        for item in &order.order().items {
            let mods = if item.modifications.is_empty() {
                String::new()
            } else {
                format!(" ({})", item.modifications.join(", "))
            };
            println!("    {} x {}{mods}", item.quantity, item.name);
        }
    }
    Ok(())
}

async fn list_undelivered(config: &Config, json: bool) -> anyhow::Result<()> {
    let undelivered = open_store(config).await?.undelivered().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&undelivered)?);
        return Ok(());
    }
    if undelivered.is_empty() {
        println!("Every order was delivered.");
    }
    for delivery in &undelivered {
        println!(
            "#{} {:?} after {} attempt(s){}",
            delivery.order_id,
            delivery.state,
            delivery.attempts,
            delivery
                .last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn deliver_orders(config: &Config) -> anyhow::Result<()> {
    let webhook = Webhook::from_config(&config.orders)?
        .context("no webhook to deliver to: set [orders] webhook_url or BELLA_VISTA_WEBHOOK_URL")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = open_store(config).await?;
        eprintln!(
            "Delivering orders from {} until Ctrl-C.",
            config.orders_db()
        );
        tokio::select! {
            () = deliver_forever(store, webhook) => {}
            () = shutdown_signal() => {}
        }
        Ok(())
    })
}

fn run_board(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = open_store(config).await?;
        let board = board::Board::bind(&config.board, store).await?;
        eprintln!("Order board on {}", board.address_for_people());
        tokio::select! {
            result = board.serve() => result?,
            () = shutdown_signal() => {}
        }
        Ok(())
    })
}

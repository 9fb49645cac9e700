//! The `bella-vista` binary: the command line, settings, logging, and the modes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bella_vista::agent::AgentSession;
use bella_vista::bella_vista::menu::Menu;
use bella_vista::bella_vista::prompts::Prompts;
use bella_vista::bella_vista::store::OrderStore;
use bella_vista::bella_vista::{Restaurant, order_taker};
use bella_vista::config::{Config, ConfigError, EnvOverrides};
use bella_vista::io::console::{self, ConsoleRenderer};
use bella_vista::io::file_audio::{FileInput, Recording};
use bella_vista::io::local;
use bella_vista::io::wav::{read_wav, write_wav};
use bella_vista::llm::openai::OpenAiLlm;
use bella_vista::voice::call::{Pace, VoiceServices, run_call};
use bella_vista::voice::stt::OpenAiStt;
use bella_vista::voice::tts::OpenAiTts;
use bella_vista::voice::vad::VadPool;
use clap::{Parser, Subcommand};

/// Bella Vista: the voice agent that takes restaurant orders.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Settings file (default: the built-in config/default.toml).
    #[arg(long, global = true, env = "BELLA_VISTA_CONFIG")]
    config: Option<PathBuf>,
    /// Order database (default: $XDG_DATA_HOME/bella-vista/orders.db or
    /// ~/.local/share/bella-vista/orders.db, else ./orders.db).
    #[arg(long, global = true)]
    orders_db: Option<PathBuf>,
    /// Model name at the OpenAI-compatible server (overrides config and BELLA_VISTA_MODEL).
    #[arg(long, global = true)]
    model: Option<String>,
    /// Menu file (overrides paths.menu).
    #[arg(long, global = true)]
    menu: Option<PathBuf>,
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Several TLS back ends are linked in (through different crates); pick one for the
    // process, or the first wss:// or https:// connection would not know which to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let usage = error
                .downcast_ref::<ConfigError>()
                .is_some_and(|e| matches!(e, ConfigError::NoProvider));
            eprintln!("error: {error:#}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    config.apply_env(&EnvOverrides::from_process());
    if let Some(model) = cli.model {
        config.llm.model = model;
    }
    if let Some(path) = cli.orders_db {
        config.paths.orders_db = Some(path);
    }
    if let Some(path) = cli.menu {
        config.paths.menu = path;
    }
    if cli.list_devices {
        return list_devices();
    }
    if cli.local {
        let devices = LocalDevices {
            input: cli.input_device,
            output: cli.output_device,
            barge_in: cli.barge_in,
        };
        return run_local(&config, devices);
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
        Command::Orders {
            command: OrdersCommand::List { json },
        } => list_orders(&config, json),
    }
}

fn open_store(config: &Config) -> anyhow::Result<OrderStore> {
    let path = config.orders_db();
    OrderStore::open(&path).with_context(|| format!("opening the order store {}", path.display()))
}

fn restaurant(config: &Config) -> anyhow::Result<Arc<Restaurant>> {
    let menu = Menu::load(&config.paths.menu)?;
    let prompts = Prompts::load(&config.paths.prompts)?;
    Ok(Arc::new(Restaurant {
        menu,
        limits: config.order,
        prompts,
        store: open_store(config)?,
    }))
}

fn run_console(config: &Config) -> anyhow::Result<()> {
    let settings = config.openai_settings()?;
    let restaurant = restaurant(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let llm = OpenAiLlm::new(settings)?;
        let options =
            config.session_options(&restaurant.prompts.apology, &restaurant.prompts.summary);
        let session = AgentSession::new(llm)
            .options(options)
            .start(order_taker(restaurant));
        let interactive = std::io::stdin().is_terminal();
        let styled = std::io::stdout().is_terminal();
        let mut renderer = ConsoleRenderer::new(std::io::stdout(), styled);
        console::run(session, tokio::io::stdin(), &mut renderer, interactive).await?;
        Ok(())
    })
}

fn voice_services(config: &Config, restaurant: &Restaurant) -> anyhow::Result<VoiceServices> {
    let mut vocabulary = vec!["Bella Vista".to_string()];
    vocabulary.extend(restaurant.menu.item_names().into_iter().map(str::to_string));
    Ok(VoiceServices {
        stt: Arc::new(OpenAiStt::new(config.stt_settings())?),
        tts: Arc::new(OpenAiTts::new(config.tts_settings())?),
        vad: VadPool::start(config.voice.vad_aggressiveness),
        vocabulary,
    })
}

fn start_session(
    config: &Config,
    restaurant: &Arc<Restaurant>,
    llm: OpenAiLlm,
) -> bella_vista::agent::SessionHandle {
    let options = config.session_options(&restaurant.prompts.apology, &restaurant.prompts.summary);
    AgentSession::new(llm)
        .options(options)
        .start(order_taker(restaurant.clone()))
}

fn simulate(
    config: &Config,
    caller: &std::path::Path,
    out: &std::path::Path,
    report_path: &std::path::Path,
    fast: bool,
) -> anyhow::Result<()> {
    let settings = config.openai_settings()?;
    let restaurant = restaurant(config)?;
    let audio = read_wav(caller).with_context(|| format!("reading {}", caller.display()))?;
    let pipeline = config.pipeline_config(&restaurant.prompts.did_not_catch);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let services = voice_services(config, &restaurant)?;
        let session = start_session(config, &restaurant, OpenAiLlm::new(settings)?);
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

fn list_devices() -> anyhow::Result<()> {
    for device in local::list_devices()? {
        println!("{device}");
    }
    Ok(())
}

/// The devices and duplex mode asked for with --local.
struct LocalDevices {
    input: Option<String>,
    output: Option<String>,
    barge_in: bool,
}

fn run_local(config: &Config, devices: LocalDevices) -> anyhow::Result<()> {
    let settings = config.openai_settings()?;
    let restaurant = restaurant(config)?;
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
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let services = voice_services(config, &restaurant)?;
        let session = start_session(config, &restaurant, OpenAiLlm::new(settings)?);
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

fn list_orders(config: &Config, json: bool) -> anyhow::Result<()> {
    let orders = open_store(config)?.list()?;
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

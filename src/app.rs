//! Assembling the product from its parts, for every mode the binary has: the restaurant
//! from the config files, the model and speech providers, a session per call, and the
//! LiveKit job handler. `main.rs` only parses the command line and calls in here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::agent::CallerInfo;
use crate::agent::{AgentSession, SessionHandle};
use crate::bella_vista::delivery::{DeliveryTask, Webhook};
use crate::bella_vista::menu::Menu;
use crate::bella_vista::prompts::Prompts;
use crate::bella_vista::store::{OrderStore, OrdersDb};
use crate::bella_vista::{Restaurant, WallClock, order_taker_for};
use crate::config::Config;
use crate::config::Provider;
use crate::io::livekit::agent_call::{RoomCallOptions, ServerApi, run_room_call};
use crate::io::livekit::room::{Room, RoomOptions};
use crate::io::livekit::worker::{AssignedJob, JobHandler};
use crate::llm::Llm;
use crate::llm::openai::OpenAiLlm;
use crate::voice::call::VoiceServices;
use crate::voice::espeak_tts::{EspeakTts, EspeakTtsSettings};
use crate::voice::pipeline::PipelineConfig;
use crate::voice::stt::{OpenAiStt, Stt};
use crate::voice::tts::{OpenAiTts, Tts};
use crate::voice::vad::VadPool;
use crate::voice::whisper_stt::{WhisperStt, WhisperSttSettings};

/// Why the product could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The menu file.
    #[error(transparent)]
    Menu(#[from] crate::bella_vista::menu::MenuError),
    /// The prompts directory.
    #[error(transparent)]
    Prompts(#[from] crate::bella_vista::prompts::PromptError),
    /// The order store's directory does not let this user write.
    #[error(
        "cannot write the order store in {}: that directory is not writable by this \
         process's user (uid {}). Give it to that user (for the container image, whose \
         user is uid 10001 and whose orders live in /data: `chown 10001:10001 DIR` on the \
         host directory mounted there) or choose another with --orders-db",
        dir.display(),
        user_id()
    )]
    DirNotWritable {
        /// The directory.
        dir: std::path::PathBuf,
    },
    /// The order store.
    #[error("opening the order store {path}: {source}")]
    Store {
        /// The database file or URL (without its password).
        path: String,
        /// Why.
        source: crate::bella_vista::store::StoreError,
    },
    /// Speech to text settings.
    #[error(transparent)]
    Stt(#[from] crate::voice::stt::SttError),
    /// Text to speech settings.
    #[error(transparent)]
    Tts(#[from] crate::voice::tts::TtsError),
    /// Settings.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The OpenAI-compatible model.
    #[error(transparent)]
    Model(#[from] crate::llm::LlmError),
    /// The local model.
    #[error(transparent)]
    LocalModel(#[from] crate::llm::local::LocalLlmError),
    /// The local model's file.
    #[cfg(feature = "local-llm")]
    #[error(transparent)]
    ModelFile(#[from] crate::llm::local::files::ModelFileError),
    /// Eval scenarios.
    #[error(transparent)]
    Scenarios(#[from] crate::bella_vista::eval::ScenarioError),
}

/// The language model the config names: an OpenAI-compatible server, or the local model
/// (loaded now; its file fetched into the Hugging Face cache first if it is not there).
pub fn language_model(config: &Config) -> Result<Arc<dyn Llm>, AppError> {
    match config.provider() {
        Provider::Openai => Ok(Arc::new(OpenAiLlm::new(config.openai_settings()?)?)),
        Provider::Local => local_language_model(config),
    }
}

#[cfg(feature = "local-llm")]
fn local_language_model(config: &Config) -> Result<Arc<dyn Llm>, AppError> {
    use crate::llm::local::files::{ModelSpec, resolve};
    use crate::llm::local::{LocalLlm, LocalLlmSettings};
    let model = resolve(&ModelSpec::parse(&config.local.llm))?;
    let threads = local_threads(config);
    tracing::info!(model = %model.display(), threads, "loading the local model");
    let llm = LocalLlm::load(LocalLlmSettings {
        model,
        context_tokens: config.local.context_tokens,
        max_reply_tokens: config.local.max_reply_tokens,
        threads,
    })?;
    Ok(Arc::new(llm))
}

#[cfg(not(feature = "local-llm"))]
fn local_language_model(_: &Config) -> Result<Arc<dyn Llm>, AppError> {
    Err(crate::llm::local::LocalLlmError::NotBuilt.into())
}

/// The order store named in the config: a SQLite file (created when missing) or
/// PostgreSQL (connected and migrated). With a webhook configured, confirmations queue
/// their delivery in the same transaction.
pub async fn open_store(config: &Config) -> Result<OrderStore, AppError> {
    let db = config.orders_db();
    let webhook = config.orders.webhook()?;
    let store = OrderStore::connect(&db).await.map_err(|source| match &db {
        OrdersDb::Sqlite(path) => match unwritable_dir(path) {
            Some(dir) => AppError::DirNotWritable { dir },
            None => AppError::Store {
                path: db.to_string(),
                source,
            },
        },
        OrdersDb::Postgres(_) => AppError::Store {
            path: db.to_string(),
            source,
        },
    })?;
    Ok(if webhook.is_some() {
        store.with_outbox()
    } else {
        store
    })
}

/// Delivers webhooks from this process, when one is configured and `[orders] deliver` is
/// on. Delivery stops when the returned task is dropped.
pub fn start_delivery(
    config: &Config,
    restaurant: &Restaurant,
) -> Result<Option<DeliveryTask>, AppError> {
    if !config.orders.deliver {
        return Ok(None);
    }
    let Some(webhook) = Webhook::from_config(&config.orders)? else {
        return Ok(None);
    };
    Ok(Some(DeliveryTask::spawn(restaurant.store.clone(), webhook)))
}

/// The database's directory, when this process cannot create files in it (the usual
/// reason a database cannot be opened: a host directory mounted on the image's `/data`).
fn unwritable_dir(db: &std::path::Path) -> Option<std::path::PathBuf> {
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty())?;
    let probe = dir.join(format!(".bella-vista-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(dir.to_path_buf()),
        Err(_) => None,
    }
}

/// This process's user id, for error messages (from `/proc/self/status`).
fn user_id() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(1).map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

/// The restaurant: menu, rules, prompts and store, from the config.
pub async fn restaurant(config: &Config) -> Result<Arc<Restaurant>, AppError> {
    restaurant_with_store(config, open_store(config).await?)
}

/// The restaurant from the config, with its orders in `store`.
pub fn restaurant_with_store(
    config: &Config,
    store: OrderStore,
) -> Result<Arc<Restaurant>, AppError> {
    Ok(Arc::new(Restaurant {
        menu: Menu::load(&config.paths.menu)?,
        limits: config.order,
        prompts: Prompts::load(&config.paths.prompts)?,
        store,
        transfer_to: config.phone.transfer_target(),
        small_model: config.provider() == Provider::Local,
        clock: WallClock::system(),
    }))
}

/// Speech providers and VAD, with the menu's dishes as the transcription vocabulary.
pub fn voice_services(config: &Config, restaurant: &Restaurant) -> Result<VoiceServices, AppError> {
    let mut vocabulary = vec!["Bella Vista".to_string()];
    vocabulary.extend(restaurant.menu.item_names().into_iter().map(str::to_string));
    vocabulary.extend(
        restaurant
            .prompts
            .speech_vocabulary
            .lines()
            .map(str::trim)
            .filter(|term| !term.is_empty())
            .map(str::to_string),
    );
    let (stt, tts): (Arc<dyn Stt>, Arc<dyn Tts>) = match config.provider() {
        Provider::Openai => (
            Arc::new(OpenAiStt::new(config.stt_settings())?),
            Arc::new(OpenAiTts::new(config.tts_settings())?),
        ),
        Provider::Local => (
            Arc::new(local_speech_to_text(config)?),
            Arc::new(EspeakTts::new(EspeakTtsSettings {
                voice: config.local.tts_voice.clone(),
                words_per_minute: config.local.tts_words_per_minute,
                ..EspeakTtsSettings::default()
            })?),
        ),
    };
    Ok(VoiceServices {
        stt,
        tts,
        vad: VadPool::start(config.voice.vad_aggressiveness),
        vocabulary,
    })
}

/// Whisper on this machine: the model file the config names (fetched into the Hugging
/// Face cache first if it is not there) and the `bella-vista-stt` helper next to this
/// program (or where `BELLA_VISTA_STT_PROGRAM` says).
#[cfg(feature = "local-llm")]
fn local_speech_to_text(config: &Config) -> Result<WhisperStt, AppError> {
    use crate::llm::local::files::{ModelSpec, resolve};
    let model = resolve(&ModelSpec::parse(&config.local.stt))?;
    let program = std::env::var_os("BELLA_VISTA_STT_PROGRAM")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.with_file_name("bella-vista-stt"))
        })
        .unwrap_or_else(|| "bella-vista-stt".into());
    let stt = WhisperStt::new(WhisperSttSettings {
        program,
        model,
        threads: local_threads(config),
        load_timeout: std::time::Duration::from_secs(60),
        timeout: std::time::Duration::from_millis(config.voice.stt_timeout_ms),
    })?;
    Ok(stt)
}

#[cfg(not(feature = "local-llm"))]
fn local_speech_to_text(_: &Config) -> Result<WhisperStt, AppError> {
    Err(crate::llm::local::LocalLlmError::NotBuilt.into())
}

/// CPU threads for the local models (config `threads`, 0: every core).
fn local_threads(config: &Config) -> usize {
    match config.local.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
}

/// A new call answered by the order taker.
pub fn start_session(
    config: &Config,
    restaurant: &Arc<Restaurant>,
    llm: Arc<dyn Llm>,
) -> SessionHandle {
    start_session_for(config, restaurant, llm, Arc::new(CallerInfo::default()))
}

/// A new call answered by the order taker, for a caller the transport will describe.
pub fn start_session_for(
    config: &Config,
    restaurant: &Arc<Restaurant>,
    llm: Arc<dyn Llm>,
    caller: Arc<CallerInfo>,
) -> SessionHandle {
    let options = config.session_options(&restaurant.prompts);
    AgentSession::with_shared_llm(llm)
        .options(options)
        .start(order_taker_for(restaurant.clone(), caller))
}

/// Everything one call in a room needs; shared by all calls of a worker.
#[derive(Clone)]
pub struct RoomCalls {
    config: Arc<Config>,
    restaurant: Arc<Restaurant>,
    llm: Arc<dyn Llm>,
    services: VoiceServices,
    pipeline: PipelineConfig,
    api: Option<ServerApi>,
}

impl RoomCalls {
    /// Calls answered by Bella Vista with these providers.
    pub fn new(
        config: Arc<Config>,
        restaurant: Arc<Restaurant>,
        llm: Arc<dyn Llm>,
        services: VoiceServices,
    ) -> Self {
        let mut pipeline = config.pipeline_config(&restaurant.prompts.did_not_catch);
        pipeline.silence_prompt = config.phone.silence_prompt();
        RoomCalls {
            config,
            restaurant,
            llm,
            services,
            pipeline,
            api: None,
        }
    }

    /// Lets calls hang up and transfer through the server's APIs (without them the agent
    /// can only leave the room).
    pub fn with_server_api(mut self, api: ServerApi) -> Self {
        self.api = Some(api);
        self
    }

    /// Joins the room at `url` with `token` and runs one call there until the caller leaves.
    pub async fn run(&self, url: &str, token: &str) -> Result<(), String> {
        let (room, events) = Room::connect(url, token, RoomOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let caller = Arc::new(CallerInfo::default());
        caller.set_room(room.name(), room.identity());
        let session = start_session_for(
            &self.config,
            &self.restaurant,
            self.llm.clone(),
            caller.clone(),
        );
        let options = RoomCallOptions {
            services: self.services.clone(),
            pipeline: self.pipeline.clone(),
            caller_wait: std::time::Duration::from_millis(self.config.livekit.caller_wait_ms),
            api: self.api.clone(),
        };
        let report = run_room_call(room, events, session, options, caller)
            .await
            .map_err(|e| e.to_string())?;
        let telemetry = crate::telemetry::global();
        for turn in &report.turns {
            telemetry.record_turn(&turn.metrics);
        }
        tracing::info!(turns = report.turns.len(), duration_s = report.duration_s, hung_up = report.hung_up, summary = ?report.summary, "room call ended");
        Ok(())
    }
}

impl JobHandler for RoomCalls {
    fn run(&self, job: AssignedJob) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        let calls = self.clone();
        Box::pin(async move {
            tracing::info!(job = %job.job_id, room = %job.room_name, "job started");
            let call = calls.run(&job.url, &job.token);
            tokio::pin!(call);
            tokio::select! {
                result = &mut call => result,
                () = job.cancel.cancelled() => {
                    // The server ends a job as the caller leaves, often while the call is
                    // finishing by itself: give it a moment before calling it cancelled.
                    match tokio::time::timeout(std::time::Duration::from_secs(3), &mut call).await {
                        Ok(result) => result,
                        Err(_) => Err("cancelled".into()),
                    }
                }
            }
        })
    }
}

//! Typed settings: `config/default.toml` (built in, or the file given), then environment
//! variables, then command-line flags, each overriding the one before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::agent::SessionOptions;
use crate::bella_vista::order::OrderLimits;
use crate::bella_vista::prompts::Prompts;
use crate::bella_vista::reply_guard::OrderFactsGuard;
use crate::bella_vista::store::OrdersDb;
use crate::llm::openai::OpenAiSettings;
use crate::voice::endpointing::EndpointingConfig;
use crate::voice::pipeline::{InterruptionConfig, PipelineConfig};
use crate::voice::speech_detector::SpeechDetectorConfig;
use crate::voice::stt::OpenAiSttSettings;
use crate::voice::tts::OpenAiTtsSettings;
use crate::voice::vad::VadAggressiveness;

/// The built-in defaults (the repository's `config/default.toml`).
const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Why the settings could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("invalid config {origin}: {message}")]
    Syntax {
        /// The file, or "built-in defaults".
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// Neither an API key nor a server address is set.
    #[error(
        "no model server configured: set OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL \
         (for another OpenAI-compatible server)"
    )]
    NoProvider,
    /// LiveKit variables are missing.
    #[error("no LiveKit server configured: set {0}")]
    NoLiveKit(String),
    /// A setting has a value that cannot work.
    #[error("invalid setting {0}")]
    Invalid(String),
}

/// Model settings as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Model name.
    pub model: String,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Connection time-out in milliseconds.
    pub connect_timeout_ms: u64,
    /// First-token time-out in milliseconds.
    pub first_token_timeout_ms: u64,
    /// Time-out between tokens in milliseconds.
    pub idle_timeout_ms: u64,
    /// Retries before anything was streamed.
    pub max_retries: u32,
    /// First retry pause in milliseconds.
    pub initial_backoff_ms: u64,
    /// Longest retry pause in milliseconds.
    pub max_backoff_ms: u64,
    /// Server address (from `OPENAI_BASE_URL`; may also be written here).
    #[serde(default)]
    pub base_url: Option<String>,
    /// API key (from `OPENAI_API_KEY` only; never written in the file).
    #[serde(skip)]
    pub api_key: Option<Secret>,
}

/// A credential. `Debug` prints `<redacted>`, so a config or error that is logged never
/// carries it; [`Secret::expose`] is the one way to the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Conversation engine settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Most tool round trips per reply.
    pub max_tool_steps: usize,
}

/// Voice pipeline settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceConfig {
    /// Transcription model.
    pub stt_model: String,
    /// Language hint for transcription.
    #[serde(default)]
    pub stt_language: Option<String>,
    /// Transcription server, when not the model server.
    #[serde(default)]
    pub stt_base_url: Option<String>,
    /// Transcription time-out in milliseconds.
    pub stt_timeout_ms: u64,
    /// Speech model.
    pub tts_model: String,
    /// Voice name.
    pub tts_voice: String,
    /// Rate of the PCM the speech server sends.
    pub tts_sample_rate: u32,
    /// Speech server, when not the model server.
    #[serde(default)]
    pub tts_base_url: Option<String>,
    /// Speech first-byte time-out in milliseconds.
    pub tts_first_byte_timeout_ms: u64,
    /// VAD aggressiveness.
    pub vad_aggressiveness: VadAggressiveness,
    /// Pre-roll in milliseconds.
    pub preroll_ms: u64,
    /// Speech start/end hysteresis.
    pub speech: SpeechDetectorConfig,
    /// Endpointing delays.
    pub endpointing: EndpointingConfig,
    /// Interruptions.
    pub interruption: InterruptionConfig,
}

/// LiveKit worker settings (the server and its credentials come from the environment).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveKitConfig {
    /// Agent name for dispatch.
    pub agent_name: String,
    /// Most calls at once in one worker.
    pub max_jobs: usize,
    /// Longest wait for running calls on shutdown, in milliseconds.
    pub drain_timeout_ms: u64,
    /// How long a job waits for the caller's audio before it leaves the room, in ms.
    pub caller_wait_ms: u64,
    /// Where `start` serves `/health` and `/metrics` (`host:port`); empty: nowhere.
    #[serde(default = "default_http_listen")]
    pub http_listen: String,
    /// The CPU share (0 to 1) at which a worker with calls tells the server it is full;
    /// 0: only `max_jobs` counts.
    #[serde(default = "default_cpu_full")]
    pub cpu_full: f32,
}

fn default_http_listen() -> String {
    "0.0.0.0:8081".into()
}

fn default_cpu_full() -> f32 {
    0.9
}

/// The LiveKit server and credentials: `LIVEKIT_URL`, `LIVEKIT_API_KEY`,
/// `LIVEKIT_API_SECRET`.
#[derive(Debug, Clone)]
pub struct LiveKitServer {
    /// Server URL (ws://, wss://, http:// or https://).
    pub url: String,
    /// API key.
    pub api_key: String,
    /// API secret.
    pub api_secret: Secret,
}

impl LiveKitServer {
    /// Reads the three variables; an error naming the missing ones.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match (
            var("LIVEKIT_URL"),
            var("LIVEKIT_API_KEY"),
            var("LIVEKIT_API_SECRET"),
        ) {
            (Some(url), Some(api_key), Some(api_secret)) => Ok(LiveKitServer {
                url,
                api_key,
                api_secret: Secret::new(api_secret),
            }),
            (url, key, secret) => {
                let missing: Vec<&str> = [
                    (url.is_none(), "LIVEKIT_URL"),
                    (key.is_none(), "LIVEKIT_API_KEY"),
                    (secret.is_none(), "LIVEKIT_API_SECRET"),
                ]
                .into_iter()
                .filter_map(|(missing, name)| missing.then_some(name))
                .collect();
                Err(ConfigError::NoLiveKit(missing.join(", ")))
            }
        }
    }
}

/// Where confirmed orders go besides the database. Optional in a config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// Each confirmed order is POSTed here as signed JSON; empty: no webhook.
    pub webhook_url: String,
    /// The key that signs webhooks (HMAC-SHA256). Only from `BELLA_VISTA_WEBHOOK_SECRET`,
    /// never written in the file.
    #[serde(skip)]
    pub webhook_secret: Option<Secret>,
    /// Whether this process delivers webhooks (false: `bella-vista orders deliver` does).
    pub deliver: bool,
    /// The longest pause between two attempts at one delivery (ms); pauses start at 1 s
    /// and double up to it.
    pub retry_max_ms: u64,
    /// How long one POST may take (ms).
    pub webhook_timeout_ms: u64,
    /// How often the deliverer looks for orders confirmed by other workers (ms).
    pub poll_ms: u64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            webhook_url: String::new(),
            webhook_secret: None,
            deliver: true,
            retry_max_ms: 60_000,
            webhook_timeout_ms: 10_000,
            poll_ms: 1_000,
        }
    }
}

impl OrdersConfig {
    /// The webhook's URL, checked: `None` when none is set, an error when it is not an
    /// absolute `http(s)` URL.
    pub fn webhook(&self) -> Result<Option<reqwest::Url>, ConfigError> {
        let text = self.webhook_url.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let invalid =
            |why: &str| ConfigError::Invalid(format!("orders.webhook_url {text:?}: {why}"));
        let url = reqwest::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("must be an http:// or https:// URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("has no host"));
        }
        Ok(Some(url))
    }
}

/// The kitchen's order board (`bella-vista board`). Optional in a config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoardConfig {
    /// host:port to serve the board on (env `BELLA_VISTA_BOARD_LISTEN`). Anything but a
    /// loopback address needs a token.
    pub listen: String,
    /// The token staff add to the board's address (`?token=...`); only from
    /// `BELLA_VISTA_BOARD_TOKEN`, never written in the file.
    #[serde(skip)]
    pub token: Option<Secret>,
    /// How often the board looks for new orders (ms).
    pub poll_ms: u64,
}

impl Default for BoardConfig {
    fn default() -> Self {
        BoardConfig {
            listen: "127.0.0.1:8090".into(),
            token: None,
            poll_ms: 250,
        }
    }
}

/// Phone calls (callers through LiveKit SIP). Optional in a config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhoneConfig {
    /// Where `transfer_to_staff` hands a phone caller: a number (`+15550199`) or a
    /// `tel:`/`sip:` address. Empty: the agent cannot transfer.
    pub transfer_to: String,
    /// A caller silent this long (ms) while the agent listens is asked whether they are
    /// still there; after a second silence the agent says goodbye and hangs up. 0: never.
    pub silence_prompt_ms: u64,
}

impl Default for PhoneConfig {
    fn default() -> Self {
        PhoneConfig {
            transfer_to: String::new(),
            silence_prompt_ms: 15_000,
        }
    }
}

impl PhoneConfig {
    /// The transfer destination as LiveKit's `TransferSIPParticipant` wants it (`tel:` for a
    /// bare number), or `None` when none is set.
    pub fn transfer_target(&self) -> Option<String> {
        let to = self.transfer_to.trim();
        if to.is_empty() {
            None
        } else if to.starts_with("tel:") || to.starts_with("sip:") || to.starts_with("sips:") {
            Some(to.to_string())
        } else {
            Some(format!("tel:{to}"))
        }
    }

    /// The silence before the agent asks whether the caller is still there.
    pub fn silence_prompt(&self) -> Option<Duration> {
        (self.silence_prompt_ms > 0).then(|| Duration::from_millis(self.silence_prompt_ms))
    }
}

/// Which models answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Models inside this process (llama.cpp), no account needed: see `[local]`.
    Local,
    /// An OpenAI-compatible server (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
    Openai,
}

/// The built-in local stack (used when no OpenAI-compatible provider is configured, or
/// with `--provider local`). Optional in a config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// The language model: a GGUF file path, or `ORG/NAME:FILE` on Hugging Face (taken from
    /// the cache in `$HF_HOME/hub`, downloaded there on first use).
    pub llm: String,
    /// Tokens of conversation the model's context holds.
    pub context_tokens: u32,
    /// Longest reply, in tokens.
    pub max_reply_tokens: usize,
    /// CPU threads (0: all cores).
    pub threads: usize,
    /// Calls one worker takes at once with local models (they share the CPU).
    pub max_jobs: usize,
    /// The speech-to-text model (whisper.cpp, ggml): a file path or `ORG/NAME:FILE` on
    /// Hugging Face, like `llm`.
    pub stt: String,
    /// The espeak-ng voice the agent speaks with (`espeak-ng --voices`).
    pub tts_voice: String,
    /// How fast it speaks, in words per minute.
    pub tts_words_per_minute: u32,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            llm: "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF:qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
                .into(),
            context_tokens: 4096,
            max_reply_tokens: 160,
            threads: 0,
            max_jobs: 1,
            stt: "ggerganov/whisper.cpp:ggml-base.bin".into(),
            tts_voice: "en-us".into(),
            tts_words_per_minute: 165,
        }
    }
}

/// File locations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// The menu file.
    pub menu: PathBuf,
    /// Directory of prompt overrides.
    pub prompts: PathBuf,
    /// The order database: a SQLite file, or a `postgres://` URL shared by many workers.
    #[serde(default)]
    pub orders_db: Option<OrdersDb>,
}

/// All settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The model.
    pub llm: LlmConfig,
    /// The conversation engine.
    pub session: SessionConfig,
    /// The voice pipeline.
    pub voice: VoiceConfig,
    /// The LiveKit worker.
    pub livekit: LiveKitConfig,
    /// Phone calls.
    #[serde(default)]
    pub phone: PhoneConfig,
    /// Where confirmed orders are sent.
    #[serde(default)]
    pub orders: OrdersConfig,
    /// The kitchen's order board.
    #[serde(default)]
    pub board: BoardConfig,
    /// The built-in local models.
    #[serde(default)]
    pub local: LocalConfig,
    /// Which models answer; `None`: an OpenAI-compatible server when a key or address is
    /// set, else the local models (`--provider` sets it).
    #[serde(default)]
    pub provider: Option<Provider>,
    /// Order rules.
    pub order: OrderLimits,
    /// Files.
    pub paths: PathsConfig,
}

/// Values from the environment that override the file (read by the binary; tests pass
/// their own).
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    /// `OPENAI_API_KEY`.
    pub api_key: Option<Secret>,
    /// `OPENAI_BASE_URL`.
    pub base_url: Option<String>,
    /// `BELLA_VISTA_MODEL`.
    pub model: Option<String>,
    /// `BELLA_VISTA_ORDERS_DB`.
    pub orders_db: Option<OrdersDb>,
    /// `BELLA_VISTA_WEBHOOK_URL`.
    pub webhook_url: Option<String>,
    /// `BELLA_VISTA_WEBHOOK_SECRET`.
    pub webhook_secret: Option<Secret>,
    /// `BELLA_VISTA_BOARD_TOKEN`.
    pub board_token: Option<Secret>,
    /// `BELLA_VISTA_BOARD_LISTEN`.
    pub board_listen: Option<String>,
    /// `BELLA_VISTA_HTTP_LISTEN` (set but empty: no endpoint).
    pub http_listen: Option<String>,
    /// `XDG_DATA_HOME`.
    pub xdg_data_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
}

impl EnvOverrides {
    /// Reads the variables from this process's environment; empty values count as unset.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        EnvOverrides {
            api_key: var("OPENAI_API_KEY").map(Secret::new),
            base_url: var("OPENAI_BASE_URL"),
            model: var("BELLA_VISTA_MODEL"),
            orders_db: var("BELLA_VISTA_ORDERS_DB").map(|db| OrdersDb::parse(&db)),
            webhook_url: var("BELLA_VISTA_WEBHOOK_URL"),
            webhook_secret: var("BELLA_VISTA_WEBHOOK_SECRET").map(Secret::new),
            board_token: var("BELLA_VISTA_BOARD_TOKEN").map(Secret::new),
            board_listen: var("BELLA_VISTA_BOARD_LISTEN"),
            http_listen: std::env::var("BELLA_VISTA_HTTP_LISTEN").ok(),
            xdg_data_home: var("XDG_DATA_HOME").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
        }
    }
}

impl Config {
    /// The built-in defaults.
    pub fn builtin() -> Result<Self, ConfigError> {
        Self::parse(DEFAULT_TOML, "built-in defaults")
    }

    /// Reads `path`, or the built-in defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::builtin(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::parse(&text, &path.display().to_string())
            }
        }
    }

    fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Syntax {
            origin: origin.to_string(),
            message: error.to_string(),
        })
    }

    /// Applies environment overrides.
    pub fn apply_env(&mut self, env: &EnvOverrides) {
        if env.api_key.is_some() {
            self.llm.api_key = env.api_key.clone();
        }
        if env.base_url.is_some() {
            self.llm.base_url = env.base_url.clone();
        }
        if let Some(model) = &env.model {
            self.llm.model = model.clone();
        }
        if env.orders_db.is_some() {
            self.paths.orders_db = env.orders_db.clone();
        }
        if let Some(url) = &env.webhook_url {
            self.orders.webhook_url = url.clone();
        }
        if env.webhook_secret.is_some() {
            self.orders.webhook_secret = env.webhook_secret.clone();
        }
        if env.board_token.is_some() {
            self.board.token = env.board_token.clone();
        }
        if let Some(listen) = &env.board_listen {
            self.board.listen = listen.clone();
        }
        if let Some(listen) = &env.http_listen {
            self.livekit.http_listen = listen.trim().to_string();
        }
        if self.paths.orders_db.is_none() {
            self.paths.orders_db = Some(OrdersDb::Sqlite(default_orders_db(env)));
        }
    }

    /// Which models answer: as set, else an OpenAI-compatible server when a key or address
    /// is set, else the local models.
    pub fn provider(&self) -> Provider {
        match self.provider {
            Some(provider) => provider,
            None if self.llm.api_key.is_some() || self.llm.base_url.is_some() => Provider::Openai,
            None => Provider::Local,
        }
    }

    /// The model settings; an error when neither a key nor a server address is set.
    pub fn openai_settings(&self) -> Result<OpenAiSettings, ConfigError> {
        if self.llm.api_key.is_none() && self.llm.base_url.is_none() {
            return Err(ConfigError::NoProvider);
        }
        let ms = Duration::from_millis;
        Ok(OpenAiSettings {
            base_url: self.llm.base_url.clone(),
            api_key: self
                .llm
                .api_key
                .as_ref()
                .map(|key| key.expose().to_string()),
            model: self.llm.model.clone(),
            temperature: self.llm.temperature,
            connect_timeout: ms(self.llm.connect_timeout_ms),
            first_token_timeout: ms(self.llm.first_token_timeout_ms),
            idle_timeout: ms(self.llm.idle_timeout_ms),
            max_retries: self.llm.max_retries,
            initial_backoff: ms(self.llm.initial_backoff_ms),
            max_backoff: ms(self.llm.max_backoff_ms),
        })
    }

    /// Transcription settings (same server and key as the model unless overridden).
    pub fn stt_settings(&self) -> OpenAiSttSettings {
        OpenAiSttSettings {
            base_url: self
                .voice
                .stt_base_url
                .clone()
                .or(self.llm.base_url.clone()),
            api_key: self
                .llm
                .api_key
                .as_ref()
                .map(|key| key.expose().to_string()),
            model: self.voice.stt_model.clone(),
            language: self.voice.stt_language.clone(),
            timeout: Duration::from_millis(self.voice.stt_timeout_ms),
            ..OpenAiSttSettings::default()
        }
    }

    /// Speech settings (same server and key as the model unless overridden).
    pub fn tts_settings(&self) -> OpenAiTtsSettings {
        OpenAiTtsSettings {
            base_url: self
                .voice
                .tts_base_url
                .clone()
                .or(self.llm.base_url.clone()),
            api_key: self
                .llm
                .api_key
                .as_ref()
                .map(|key| key.expose().to_string()),
            model: self.voice.tts_model.clone(),
            voice: self.voice.tts_voice.clone(),
            sample_rate: self.voice.tts_sample_rate,
            first_byte_timeout: Duration::from_millis(self.voice.tts_first_byte_timeout_ms),
            ..OpenAiTtsSettings::default()
        }
    }

    /// The pipeline settings, with what to say when a transcription fails.
    pub fn pipeline_config(&self, did_not_catch: &str) -> PipelineConfig {
        PipelineConfig {
            speech: self.voice.speech,
            endpointing: self.voice.endpointing,
            interruption: self.voice.interruption,
            preroll: Duration::from_millis(self.voice.preroll_ms),
            did_not_catch: did_not_catch.to_string(),
            ..PipelineConfig::default()
        }
    }

    /// The engine settings, with what the agent says taken from `prompts`.
    pub fn session_options(&self, prompts: &Prompts) -> SessionOptions {
        SessionOptions {
            max_tool_steps: self.session.max_tool_steps,
            apology: prompts.apology.clone(),
            summary_instructions: prompts.summary.clone(),
            still_there: prompts.still_there.clone(),
            goodbye: prompts.silence_goodbye.clone(),
            key_press_note: prompts.key_press.clone(),
            reply_check: Some(std::sync::Arc::new(OrderFactsGuard {
                fallback: prompts.guard_fallback.clone(),
            })),
            ..SessionOptions::default()
        }
    }

    /// Where orders are stored.
    pub fn orders_db(&self) -> OrdersDb {
        self.paths
            .orders_db
            .clone()
            .unwrap_or_else(|| OrdersDb::Sqlite(PathBuf::from("orders.db")))
    }
}

/// `$XDG_DATA_HOME/bella-vista/orders.db`, else `~/.local/share/bella-vista/orders.db`,
/// else `./orders.db`.
pub fn default_orders_db(env: &EnvOverrides) -> PathBuf {
    if let Some(data) = &env.xdg_data_home {
        return data.join("bella-vista").join("orders.db");
    }
    if let Some(home) = &env.home {
        return home
            .join(".local")
            .join("share")
            .join("bella-vista")
            .join("orders.db");
    }
    PathBuf::from("orders.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_defaults_parse() {
        let config = Config::builtin().unwrap();
        assert_eq!(config.llm.model, "gpt-4o-mini");
        assert_eq!(config.order.max_quantity, 20);
        assert!(config.openai_settings().is_err(), "no key and no url");
    }

    #[test]
    fn env_overrides_the_file() {
        let mut config = Config::builtin().unwrap();
        config.apply_env(&EnvOverrides {
            base_url: Some("http://127.0.0.1:9/v1".into()),
            model: Some("local".into()),
            home: Some("/home/x".into()),
            ..EnvOverrides::default()
        });
        let settings = config.openai_settings().unwrap();
        assert_eq!(settings.model, "local");
        assert_eq!(settings.first_token_timeout, Duration::from_secs(20));
        assert_eq!(
            config.orders_db(),
            OrdersDb::Sqlite(PathBuf::from("/home/x/.local/share/bella-vista/orders.db"))
        );
    }

    #[test]
    fn phone_settings_are_optional_and_numbers_become_tel_addresses() {
        let start = DEFAULT_TOML.find("\n[phone]").unwrap();
        let end = DEFAULT_TOML.find("\n[order]").unwrap();
        let without = format!("{}{}", &DEFAULT_TOML[..start], &DEFAULT_TOML[end..]);
        let config = Config::parse(&without, "test").unwrap();
        assert_eq!(config.phone.transfer_target(), None);
        assert_eq!(config.phone.silence_prompt(), Some(Duration::from_secs(15)));
        let phone = PhoneConfig {
            transfer_to: " +15550199 ".into(),
            silence_prompt_ms: 0,
        };
        assert_eq!(phone.transfer_target().as_deref(), Some("tel:+15550199"));
        assert_eq!(phone.silence_prompt(), None);
        let sip = PhoneConfig {
            transfer_to: "sip:staff@pbx.example".into(),
            ..PhoneConfig::default()
        };
        assert_eq!(
            sip.transfer_target().as_deref(),
            Some("sip:staff@pbx.example")
        );
    }

    #[test]
    fn without_a_key_or_address_the_local_models_answer() {
        let mut config = Config::builtin().unwrap();
        assert_eq!(config.provider(), Provider::Local);
        config.apply_env(&EnvOverrides {
            api_key: Some(Secret::new("sk-x")),
            ..EnvOverrides::default()
        });
        assert_eq!(config.provider(), Provider::Openai);
        config.provider = Some(Provider::Local);
        assert_eq!(config.provider(), Provider::Local);
    }

    #[test]
    fn printing_the_config_never_shows_a_key() {
        let mut config = Config::builtin().unwrap();
        config.apply_env(&EnvOverrides {
            api_key: Some(Secret::new("sk-live-123")),
            ..EnvOverrides::default()
        });
        let printed = format!("{config:?}");
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains("sk-live-123"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = DEFAULT_TOML.replace("[session]", "[session]\ntypo = 1");
        assert!(matches!(
            Config::parse(&text, "test"),
            Err(ConfigError::Syntax { .. })
        ));
    }
}

//! Text-to-speech: the [`Tts`] seam, and [`OpenAiTts`] for any server with OpenAI's
//! `POST /audio/speech` (OpenAI, speaches, Kokoro-FastAPI, ...).
//!
//! Audio is streamed: the adapter asks for raw PCM (`response_format: "pcm"`, 16-bit
//! little-endian mono; 24 kHz on OpenAI) and yields an [`AudioFrame`] for every piece of
//! the body as it arrives, so playback can start long before the server has finished. A
//! sample split between two pieces is put back together. A request that fails with a
//! retryable error (time-out, broken connection, 429, 5xx) is retried with exponential
//! back-off, but only while no audio has reached the consumer: once a frame went out, a
//! failure ends the stream with the error, so audio is never repeated.
//!
//! ```no_run
//! use bella_vista::voice::tts::{OpenAiTts, OpenAiTtsSettings, Tts};
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), bella_vista::voice::tts::TtsError> {
//! let tts = OpenAiTts::new(OpenAiTtsSettings {
//!     api_key: Some("sk-...".into()),
//!     ..OpenAiTtsSettings::default()
//! })?;
//! let mut audio = tts.synthesize("Welcome to Bella Vista!");
//! while let Some(frame) = audio.next().await {
//!     let frame = frame?;
//!     # let _ = frame;
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep, timeout, timeout_at};

use super::audio::AudioFrame;

/// OpenAI's API base URL.
const OPENAI_API_BASE: &str = "https://api.openai.com/v1";

/// Sent as the API key to servers that need none (local servers behind `base_url`).
const PLACEHOLDER_API_KEY: &str = "no-key";

/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Longest server error text kept in an error.
const MAX_MESSAGE_CHARS: usize = 600;

/// The audio of one synthesis: mono frames at the synthesizer's
/// [`sample_rate`](Tts::sample_rate), in playing order. Dropping it cancels the request.
pub type TtsStream = Pin<Box<dyn Stream<Item = Result<AudioFrame, TtsError>> + Send>>;

/// Why a synthesis failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtsError {
    /// The settings cannot work (no API key for OpenAI, a key that is no valid header).
    #[error("invalid text-to-speech settings: {0}")]
    Settings(String),
    /// No audio (or no next piece of it) within the allowed time.
    #[error("the text-to-speech server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an HTTP error status.
    #[error("the text-to-speech server answered {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The server's error text.
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("could not reach the text-to-speech server: {0}")]
    Connection(String),
}

impl TtsError {
    /// Whether trying the same request again may succeed (rate limits, server errors,
    /// broken connections, time-outs).
    pub fn is_retryable(&self) -> bool {
        match self {
            TtsError::Timeout(_) | TtsError::Connection(_) => true,
            TtsError::Http { status, .. } => *status == 429 || *status >= 500,
            TtsError::Settings(_) => false,
        }
    }
}

/// A text-to-speech service that streams audio.
pub trait Tts: Send + Sync + 'static {
    /// The rate of every frame [`synthesize`](Tts::synthesize) yields.
    fn sample_rate(&self) -> u32;

    /// Starts speaking `text`; the stream yields its audio as it is made. Retries and
    /// time-outs belong to the implementation.
    fn synthesize(&self, text: &str) -> TtsStream;
}

/// Where and how to reach an OpenAI-compatible speech endpoint.
#[derive(Clone, PartialEq)]
pub struct OpenAiTtsSettings {
    /// API base URL including the version path, such as `http://127.0.0.1:8880/v1`;
    /// `None` is OpenAI's own.
    pub base_url: Option<String>,
    /// API key sent as a bearer token; may be `None` only with a `base_url`.
    pub api_key: Option<String>,
    /// Model name: `gpt-4o-mini-tts`, `tts-1`, or a local server's model.
    pub model: String,
    /// Voice name, such as `alloy`.
    pub voice: String,
    /// The rate of the server's raw PCM (OpenAI: 24 000 Hz).
    pub sample_rate: u32,
    /// Longest wait from sending a request to the first byte of audio (connecting
    /// included).
    pub first_byte_timeout: Duration,
    /// Longest gap between two pieces of audio.
    pub idle_timeout: Duration,
    /// Attempts after the first one, for retryable failures before any audio was yielded.
    pub max_retries: u32,
    /// Pause before the first retry; it doubles for each further retry (at most 4 s).
    pub initial_backoff: Duration,
}

impl Default for OpenAiTtsSettings {
    /// `gpt-4o-mini-tts` with voice `alloy` on OpenAI, 24 kHz; 10 s to the first byte, 5 s
    /// between pieces; 2 retries after 250 ms, doubling.
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: None,
            model: "gpt-4o-mini-tts".to_owned(),
            voice: "alloy".to_owned(),
            sample_rate: 24_000,
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_retries: 2,
            initial_backoff: Duration::from_millis(250),
        }
    }
}

impl fmt::Debug for OpenAiTtsSettings {
    /// Like a derived `Debug`, with the API key left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiTtsSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("sample_rate", &self.sample_rate)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .finish()
    }
}

/// Time-outs and retry policy of one synthesis.
#[derive(Debug, Clone, Copy)]
struct Limits {
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
}

impl Limits {
    /// The pause before retry number `retry` (0 for the first retry).
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2_u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

/// Streaming speech through an OpenAI-compatible `/audio/speech` endpoint.
///
/// Cheap to share: one instance serves concurrent requests over a pool of connections.
pub struct OpenAiTts {
    http: reqwest::Client,
    url: String,
    api_key: String,
    model: String,
    voice: String,
    sample_rate: u32,
    limits: Limits,
}

impl OpenAiTts {
    /// A speech client for `settings`.
    ///
    /// Fails with [`TtsError::Settings`] when no API key is given for OpenAI's own server,
    /// when the key contains control characters, when the sample rate is zero, or when the
    /// HTTP client cannot be built.
    pub fn new(settings: OpenAiTtsSettings) -> Result<Self, TtsError> {
        let base_url = settings
            .base_url
            .as_deref()
            .map(|url| url.trim().trim_end_matches('/'))
            .filter(|url| !url.is_empty());
        let api_key = settings
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|key| !key.is_empty());
        let api_key = match (api_key, base_url) {
            (Some(key), _) if key.chars().any(char::is_control) => {
                return Err(TtsError::Settings(
                    "the API key contains control characters".to_owned(),
                ));
            }
            (Some(key), _) => key,
            (None, Some(_)) => PLACEHOLDER_API_KEY,
            (None, None) => {
                return Err(TtsError::Settings(
                    "an API key is required for OpenAI's server (or set a base URL)".to_owned(),
                ));
            }
        };
        if settings.sample_rate == 0 {
            return Err(TtsError::Settings("the sample rate is zero".to_owned()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(settings.first_byte_timeout)
            .build()
            .map_err(|error| TtsError::Settings(describe(&error)))?;
        Ok(Self {
            http,
            url: format!("{}/audio/speech", base_url.unwrap_or(OPENAI_API_BASE)),
            api_key: api_key.to_owned(),
            model: settings.model,
            voice: settings.voice,
            sample_rate: settings.sample_rate,
            limits: Limits {
                first_byte_timeout: settings.first_byte_timeout,
                idle_timeout: settings.idle_timeout,
                max_retries: settings.max_retries,
                initial_backoff: settings.initial_backoff,
            },
        })
    }
}

impl fmt::Debug for OpenAiTts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiTts")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("sample_rate", &self.sample_rate)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Tts for OpenAiTts {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Streams the speech of `text`; see the [module docs](self) for retries.
    ///
    /// Text that is empty or only whitespace gives an empty stream without asking the
    /// server. Nothing runs in the background: dropping the stream cancels the request.
    fn synthesize(&self, text: &str) -> TtsStream {
        let text = text.trim();
        if text.is_empty() {
            return Box::pin(futures_util::stream::empty());
        }
        let body = json!({
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
        });
        let driver = Driver {
            http: self.http.clone(),
            url: self.url.clone(),
            api_key: self.api_key.clone(),
            body: body.to_string(),
            sample_rate: self.sample_rate,
            limits: self.limits,
            retries: 0,
            yielded: false,
            phase: Phase::Opening,
        };
        Box::pin(futures_util::stream::unfold(
            driver,
            |mut driver| async move { driver.next().await.map(|item| (item, driver)) },
        ))
    }
}

/// Where the current attempt stands.
enum Phase {
    /// About to send the request.
    Opening,
    /// Reading audio.
    Reading(Attempt),
    /// The audio is complete, or failed for good.
    Finished,
}

/// A request whose response headers arrived with a success status.
struct Attempt {
    response: reqwest::Response,
    /// The first byte of a sample whose second byte is still to come.
    odd_byte: Option<u8>,
    /// When the first byte must have arrived; `None` once it has.
    first_byte_deadline: Option<Instant>,
}

struct Driver {
    http: reqwest::Client,
    url: String,
    api_key: String,
    body: String,
    sample_rate: u32,
    limits: Limits,
    retries: u32,
    /// Whether a frame reached the consumer: from then on a failure is final.
    yielded: bool,
    phase: Phase,
}

impl Driver {
    /// The next item for the consumer; `None` when the stream is over.
    async fn next(&mut self) -> Option<Result<AudioFrame, TtsError>> {
        loop {
            let step = match &mut self.phase {
                Phase::Finished => return None,
                Phase::Opening => self.open().await.map(|attempt| {
                    self.phase = Phase::Reading(attempt);
                    None
                }),
                Phase::Reading(attempt) => read(attempt, &self.limits).await,
            };
            match step {
                Ok(None) => {}
                Ok(Some(samples)) if samples.is_empty() => self.phase = Phase::Finished,
                Ok(Some(samples)) => {
                    self.yielded = true;
                    return Some(Ok(AudioFrame::mono(samples, self.sample_rate)));
                }
                Err(error) => {
                    if !self.back_off_for_retry(&error).await {
                        self.phase = Phase::Finished;
                        return Some(Err(error));
                    }
                }
            }
        }
    }

    /// Sends the request and waits for the response headers.
    async fn open(&self) -> Result<Attempt, TtsError> {
        let limit = self.limits.first_byte_timeout;
        let deadline = Instant::now() + limit;
        let request = self
            .http
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body.clone())
            .send();
        let response = timeout_at(deadline, request)
            .await
            .map_err(|_elapsed| TtsError::Timeout(limit))?
            .map_err(|error| connection_error(&error, limit))?;
        let status = response.status();
        if !status.is_success() {
            // The error text is a courtesy: a body that does not come in time is skipped.
            let body = timeout_at(deadline, response.bytes()).await;
            let message = body
                .ok()
                .and_then(Result::ok)
                .and_then(|body| error_message(&body))
                .or_else(|| status.canonical_reason().map(str::to_owned))
                .unwrap_or_else(|| "no error message".to_owned());
            return Err(TtsError::Http {
                status: status.as_u16(),
                message,
            });
        }
        Ok(Attempt {
            response,
            odd_byte: None,
            first_byte_deadline: Some(deadline),
        })
    }

    /// Whether `error` is retried; if so, waits out the back-off and starts over.
    async fn back_off_for_retry(&mut self, error: &TtsError) -> bool {
        if self.yielded || !error.is_retryable() || self.retries >= self.limits.max_retries {
            return false;
        }
        let delay = self.limits.backoff(self.retries);
        self.retries += 1;
        tracing::warn!(
            %error,
            retry = self.retries,
            max_retries = self.limits.max_retries,
            delay_ms = delay.as_millis() as u64,
            "speech request failed, retrying"
        );
        self.phase = Phase::Opening;
        sleep(delay).await;
        true
    }
}

/// Reads the next piece of `attempt` within its time limit: `Ok(None)` for a piece that
/// held no whole sample, `Ok(Some(samples))` otherwise, empty at the end of the audio.
async fn read(attempt: &mut Attempt, limits: &Limits) -> Result<Option<Vec<i16>>, TtsError> {
    let piece = match attempt.first_byte_deadline {
        Some(deadline) => timeout_at(deadline, attempt.response.chunk())
            .await
            .map_err(|_elapsed| TtsError::Timeout(limits.first_byte_timeout))?
            .map_err(|error| connection_error(&error, limits.first_byte_timeout))?,
        None => timeout(limits.idle_timeout, attempt.response.chunk())
            .await
            .map_err(|_elapsed| TtsError::Timeout(limits.idle_timeout))?
            .map_err(|error| connection_error(&error, limits.idle_timeout))?,
    };
    let Some(piece) = piece else {
        if attempt.odd_byte.is_some() {
            tracing::debug!("speech audio ended in half a sample; the byte is dropped");
        }
        return Ok(Some(Vec::new()));
    };
    if piece.is_empty() {
        return Ok(None);
    }
    attempt.first_byte_deadline = None;
    let samples = samples_from(&mut attempt.odd_byte, &piece);
    Ok((!samples.is_empty()).then_some(samples))
}

/// The 16-bit little-endian samples in `bytes`, after the byte left over from the previous
/// piece (`odd_byte`), which is replaced by this piece's leftover, if any.
fn samples_from(odd_byte: &mut Option<u8>, bytes: &[u8]) -> Vec<i16> {
    let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
    let mut rest = bytes;
    if let (Some(low), Some((&high, after))) = (*odd_byte, bytes.split_first()) {
        samples.push(i16::from_le_bytes([low, high]));
        *odd_byte = None;
        rest = after;
    }
    let pairs = rest.chunks_exact(2);
    if let [last] = pairs.remainder() {
        *odd_byte = Some(*last);
    }
    samples.extend(pairs.map(|pair| i16::from_le_bytes([pair[0], pair[1]])));
    samples
}

/// The error for a failed send or body read.
fn connection_error(error: &reqwest::Error, limit: Duration) -> TtsError {
    if error.is_timeout() {
        TtsError::Timeout(limit)
    } else {
        TtsError::Connection(describe(error))
    }
}

/// The error text in a server's error body: OpenAI's `{"error": {"message": ..}}`, the
/// shapes other servers use (`{"error": ".."}`, `{"message": ..}`, `{"detail": ..}`), or
/// the body as text. `None` for an empty body.
fn error_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let from_json = serde_json::from_str::<Value>(text).ok().and_then(|json| {
        [
            json.pointer("/error/message"),
            json.get("error"),
            json.get("message"),
            json.get("detail"),
        ]
        .into_iter()
        .flatten()
        .find_map(|value| value.as_str().map(str::to_owned))
    });
    let message = from_json.as_deref().unwrap_or(text);
    Some(match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &message[..cut]),
        None => message.to_owned(),
    })
}

/// An error with its chain of causes: reqwest's own text rarely says what went wrong.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_split_between_pieces_are_put_back_together() {
        let samples: Vec<i16> = vec![1, -2, 300, -32768, 32767, 0x1234];
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        for piece_len in 1..=bytes.len() {
            let mut odd_byte = None;
            let decoded: Vec<i16> = bytes
                .chunks(piece_len)
                .flat_map(|piece| samples_from(&mut odd_byte, piece))
                .collect();
            assert_eq!(decoded, samples, "pieces of {piece_len} bytes");
            assert_eq!(odd_byte, None);
        }
    }

    #[test]
    fn a_trailing_half_sample_is_kept_for_later() {
        let mut odd_byte = None;
        assert_eq!(samples_from(&mut odd_byte, &[0x01, 0x00, 0x02]), [1]);
        assert_eq!(odd_byte, Some(0x02));
        assert_eq!(samples_from(&mut odd_byte, &[]), Vec::<i16>::new());
        assert_eq!(odd_byte, Some(0x02));
        assert_eq!(samples_from(&mut odd_byte, &[0x01]), [0x0102]);
        assert_eq!(odd_byte, None);
    }

    #[test]
    fn settings_are_checked_and_the_key_is_hidden() {
        assert!(matches!(
            OpenAiTts::new(OpenAiTtsSettings::default()),
            Err(TtsError::Settings(_))
        ));
        let settings = OpenAiTtsSettings {
            api_key: Some("sk-secret".into()),
            ..OpenAiTtsSettings::default()
        };
        assert!(!format!("{settings:?}").contains("sk-secret"));
        assert!(
            OpenAiTts::new(OpenAiTtsSettings {
                sample_rate: 0,
                ..settings.clone()
            })
            .is_err()
        );
        let tts = OpenAiTts::new(settings).expect("valid settings");
        assert_eq!(tts.sample_rate(), 24_000);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let limits = Limits {
            first_byte_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_retries: 9,
            initial_backoff: Duration::from_millis(250),
        };
        let delays: Vec<_> = (0..6)
            .map(|retry| limits.backoff(retry).as_millis())
            .collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 4000]);
    }
}

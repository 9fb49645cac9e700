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
use serde_json::json;
use tokio::time::{Instant, timeout, timeout_at};

use super::audio::AudioFrame;
use crate::openai_http::retry::{Backoff, Drive, Phase, Retries, driven_stream};
use crate::openai_http::{self as http, Endpoint, HttpFailure};

/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

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
    /// The local speech engine failed.
    #[error("the local text-to-speech engine failed: {0}")]
    Engine(String),
}

impl TtsError {
    /// Whether trying the same request again may succeed (rate limits, server errors,
    /// broken connections, time-outs).
    pub fn is_retryable(&self) -> bool {
        match self {
            TtsError::Timeout(_) | TtsError::Connection(_) => true,
            TtsError::Http { status, .. } => http::is_retryable_status(*status),
            TtsError::Settings(_) | TtsError::Engine(_) => false,
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
    /// The retries one synthesis may make.
    fn retries(&self) -> Retries {
        Retries::new(
            self.max_retries,
            Backoff::new(self.initial_backoff, MAX_BACKOFF),
        )
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
        let endpoint = Endpoint::new(settings.base_url.as_deref(), settings.api_key.as_deref())
            .map_err(|error| TtsError::Settings(error.to_string()))?;
        if settings.sample_rate == 0 {
            return Err(TtsError::Settings("the sample rate is zero".to_owned()));
        }
        let http = http::client(settings.first_byte_timeout).map_err(TtsError::Settings)?;
        Ok(Self {
            http,
            url: endpoint.url("audio/speech"),
            api_key: endpoint.api_key().to_owned(),
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
            retries: self.limits.retries(),
            phase: Phase::Opening,
        };
        driven_stream(driver)
    }
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
    /// Stopped once a frame reached the consumer: from then on a failure is final.
    retries: Retries,
    phase: Phase<Attempt>,
}

impl Drive for Driver {
    type Item = Result<AudioFrame, TtsError>;

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
                    self.retries.stop();
                    return Some(Ok(AudioFrame::mono(samples, self.sample_rate)));
                }
                Err(error) => {
                    let retryable = error.is_retryable();
                    if !self
                        .retries
                        .back_off(&error, retryable, "speech request", "tts")
                        .await
                    {
                        self.phase = Phase::Finished;
                        return Some(Err(error));
                    }
                    self.phase = Phase::Opening;
                }
            }
        }
    }
}

impl Driver {
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
            .map_err(|error| HttpFailure::from_reqwest(&error, limit))?;
        let status = response.status();
        if !status.is_success() {
            // The error text is a courtesy: a body that does not come in time is skipped.
            let body = timeout_at(deadline, response.bytes()).await;
            let body = body.ok().and_then(Result::ok).unwrap_or_default();
            return Err(HttpFailure::from_status(status, &body).into());
        }
        Ok(Attempt {
            response,
            odd_byte: None,
            first_byte_deadline: Some(deadline),
        })
    }
}

/// Reads the next piece of `attempt` within its time limit: `Ok(None)` for a piece that
/// held no whole sample, `Ok(Some(samples))` otherwise, empty at the end of the audio.
async fn read(attempt: &mut Attempt, limits: &Limits) -> Result<Option<Vec<i16>>, TtsError> {
    let piece = match attempt.first_byte_deadline {
        Some(deadline) => timeout_at(deadline, attempt.response.chunk())
            .await
            .map_err(|_elapsed| TtsError::Timeout(limits.first_byte_timeout))?
            .map_err(|error| HttpFailure::from_reqwest(&error, limits.first_byte_timeout))?,
        None => timeout(limits.idle_timeout, attempt.response.chunk())
            .await
            .map_err(|_elapsed| TtsError::Timeout(limits.idle_timeout))?
            .map_err(|error| HttpFailure::from_reqwest(&error, limits.idle_timeout))?,
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

impl From<HttpFailure> for TtsError {
    fn from(failure: HttpFailure) -> Self {
        match failure {
            HttpFailure::Timeout(limit) => TtsError::Timeout(limit),
            HttpFailure::Connection(cause) => TtsError::Connection(cause),
            HttpFailure::Status { status, message } => TtsError::Http { status, message },
        }
    }
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
}

//! Speech-to-text: the [`Stt`] seam, and [`OpenAiStt`] for any server with OpenAI's
//! `POST /audio/transcriptions` (OpenAI, Groq, speaches, the whisper.cpp and vLLM servers).
//!
//! One utterance goes up as a 16-bit WAV file with a vocabulary hint (the words the caller
//! is likely to say, such as menu item names) as the `prompt`; the transcript comes back.
//! The response is read leniently: JSON with or without a `usage` field, or plain text from
//! servers that ignore `response_format` (async-openai 0.43 refuses a response without
//! `usage`, which is why this adapter speaks HTTP itself). A request that fails with a
//! retryable error (time-out, broken connection, 429, 5xx) is retried with exponential
//! back-off.
//!
//! ```no_run
//! use bella_vista::voice::audio::AudioFrame;
//! use bella_vista::voice::stt::{OpenAiStt, OpenAiSttSettings, Stt};
//!
//! # async fn run(utterance: AudioFrame) -> Result<(), bella_vista::voice::stt::SttError> {
//! let stt = OpenAiStt::new(OpenAiSttSettings {
//!     base_url: Some("http://127.0.0.1:8000/v1".into()),
//!     model: "Systran/faster-whisper-small".into(),
//!     ..OpenAiSttSettings::default()
//! })?;
//! let vocabulary = ["Bruschetta".to_owned(), "Tiramisu".to_owned()];
//! let transcript = stt.transcribe(utterance, &vocabulary).await?;
//! # let _ = transcript.text;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::io::Cursor;
use std::pin::Pin;
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio::time::timeout;

use super::audio::AudioFrame;
use crate::openai_http::retry::{Backoff, Retries};
use crate::openai_http::{self as http, Endpoint, HttpFailure, describe, truncated};

/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Longest vocabulary hint, in characters; terms past it are left out. (OpenAI's Whisper
/// reads only the last 224 tokens of a prompt.)
pub const MAX_PROMPT_CHARS: usize = 800;

/// The future [`Stt::transcribe`] returns.
pub type SttFuture = Pin<Box<dyn Future<Output = Result<Transcript, SttError>> + Send>>;

/// What a speech-to-text service heard in one utterance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The words, trimmed; empty when nothing was understood.
    pub text: String,
}

/// Why a transcription failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SttError {
    /// The settings cannot work (no API key for OpenAI, a key that is no valid header).
    #[error("invalid speech-to-text settings: {0}")]
    Settings(String),
    /// The utterance could not be encoded for upload.
    #[error("the utterance could not be encoded: {0}")]
    Audio(String),
    /// No complete answer within the allowed time.
    #[error("the speech-to-text server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an HTTP error status.
    #[error("the speech-to-text server answered {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The server's error text.
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("could not reach the speech-to-text server: {0}")]
    Connection(String),
    /// The response could not be understood.
    #[error("the speech-to-text response was malformed: {0}")]
    InvalidResponse(String),
    /// The local speech-to-text engine failed (it is started afresh for the next utterance).
    #[error("the local speech-to-text engine failed: {0}")]
    Engine(String),
}

impl SttError {
    /// Whether trying the same request again may succeed (rate limits, server errors,
    /// broken connections, time-outs).
    pub fn is_retryable(&self) -> bool {
        match self {
            SttError::Timeout(_) | SttError::Connection(_) => true,
            SttError::Http { status, .. } => http::is_retryable_status(*status),
            SttError::Settings(_)
            | SttError::Audio(_)
            | SttError::InvalidResponse(_)
            | SttError::Engine(_) => false,
        }
    }
}

/// A speech-to-text service that transcribes whole utterances.
pub trait Stt: Send + Sync + 'static {
    /// Transcribes `utterance`; `vocabulary` lists words the speaker is likely to use, as
    /// a spelling hint. Retries and time-outs belong to the implementation.
    fn transcribe(&self, utterance: AudioFrame, vocabulary: &[String]) -> SttFuture;
}

/// Where and how to reach an OpenAI-compatible transcription endpoint.
#[derive(Clone, PartialEq)]
pub struct OpenAiSttSettings {
    /// API base URL including the version path, such as `http://127.0.0.1:8000/v1`;
    /// `None` is OpenAI's own.
    pub base_url: Option<String>,
    /// API key sent as a bearer token; may be `None` only with a `base_url`.
    pub api_key: Option<String>,
    /// Model name: `whisper-1`, `gpt-4o-mini-transcribe`, or a local server's model.
    pub model: String,
    /// The spoken language as an ISO-639-1 code (`en`); `None` lets the model detect it.
    pub language: Option<String>,
    /// Longest wait for one attempt, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// Attempts after the first one, for retryable failures.
    pub max_retries: u32,
    /// Pause before the first retry; it doubles for each further retry (at most 4 s).
    pub initial_backoff: Duration,
}

impl Default for OpenAiSttSettings {
    /// `gpt-4o-mini-transcribe` on OpenAI, language detected; 10 s per attempt; 2 retries
    /// after 250 ms, doubling.
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: None,
            model: "gpt-4o-mini-transcribe".to_owned(),
            language: None,
            timeout: Duration::from_secs(10),
            max_retries: 2,
            initial_backoff: Duration::from_millis(250),
        }
    }
}

impl fmt::Debug for OpenAiSttSettings {
    /// Like a derived `Debug`, with the API key left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSttSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("language", &self.language)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .finish()
    }
}

/// Speech-to-text through an OpenAI-compatible `/audio/transcriptions` endpoint.
///
/// Cheap to share: one instance serves concurrent requests over a pool of connections.
#[derive(Clone)]
pub struct OpenAiStt {
    http: reqwest::Client,
    url: String,
    api_key: String,
    model: String,
    language: Option<String>,
    timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
}

impl OpenAiStt {
    /// A transcription client for `settings`.
    ///
    /// Fails with [`SttError::Settings`] when no API key is given for OpenAI's own server,
    /// when the key contains control characters, or when the HTTP client cannot be built.
    pub fn new(settings: OpenAiSttSettings) -> Result<Self, SttError> {
        let endpoint = Endpoint::new(settings.base_url.as_deref(), settings.api_key.as_deref())
            .map_err(|error| SttError::Settings(error.to_string()))?;
        let http = http::client(settings.timeout).map_err(SttError::Settings)?;
        Ok(Self {
            http,
            url: endpoint.url("audio/transcriptions"),
            api_key: endpoint.api_key().to_owned(),
            model: settings.model,
            language: settings.language.filter(|language| !language.is_empty()),
            timeout: settings.timeout,
            max_retries: settings.max_retries,
            initial_backoff: settings.initial_backoff,
        })
    }

    /// Transcribes `utterance` with `vocabulary` as the hint, retrying as configured.
    async fn transcribe_utterance(
        &self,
        utterance: &AudioFrame,
        vocabulary: &[String],
    ) -> Result<Transcript, SttError> {
        if utterance.is_empty() {
            return Ok(Transcript::default());
        }
        let wav = wav_bytes(utterance)?;
        let prompt = vocabulary_prompt(vocabulary);
        let mut retries = Retries::new(
            self.max_retries,
            Backoff::new(self.initial_backoff, MAX_BACKOFF),
        );
        loop {
            let attempt = self.attempt(wav.clone(), prompt.as_deref());
            let error = match timeout(self.timeout, attempt).await {
                Ok(Ok(transcript)) => return Ok(transcript),
                Ok(Err(error)) => error,
                Err(_elapsed) => SttError::Timeout(self.timeout),
            };
            let retryable = error.is_retryable();
            if !retries
                .back_off(&error, retryable, "transcription", "stt")
                .await
            {
                return Err(error);
            }
        }
    }

    /// One request, without time limit.
    async fn attempt(&self, wav: Vec<u8>, prompt: Option<&str>) -> Result<Transcript, SttError> {
        let file = Part::bytes(wav)
            .file_name("utterance.wav")
            .mime_str("audio/wav")
            .map_err(|error| SttError::Audio(describe(&error)))?;
        let mut form = Form::new()
            .part("file", file)
            .text("model", self.model.clone())
            .text("response_format", "json");
        if let Some(prompt) = prompt {
            form = form.text("prompt", prompt.to_owned());
        }
        if let Some(language) = &self.language {
            form = form.text("language", language.clone());
        }
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .multipart(form)
            .send()
            .await
            .map_err(|error| HttpFailure::from_reqwest(&error, self.timeout))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| HttpFailure::from_reqwest(&error, self.timeout))?;
        if !status.is_success() {
            return Err(HttpFailure::from_status(status, &body).into());
        }
        transcript_from_body(&body)
    }
}

impl fmt::Debug for OpenAiStt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiStt")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("language", &self.language)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl Stt for OpenAiStt {
    /// Transcribes `utterance`; see the [module docs](self) for retries.
    ///
    /// An empty utterance gives an empty transcript without asking the server. Dropping
    /// the future cancels the request.
    fn transcribe(&self, utterance: AudioFrame, vocabulary: &[String]) -> SttFuture {
        let stt = self.clone();
        let vocabulary = vocabulary.to_vec();
        Box::pin(async move { stt.transcribe_utterance(&utterance, &vocabulary).await })
    }
}

/// The hint sent as the `prompt`: the distinct non-empty `vocabulary` terms, comma
/// separated, ending with a full stop (`"Bruschetta, Tiramisu."`), cut to whole terms
/// within [`MAX_PROMPT_CHARS`]; `None` without terms.
pub fn vocabulary_prompt(vocabulary: &[String]) -> Option<String> {
    let mut prompt = String::new();
    let mut used: Vec<&str> = Vec::new();
    for term in vocabulary.iter().map(|term| term.trim()) {
        if term.is_empty() || used.contains(&term) {
            continue;
        }
        let separator = if prompt.is_empty() { "" } else { ", " };
        let length = prompt.chars().count() + separator.len() + term.chars().count() + 1;
        if length > MAX_PROMPT_CHARS {
            break;
        }
        prompt.push_str(separator);
        prompt.push_str(term);
        used.push(term);
    }
    (!prompt.is_empty()).then(|| prompt + ".")
}

/// `frame` as a 16-bit PCM WAV file.
fn wav_bytes(frame: &AudioFrame) -> Result<Vec<u8>, SttError> {
    let spec = hound::WavSpec {
        channels: frame.channels(),
        sample_rate: frame.sample_rate(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let audio_error = |error: hound::Error| SttError::Audio(error.to_string());
    let mut bytes = Cursor::new(Vec::with_capacity(44 + frame.samples().len() * 2));
    let mut writer = hound::WavWriter::new(&mut bytes, spec).map_err(audio_error)?;
    let mut samples = writer.get_i16_writer(frame.samples().len() as u32);
    for &sample in frame.samples() {
        samples.write_sample(sample);
    }
    samples.flush().map_err(audio_error)?;
    writer.finalize().map_err(audio_error)?;
    Ok(bytes.into_inner())
}

/// The transcript in a success body: OpenAI's JSON (`{"text": ..}`, other fields such as
/// `usage` ignored), or plain text.
fn transcript_from_body(body: &[u8]) -> Result<Transcript, SttError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| SttError::InvalidResponse("the transcript is not UTF-8".to_owned()))?;
    let text = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => match object.get("text") {
            Some(Value::String(text)) => text.clone(),
            _ => {
                return Err(SttError::InvalidResponse(format!(
                    "no \"text\" in {}",
                    truncated(text)
                )));
            }
        },
        Ok(Value::String(text)) => text,
        // Plain text (which may happen to parse as a JSON number or the like).
        _ => text.to_owned(),
    };
    Ok(Transcript {
        text: text.trim().to_owned(),
    })
}

impl From<HttpFailure> for SttError {
    fn from(failure: HttpFailure) -> Self {
        match failure {
            HttpFailure::Timeout(limit) => SttError::Timeout(limit),
            HttpFailure::Connection(cause) => SttError::Connection(cause),
            HttpFailure::Status { status, message } => SttError::Http { status, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_lists_distinct_terms_within_the_limit() {
        let terms: Vec<String> = ["Bruschetta", " Tiramisu ", "", "Bruschetta", "Panna Cotta"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(
            vocabulary_prompt(&terms).as_deref(),
            Some("Bruschetta, Tiramisu, Panna Cotta.")
        );
        assert_eq!(vocabulary_prompt(&[]), None);
        let many: Vec<String> = (0..500).map(|i| format!("Dish number {i}")).collect();
        let prompt = vocabulary_prompt(&many).expect("a prompt");
        assert!(prompt.chars().count() <= MAX_PROMPT_CHARS);
        assert!(prompt.ends_with('.') && prompt.starts_with("Dish number 0, "));
    }

    #[test]
    fn utterances_become_readable_wav_files() {
        let frame = AudioFrame::new(vec![0, 1, -1, i16::MAX, i16::MIN, 7], 16_000, 2)
            .expect("a stereo frame");
        let wav = wav_bytes(&frame).expect("wav");
        let mut reader = hound::WavReader::new(Cursor::new(wav)).expect("readable");
        assert_eq!(reader.spec().sample_rate, 16_000);
        assert_eq!(reader.spec().channels, 2);
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .map(|s| s.expect("sample"))
            .collect();
        assert_eq!(samples, frame.samples());
    }

    #[test]
    fn transcripts_are_read_with_or_without_usage_or_as_plain_text() {
        let cases: [(&str, &str); 5] = [
            (
                r#"{"text":" Two pizzas. ","usage":{"type":"tokens","input_tokens":5}}"#,
                "Two pizzas.",
            ),
            (r#"{"text":"Two pizzas."}"#, "Two pizzas."),
            ("Two pizzas.\n", "Two pizzas."),
            ("42", "42"),
            (r#""quoted""#, "quoted"),
        ];
        for (body, text) in cases {
            let transcript = transcript_from_body(body.as_bytes()).expect(body);
            assert_eq!(transcript.text, text, "{body}");
        }
        assert!(matches!(
            transcript_from_body(br#"{"error":"nope"}"#),
            Err(SttError::InvalidResponse(_))
        ));
    }

    #[test]
    fn settings_need_a_key_for_openai_and_hide_it() {
        assert!(matches!(
            OpenAiStt::new(OpenAiSttSettings::default()),
            Err(SttError::Settings(_))
        ));
        let settings = OpenAiSttSettings {
            api_key: Some("sk-secret".into()),
            ..OpenAiSttSettings::default()
        };
        assert!(!format!("{settings:?}").contains("sk-secret"));
        assert!(OpenAiStt::new(settings).is_ok());
    }
}

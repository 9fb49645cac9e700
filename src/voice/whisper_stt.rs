//! Local speech-to-text: [`WhisperStt`] transcribes with whisper.cpp on this machine, no
//! account and no server to run.
//!
//! whisper.cpp runs in the `bella-vista-stt` helper, a program built with this one (see its
//! docs for why it is a process of its own). The helper is started on the first utterance,
//! loads the model once and then answers one utterance at a time over its standard input
//! and output; utterances from several calls queue for it. A helper that fails, takes too
//! long, or is abandoned mid-utterance (the caller hung up) is killed and a fresh one
//! started on the next utterance, so a stale answer can never reach the wrong question.

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;
use tokio::time::timeout;

use crate::voice::audio::AudioFrame;
use crate::voice::resample::Resampler;
use crate::voice::stt::{Stt, SttError, SttFuture, Transcript, vocabulary_prompt};

/// The rate whisper reads.
const WHISPER_RATE: u32 = 16_000;

/// The tag the helper puts before every line meant for us.
const TAG: &str = "bella-vista-stt ";

/// How to run the local speech-to-text helper.
#[derive(Debug, Clone, PartialEq)]
pub struct WhisperSttSettings {
    /// The `bella-vista-stt` program.
    pub program: PathBuf,
    /// The ggml Whisper model file.
    pub model: PathBuf,
    /// CPU threads whisper uses.
    pub threads: usize,
    /// Longest wait for the helper to load its model.
    pub load_timeout: Duration,
    /// Longest wait for one transcript.
    pub timeout: Duration,
}

/// Speech to text with whisper.cpp in a helper process on this machine.
#[derive(Clone)]
pub struct WhisperStt {
    settings: Arc<WhisperSttSettings>,
    /// The running helper, when it is idle; taken out while it works on an utterance.
    helper: Arc<Mutex<Option<Helper>>>,
}

impl fmt::Debug for WhisperStt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhisperStt")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl WhisperStt {
    /// A client for the helper `settings` names; checks the program and model exist, and
    /// starts nothing yet.
    pub fn new(settings: WhisperSttSettings) -> Result<Self, SttError> {
        for (what, path) in [("program", &settings.program), ("model", &settings.model)] {
            if !path.is_file() {
                return Err(SttError::Settings(format!(
                    "the local speech-to-text {what} {} does not exist (the program is \
                     built with bella-vista, feature local-stt; or set OPENAI_API_KEY or \
                     OPENAI_BASE_URL for hosted speech)",
                    path.display()
                )));
            }
        }
        Ok(Self {
            settings: Arc::new(settings),
            helper: Arc::new(Mutex::new(None)),
        })
    }

    /// Starts the helper now rather than on the first utterance (it loads its model).
    pub async fn warm_up(&self) -> Result<(), SttError> {
        let mut slot = self.helper.lock().await;
        if slot.is_none() {
            *slot = Some(Helper::start(&self.settings).await?);
        }
        Ok(())
    }

    async fn transcribe_utterance(
        &self,
        utterance: AudioFrame,
        prompt: Option<String>,
    ) -> Result<Transcript, SttError> {
        let audio = whisper_audio(&utterance)?;
        if audio.is_empty() {
            return Ok(Transcript::default());
        }
        let mut slot = self.helper.lock().await;
        let mut helper = match slot.take() {
            Some(helper) => helper,
            None => Helper::start(&self.settings).await?,
        };
        let exchange = helper.transcribe(&audio, prompt.as_deref().unwrap_or_default());
        let text = match timeout(self.settings.timeout, exchange).await {
            Ok(result) => result?,
            Err(_elapsed) => return Err(SttError::Timeout(self.settings.timeout)),
        };
        // Only a helper that answered in full goes back for the next utterance.
        *slot = Some(helper);
        Ok(Transcript { text })
    }
}

impl Stt for WhisperStt {
    fn transcribe(&self, utterance: AudioFrame, vocabulary: &[String]) -> SttFuture {
        let stt = self.clone();
        let prompt = vocabulary_prompt(vocabulary);
        Box::pin(async move { stt.transcribe_utterance(utterance, prompt).await })
    }
}

/// A running `bella-vista-stt` process with its pipes.
struct Helper {
    /// Killed when the helper is dropped.
    _child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
}

/// One answer from the helper.
#[derive(Deserialize)]
struct Answer {
    text: Option<String>,
    error: Option<String>,
}

impl Helper {
    /// Starts the helper and waits until its model is loaded.
    async fn start(settings: &WhisperSttSettings) -> Result<Self, SttError> {
        let mut child = Command::new(&settings.program)
            .arg(&settings.model)
            .arg(settings.threads.max(1).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                engine(format!(
                    "cannot start {}: {error}",
                    settings.program.display()
                ))
            })?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(engine("the helper's pipes were not opened".into()));
        };
        let mut helper = Helper {
            _child: child,
            input,
            output: BufReader::new(output).lines(),
        };
        let started = std::time::Instant::now();
        let ready = timeout(settings.load_timeout, helper.next_line()).await;
        match ready {
            Ok(Ok(line)) if line == "ready" => {
                tracing::info!(
                    model = %settings.model.display(),
                    seconds = started.elapsed().as_secs_f32(),
                    "local speech-to-text ready"
                );
                Ok(helper)
            }
            Ok(Ok(line)) => Err(engine(answer_error(&line))),
            Ok(Err(error)) => Err(error),
            Err(_elapsed) => Err(SttError::Timeout(settings.load_timeout)),
        }
    }

    /// Sends one utterance (16 kHz mono) and reads its transcript.
    async fn transcribe(&mut self, audio: &[i16], prompt: &str) -> Result<String, SttError> {
        let header = serde_json::json!({ "samples": audio.len(), "prompt": prompt });
        let mut request = format!("{header}\n").into_bytes();
        request.reserve(audio.len() * 2);
        for sample in audio {
            request.extend_from_slice(&sample.to_le_bytes());
        }
        self.input
            .write_all(&request)
            .await
            .map_err(|error| engine(format!("the helper stopped reading: {error}")))?;
        self.input
            .flush()
            .await
            .map_err(|error| engine(format!("the helper stopped reading: {error}")))?;
        let line = self.next_line().await?;
        let answer: Answer = serde_json::from_str(&line)
            .map_err(|error| SttError::InvalidResponse(format!("{error}: {line}")))?;
        match (answer.text, answer.error) {
            (Some(text), None) => Ok(text),
            (_, Some(error)) => Err(engine(error)),
            (None, None) => Err(SttError::InvalidResponse(line)),
        }
    }

    /// The next line the helper tagged for us (whisper.cpp may print others).
    async fn next_line(&mut self) -> Result<String, SttError> {
        loop {
            let line = self
                .output
                .next_line()
                .await
                .map_err(|error| engine(format!("reading the helper: {error}")))?
                .ok_or_else(|| engine("the helper exited".into()))?;
            if let Some(tagged) = line.strip_prefix(TAG) {
                return Ok(tagged.to_owned());
            }
        }
    }
}

/// The error text of a tagged `{"error": ...}` line, or the line itself.
fn answer_error(line: &str) -> String {
    serde_json::from_str::<Answer>(line)
        .ok()
        .and_then(|answer| answer.error)
        .unwrap_or_else(|| line.to_owned())
}

fn engine(message: String) -> SttError {
    SttError::Engine(message)
}

/// `utterance` as whisper reads it: mono, 16 kHz.
fn whisper_audio(utterance: &AudioFrame) -> Result<Vec<i16>, SttError> {
    let mono = utterance.to_mono();
    if mono.is_empty() || mono.sample_rate() == WHISPER_RATE {
        return Ok(mono.into_samples());
    }
    let audio_error =
        |error: crate::voice::resample::ResampleError| SttError::Audio(error.to_string());
    let mut resampler = Resampler::new(mono.sample_rate(), WHISPER_RATE, 1).map_err(audio_error)?;
    let mut samples = resampler
        .process(&mono)
        .map_err(audio_error)?
        .into_samples();
    samples.extend(resampler.flush().map_err(audio_error)?.into_samples());
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_reaches_whisper_as_16_khz_mono() {
        let stereo = AudioFrame::new(vec![100; 48_000 * 2], 48_000, 2).expect("frame");
        let audio = whisper_audio(&stereo).expect("resampled");
        assert!((audio.len() as i64 - 16_000).abs() < 400, "{}", audio.len());
        let native = AudioFrame::mono(vec![7; 1600], 16_000);
        assert_eq!(whisper_audio(&native).expect("as is"), vec![7; 1600]);
    }

    #[test]
    fn missing_program_or_model_is_a_settings_error() {
        let settings = WhisperSttSettings {
            program: "/nonexistent/bella-vista-stt".into(),
            model: "/nonexistent/model.bin".into(),
            threads: 1,
            load_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        let error = WhisperStt::new(settings).expect_err("nothing there");
        assert!(matches!(error, SttError::Settings(ref text) if text.contains("program")));
    }

    #[test]
    fn an_error_line_reads_as_its_message() {
        assert_eq!(
            answer_error(r#"{"error": "cannot load x"}"#),
            "cannot load x"
        );
        assert_eq!(answer_error("garbage"), "garbage");
    }
}

//! Local text-to-speech: [`EspeakTts`] speaks with espeak-ng on this machine, no account
//! and no server to run.
//!
//! espeak-ng is small (a Debian package of a few MB, no model file), starts in
//! milliseconds and speaks a sentence far faster than it is heard; its voice is robotic
//! but clear. Each sentence runs `espeak-ng --stdout` once with the text on its standard
//! input, and the WAV it writes is streamed out frame by frame as it arrives.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

use crate::voice::audio::AudioFrame;
use crate::voice::tts::{Tts, TtsError, TtsStream};

/// Bytes read from espeak-ng at a time (about 90 ms of 22.05 kHz audio).
const READ_BYTES: usize = 4096;

/// How espeak-ng speaks.
#[derive(Debug, Clone, PartialEq)]
pub struct EspeakTtsSettings {
    /// The `espeak-ng` program (a name on `PATH`, or a path).
    pub program: PathBuf,
    /// The voice (`espeak-ng --voices` lists them), such as `en-us`.
    pub voice: String,
    /// Speed in words per minute (espeak-ng's default is 175).
    pub words_per_minute: u32,
    /// The rate espeak-ng's voices speak at.
    pub sample_rate: u32,
    /// Longest wait for the next piece of audio.
    pub timeout: Duration,
}

impl Default for EspeakTtsSettings {
    fn default() -> Self {
        Self {
            program: "espeak-ng".into(),
            voice: "en-us".into(),
            words_per_minute: 165,
            sample_rate: 22_050,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Text to speech with espeak-ng, one process per sentence.
#[derive(Debug, Clone)]
pub struct EspeakTts {
    settings: Arc<EspeakTtsSettings>,
}

impl EspeakTts {
    /// Speech with `settings`; fails when the program cannot be run.
    pub fn new(settings: EspeakTtsSettings) -> Result<Self, TtsError> {
        let found = std::process::Command::new(&settings.program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            return Err(TtsError::Settings(format!(
                "{} cannot be run: install espeak-ng (apt-get install espeak-ng) for local speech",
                settings.program.display()
            )));
        }
        Ok(Self {
            settings: Arc::new(settings),
        })
    }
}

impl Tts for EspeakTts {
    fn sample_rate(&self) -> u32 {
        self.settings.sample_rate
    }

    fn synthesize(&self, text: &str) -> TtsStream {
        let start = Speech::Start {
            settings: self.settings.clone(),
            text: text.to_owned(),
        };
        Box::pin(stream::unfold(start, |speech| async move {
            match speech.next().await {
                Ok(Some((frame, speech))) => Some((Ok(frame), speech)),
                Ok(None) => None,
                Err(error) => Some((Err(error), Speech::Done)),
            }
        }))
    }
}

/// Where one sentence's synthesis is.
enum Speech {
    /// Not started.
    Start {
        settings: Arc<EspeakTtsSettings>,
        text: String,
    },
    /// espeak-ng is writing its WAV.
    Reading(Box<Reader>),
    /// All audio given out, or failed.
    Done,
}

/// A running espeak-ng and what of its output is not given out yet.
struct Reader {
    /// Killed when the reader is dropped (the caller interrupted the agent).
    _child: Child,
    output: ChildStdout,
    settings: Arc<EspeakTtsSettings>,
    /// Bytes read and not yet made into samples (the header until it is complete, then at
    /// most one odd byte).
    pending: Vec<u8>,
    /// Whether the WAV header has been read.
    in_data: bool,
}

impl Speech {
    /// The next frame, and what comes after it.
    async fn next(self) -> Result<Option<(AudioFrame, Speech)>, TtsError> {
        let mut reader = match self {
            Speech::Done => return Ok(None),
            Speech::Reading(reader) => reader,
            Speech::Start { settings, text } => Box::new(Reader::start(settings, &text).await?),
        };
        match reader.next_frame().await? {
            Some(frame) => Ok(Some((frame, Speech::Reading(reader)))),
            None => Ok(None),
        }
    }
}

impl Reader {
    async fn start(settings: Arc<EspeakTtsSettings>, text: &str) -> Result<Self, TtsError> {
        let mut child = Command::new(&settings.program)
            .arg("--stdout")
            .arg("-v")
            .arg(&settings.voice)
            .arg("-s")
            .arg(settings.words_per_minute.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                TtsError::Engine(format!(
                    "cannot start {}: {error}",
                    settings.program.display()
                ))
            })?;
        let (Some(mut input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(TtsError::Engine("espeak-ng's pipes were not opened".into()));
        };
        // The text goes in whole and the input is closed, which starts the speech.
        input
            .write_all(text.as_bytes())
            .await
            .map_err(|error| TtsError::Engine(format!("writing to espeak-ng: {error}")))?;
        drop(input);
        Ok(Self {
            _child: child,
            output,
            settings,
            pending: Vec::new(),
            in_data: false,
        })
    }

    /// Reads until a frame of audio is ready; `None` at the end of the speech.
    async fn next_frame(&mut self) -> Result<Option<AudioFrame>, TtsError> {
        let mut buffer = [0u8; READ_BYTES];
        loop {
            let read = timeout(self.settings.timeout, self.output.read(&mut buffer))
                .await
                .map_err(|_elapsed| TtsError::Timeout(self.settings.timeout))?
                .map_err(|error| TtsError::Engine(format!("reading espeak-ng: {error}")))?;
            if read == 0 {
                return if self.in_data {
                    Ok(None)
                } else {
                    Err(TtsError::Engine("espeak-ng wrote no audio".into()))
                };
            }
            self.pending.extend_from_slice(&buffer[..read]);
            if !self.in_data {
                match wav_data_start(&self.pending, self.settings.sample_rate)? {
                    Some(start) => {
                        self.pending.drain(..start);
                        self.in_data = true;
                    }
                    None => continue,
                }
            }
            let whole = self.pending.len() / 2 * 2;
            if whole == 0 {
                continue;
            }
            let samples = self.pending[..whole]
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            self.pending.drain(..whole);
            return Ok(Some(AudioFrame::mono(samples, self.settings.sample_rate)));
        }
    }
}

/// Where the samples start in a WAV stream that begins with `bytes`: `None` while the
/// header is incomplete; an error when it is no 16-bit mono WAV at `rate`.
fn wav_data_start(bytes: &[u8], rate: u32) -> Result<Option<usize>, TtsError> {
    let invalid = |why: &str| TtsError::Engine(format!("espeak-ng wrote no usable WAV: {why}"));
    if bytes.len() < 12 {
        return Ok(None);
    }
    if &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(invalid("no RIFF/WAVE header"));
    }
    let mut at = 12;
    let mut format_checked = false;
    while bytes.len() >= at + 8 {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let body = at + 8;
        if id == b"data" {
            return if format_checked {
                Ok(Some(body))
            } else {
                Err(invalid("audio before its format"))
            };
        }
        let size = usize::try_from(size).map_err(|_| invalid("chunk too large"))?;
        if bytes.len() < body + size {
            return Ok(None);
        }
        if id == b"fmt " {
            let field = |offset: usize| {
                u16::from_le_bytes([bytes[body + offset], bytes[body + offset + 1]])
            };
            if size < 16 {
                return Err(invalid("short format chunk"));
            }
            let sample_rate = u32::from_le_bytes([
                bytes[body + 4],
                bytes[body + 5],
                bytes[body + 6],
                bytes[body + 7],
            ]);
            if field(0) != 1 || field(2) != 1 || field(14) != 16 || sample_rate != rate {
                return Err(invalid(&format!(
                    "expected 16-bit mono PCM at {rate} Hz, got format {} with {} channel(s), {} bits at {sample_rate} Hz",
                    field(0),
                    field(2),
                    field(14)
                )));
            }
            format_checked = true;
        }
        at = body + size + size % 2;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn header(rate: u32, channels: u16) -> Vec<u8> {
        let mut wav = b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\0\0\0".to_vec();
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&channels.to_le_bytes());
        wav.extend_from_slice(&rate.to_le_bytes());
        wav.extend_from_slice(&(rate * 2).to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data\xff\xff\xff\x7f");
        wav
    }

    #[test]
    fn the_samples_start_after_the_streamed_header() {
        let wav = header(22_050, 1);
        assert_eq!(wav_data_start(&wav[..30], 22_050).expect("partial"), None);
        assert_eq!(wav_data_start(&wav, 22_050).expect("whole"), Some(44));
    }

    #[test]
    fn another_rate_or_stereo_is_refused() {
        assert!(wav_data_start(&header(16_000, 1), 22_050).is_err());
        assert!(wav_data_start(&header(22_050, 2), 22_050).is_err());
        assert!(wav_data_start(b"ID3\0\0\0\0\0\0\0\0\0\0", 22_050).is_err());
    }

    #[tokio::test]
    async fn espeak_speaks_a_sentence() {
        let tts = EspeakTts::new(EspeakTtsSettings::default())
            .expect("espeak-ng is installed (scripts/setup)");
        let mut audio = tts.synthesize("Welcome to Bella Vista.");
        let mut samples = 0;
        let mut loud = 0;
        while let Some(frame) = audio.next().await {
            let frame = frame.expect("audio");
            assert_eq!(frame.sample_rate(), 22_050);
            samples += frame.samples().len();
            loud += frame
                .samples()
                .iter()
                .filter(|s| s.unsigned_abs() > 1000)
                .count();
        }
        // About a second of speech, not silence.
        assert!(samples > 15_000 && samples < 80_000, "{samples}");
        assert!(loud > 1000, "{loud}");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_settings_error() {
        let settings = EspeakTtsSettings {
            program: "/nonexistent/espeak-ng".into(),
            ..EspeakTtsSettings::default()
        };
        assert!(matches!(
            EspeakTts::new(settings),
            Err(TtsError::Settings(_))
        ));
    }
}

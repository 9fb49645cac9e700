//! Speech providers for tests and benchmarks: [`ScriptedStt`] hears the lines it is given,
//! [`ToneTts`] speaks a tone as long as the text. Both answer at once and cost next to
//! nothing, so a voice call runs end to end without a network or a model, and what it
//! heard and said can be checked afterwards.
//!
//! ```
//! use std::time::Duration;
//! use bella_vista::voice::audio::AudioFrame;
//! use bella_vista::voice::stt::Stt;
//! use bella_vista::voice::testing::{ScriptedStt, ToneTts};
//! use bella_vista::voice::tts::Tts;
//! use futures_util::StreamExt;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let stt = ScriptedStt::new(["Two tiramisu, please."]);
//! let heard = stt.transcribe(AudioFrame::mono(vec![0; 160], 16_000), &[]).await.unwrap();
//! assert_eq!(heard.text, "Two tiramisu, please.");
//! assert_eq!(stt.utterances(), 1);
//!
//! let tts = ToneTts::new(24_000, Duration::from_millis(60), Duration::from_millis(20));
//! let frames: Vec<_> = tts.synthesize("Hello").collect().await;
//! assert_eq!(frames.len(), 15); // 5 characters x 60 ms, in 20 ms frames
//! assert_eq!(tts.synthesized(), Duration::from_millis(300));
//! # });
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::voice::audio::{AudioFrame, samples_for};
use crate::voice::stt::{Stt, SttFuture, Transcript};
use crate::voice::tts::{Tts, TtsStream};

/// Speech to text that hears the next scripted line, whatever the audio. An utterance
/// past the end of the script is heard as nothing (no turn starts).
#[derive(Debug, Default)]
pub struct ScriptedStt {
    lines: Mutex<VecDeque<String>>,
    utterances: AtomicUsize,
}

impl ScriptedStt {
    /// Hears `lines`, one per utterance, in order.
    pub fn new(lines: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            lines: Mutex::new(lines.into_iter().map(Into::into).collect()),
            utterances: AtomicUsize::new(0),
        }
    }

    /// Utterances transcribed so far.
    pub fn utterances(&self) -> usize {
        self.utterances.load(Ordering::Relaxed)
    }

    /// Lines not heard yet.
    pub fn remaining(&self) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Stt for ScriptedStt {
    fn transcribe(&self, _utterance: AudioFrame, _vocabulary: &[String]) -> SttFuture {
        self.utterances.fetch_add(1, Ordering::Relaxed);
        let text = self
            .lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(Transcript { text })))
    }
}

/// Text to speech that speaks a 200 Hz tone for a fixed time per character, in frames cut
/// from one precomputed frame (so making the audio costs next to nothing). Counts what it
/// synthesized.
#[derive(Debug)]
pub struct ToneTts {
    sample_rate: u32,
    per_char: Duration,
    tone: Arc<[i16]>,
    samples: AtomicU64,
    sentences: AtomicUsize,
}

/// The tone's pitch: 10 whole periods per 50 ms frame, so frames of that length join
/// seamlessly.
const TONE_HZ: f64 = 200.0;

impl ToneTts {
    /// A tone at `sample_rate`, `per_char` long for each character of a sentence, given out
    /// in frames of `frame`.
    pub fn new(sample_rate: u32, per_char: Duration, frame: Duration) -> Self {
        let tone = (0..samples_for(sample_rate, frame).max(1))
            .map(|i| {
                let t = i as f64 / f64::from(sample_rate);
                ((2.0 * std::f64::consts::PI * TONE_HZ * t).sin() * 8000.0).round() as i16
            })
            .collect();
        Self {
            sample_rate,
            per_char,
            tone,
            samples: AtomicU64::new(0),
            sentences: AtomicUsize::new(0),
        }
    }

    /// A tone speaker like this one, sharing its precomputed tone, with its counts at zero
    /// (one per call, without a copy of the tone each).
    pub fn fresh(&self) -> Self {
        Self {
            sample_rate: self.sample_rate,
            per_char: self.per_char,
            tone: self.tone.clone(),
            samples: AtomicU64::new(0),
            sentences: AtomicUsize::new(0),
        }
    }

    /// How long the audio for `text` is.
    pub fn spoken(&self, text: &str) -> Duration {
        self.per_char * text.trim().chars().count() as u32
    }

    /// One frame of the tone (the first frame of every sentence).
    pub fn tone_frame(&self) -> &[i16] {
        &self.tone
    }

    /// Audio synthesized so far.
    pub fn synthesized(&self) -> Duration {
        Duration::from_secs_f64(
            self.samples.load(Ordering::Relaxed) as f64 / f64::from(self.sample_rate),
        )
    }

    /// Sentences synthesized so far.
    pub fn sentences(&self) -> usize {
        self.sentences.load(Ordering::Relaxed)
    }
}

impl Tts for ToneTts {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn synthesize(&self, text: &str) -> TtsStream {
        let total = samples_for(self.sample_rate, self.spoken(text));
        self.samples.fetch_add(total as u64, Ordering::Relaxed);
        self.sentences.fetch_add(1, Ordering::Relaxed);
        let tone = self.tone.clone();
        let rate = self.sample_rate;
        let frame = tone.len();
        let frames = (0..total).step_by(frame).map(move |start| {
            let len = (total - start).min(frame);
            Ok(AudioFrame::mono(tone[..len].to_vec(), rate))
        });
        Box::pin(futures_util::stream::iter(frames))
    }
}

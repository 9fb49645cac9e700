//! Calls from files: a caller played from audio in memory (a WAV file), and an agent whose
//! audio is recorded. What `simulate`, the tests and the benchmarks use.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use crate::voice::audio::AudioFrame;
use crate::voice::audio_io::{AudioClosed, AudioInput, AudioOutput};

/// Caller audio from memory, in frames, either as fast as it is read or paced in real time.
pub struct FileInput {
    frames: VecDeque<AudioFrame>,
    pace: Option<tokio::time::Interval>,
}

impl FileInput {
    /// Plays `audio` in frames of `frame` length; `real_time` paces them like a live caller.
    pub fn new(audio: &AudioFrame, frame: Duration, real_time: bool) -> Self {
        let frames = super::wav::split_frames(audio, frame).into();
        let pace = real_time.then(|| {
            let mut interval = tokio::time::interval(frame);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            interval
        });
        FileInput { frames, pace }
    }
}

impl AudioInput for FileInput {
    async fn next_frame(&mut self) -> Option<AudioFrame> {
        if let Some(pace) = &mut self.pace {
            pace.tick().await;
        }
        self.frames.pop_front()
    }
}

/// Records the agent's audio at a fixed rate.
pub struct Recording {
    sample_rate: u32,
    samples: Vec<i16>,
}

impl Recording {
    /// An empty recording at `sample_rate`.
    pub fn new(sample_rate: u32) -> Self {
        Recording {
            sample_rate,
            samples: Vec::new(),
        }
    }

    /// Everything recorded, as one frame.
    pub fn into_frame(self) -> AudioFrame {
        AudioFrame::mono(self.samples, self.sample_rate)
    }
}

impl AudioOutput for Recording {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn write(&mut self, frame: AudioFrame) -> impl Future<Output = Result<(), AudioClosed>> + Send {
        self.samples.extend(frame.to_mono().samples());
        std::future::ready(Ok(()))
    }
}

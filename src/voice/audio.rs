//! Audio as typed frames: interleaved 16-bit PCM that carries its sample rate and channel
//! count, so a frame can never be played or analysed at the wrong rate.

use std::time::Duration;

/// Why a frame could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// Sample rate zero or channel count zero.
    #[error("invalid audio format: {sample_rate} Hz, {channels} channels")]
    InvalidFormat {
        /// The rate given.
        sample_rate: u32,
        /// The channel count given.
        channels: u16,
    },
    /// The sample count is not a multiple of the channel count.
    #[error("{samples} samples cannot be split into {channels} channels")]
    RaggedFrame {
        /// Samples given.
        samples: usize,
        /// Channels.
        channels: u16,
    },
}

/// A block of interleaved 16-bit PCM samples with its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    samples: Vec<i16>,
    sample_rate: u32,
    channels: u16,
}

impl AudioFrame {
    /// A frame from interleaved samples.
    pub fn new(samples: Vec<i16>, sample_rate: u32, channels: u16) -> Result<Self, AudioError> {
        if sample_rate == 0 || channels == 0 {
            return Err(AudioError::InvalidFormat {
                sample_rate,
                channels,
            });
        }
        if !samples.len().is_multiple_of(usize::from(channels)) {
            return Err(AudioError::RaggedFrame {
                samples: samples.len(),
                channels,
            });
        }
        Ok(AudioFrame {
            samples,
            sample_rate,
            channels,
        })
    }

    /// A mono frame; any sample count is valid.
    pub fn mono(samples: Vec<i16>, sample_rate: u32) -> Self {
        AudioFrame {
            samples,
            sample_rate: sample_rate.max(1),
            channels: 1,
        }
    }

    /// Silence of (about) `duration`.
    pub fn silence(sample_rate: u32, channels: u16, duration: Duration) -> Self {
        let channels = channels.max(1);
        let per_channel = samples_for(sample_rate, duration);
        AudioFrame {
            samples: vec![0; per_channel * usize::from(channels)],
            sample_rate: sample_rate.max(1),
            channels,
        }
    }

    /// Interleaved samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// The samples, taken out.
    pub fn into_samples(self) -> Vec<i16> {
        self.samples
    }

    /// Samples per second per channel.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channel count.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Samples per channel.
    pub fn samples_per_channel(&self) -> usize {
        self.samples.len() / usize::from(self.channels)
    }

    /// How long the frame plays.
    pub fn duration(&self) -> Duration {
        duration_of(self.samples_per_channel(), self.sample_rate)
    }

    /// Whether the frame holds no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The frame mixed down to one channel (channels averaged).
    pub fn to_mono(&self) -> AudioFrame {
        if self.channels == 1 {
            return self.clone();
        }
        let channels = usize::from(self.channels);
        let samples = self
            .samples
            .chunks_exact(channels)
            .map(|chunk| {
                let sum: i32 = chunk.iter().map(|&s| i32::from(s)).sum();
                // The mean of i16 values fits in i16.
                (sum / channels as i32) as i16
            })
            .collect();
        AudioFrame::mono(samples, self.sample_rate)
    }

    /// Root-mean-square level in dBFS (-inf for digital silence is reported as -100).
    pub fn level_dbfs(&self) -> f32 {
        if self.samples.is_empty() {
            return -100.0;
        }
        let sum: f64 = self
            .samples
            .iter()
            .map(|&s| {
                let x = f64::from(s) / 32768.0;
                x * x
            })
            .sum();
        let rms = (sum / self.samples.len() as f64).sqrt();
        if rms <= 1e-5 {
            -100.0
        } else {
            (20.0 * rms.log10()) as f32
        }
    }

    /// Appends another frame of the same format; returns it back if the format differs.
    pub fn append(&mut self, other: &AudioFrame) -> Result<(), AudioError> {
        if other.sample_rate != self.sample_rate || other.channels != self.channels {
            return Err(AudioError::InvalidFormat {
                sample_rate: other.sample_rate,
                channels: other.channels,
            });
        }
        self.samples.extend_from_slice(&other.samples);
        Ok(())
    }
}

/// Moves the first `count` samples of `queue` (or all, if fewer) to the end of `out`, as
/// slice copies rather than sample by sample (this runs for every 20 ms frame of a call).
pub fn move_front(queue: &mut std::collections::VecDeque<i16>, count: usize, out: &mut Vec<i16>) {
    let count = count.min(queue.len());
    let (front, back) = queue.as_slices();
    let from_front = count.min(front.len());
    out.extend_from_slice(&front[..from_front]);
    out.extend_from_slice(&back[..count - from_front]);
    queue.drain(..count);
}

/// Samples per channel in `duration` at `sample_rate` (rounded down).
pub fn samples_for(sample_rate: u32, duration: Duration) -> usize {
    (u128::from(sample_rate) * duration.as_nanos() / 1_000_000_000) as usize
}

/// Play time of `samples` per channel at `sample_rate`.
pub fn duration_of(samples: usize, sample_rate: u32) -> Duration {
    if sample_rate == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos((samples as u128 * 1_000_000_000 / u128::from(sample_rate)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_know_their_duration_and_format() {
        let frame = AudioFrame::new(vec![0; 960], 48_000, 2).unwrap();
        assert_eq!(frame.duration(), Duration::from_millis(10));
        assert_eq!(frame.to_mono().samples().len(), 480);
        assert!(AudioFrame::new(vec![0; 3], 48_000, 2).is_err());
        assert!(AudioFrame::new(vec![], 0, 1).is_err());
    }

    #[test]
    fn move_front_moves_across_the_ring_boundary() {
        let mut queue: std::collections::VecDeque<i16> = (0..6).collect();
        queue.pop_front();
        queue.pop_front();
        queue.extend([6, 7, 8]);
        let mut out = vec![-1];
        move_front(&mut queue, 5, &mut out);
        assert_eq!(out, vec![-1, 2, 3, 4, 5, 6]);
        assert_eq!(queue, [7, 8]);
        move_front(&mut queue, 9, &mut out);
        assert!(queue.is_empty());
        assert_eq!(out.len(), 8);
    }

    #[test]
    fn silence_is_silent_and_a_tone_is_not() {
        let silence = AudioFrame::silence(16_000, 1, Duration::from_millis(20));
        assert_eq!(silence.samples().len(), 320);
        assert_eq!(silence.level_dbfs(), -100.0);
        let tone: Vec<i16> = (0..320)
            .map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16)
            .collect();
        assert!(AudioFrame::mono(tone, 16_000).level_dbfs() > -20.0);
    }
}

//! Sample-rate conversion of a stream of [`AudioFrame`]s, built on rubato.
//!
//! A [`Resampler`] converts frames of any length from one fixed rate to another and hands
//! back whatever output is ready after each frame. Its output lines up with its input: the
//! filter's startup delay is trimmed, so output sample `i` belongs at time
//! `i / output_rate`, the same instant as in the input. Call [`Resampler::flush`] at the end
//! of the stream to get the last samples still held inside.
//!
//! ```
//! use bella_vista::voice::audio::AudioFrame;
//! use bella_vista::voice::resample::Resampler;
//!
//! let mut resampler = Resampler::new(48_000, 16_000, 1)?;
//! let mut out = resampler.process(&AudioFrame::mono(vec![0; 960], 48_000))?;
//! out.append(&resampler.flush()?)?;
//! assert_eq!(out.samples_per_channel(), 320);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, Fft, FixedAsync, FixedSync, SincInterpolationParameters, WindowFunction};

use super::audio::{AudioError, AudioFrame, duration_of, samples_for};

/// How much input the resampler gathers before it converts a block: the main part of its
/// latency.
const BLOCK: Duration = Duration::from_millis(10);

/// The longest block the exact (FFT) converter may need; rate pairs whose smallest exact
/// block is longer (a rate with few common factors with the other) use the sinc converter.
const MAX_EXACT_BLOCK: Duration = Duration::from_millis(20);

/// Sinc filter length for the fallback converter (delay about half of it, in input samples).
const SINC_LEN: usize = 128;

/// Why a resampler could not be made or could not convert a frame.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// A rate or the channel count is zero.
    #[error("cannot resample {input_rate} Hz -> {output_rate} Hz with {channels} channels")]
    InvalidFormat {
        /// Input rate asked for.
        input_rate: u32,
        /// Output rate asked for.
        output_rate: u32,
        /// Channel count asked for.
        channels: u16,
    },
    /// A frame arrived at a rate other than the one the resampler was made for.
    #[error("frame at {actual} Hz given to a resampler for {expected} Hz")]
    UnexpectedRate {
        /// The resampler's input rate.
        expected: u32,
        /// The frame's rate.
        actual: u32,
    },
    /// A frame arrived with a channel count other than the one the resampler was made for.
    #[error("frame with {actual} channels given to a resampler for {expected}")]
    UnexpectedChannels {
        /// The resampler's channel count.
        expected: u16,
        /// The frame's channel count.
        actual: u16,
    },
    /// rubato refused the rate pair.
    #[error("resampler construction failed: {0}")]
    Construction(#[from] rubato::ResamplerConstructionError),
    /// rubato failed while converting (a bug in the buffer bookkeeping here).
    #[error("resampling failed: {0}")]
    Engine(#[from] rubato::ResampleError),
    /// A buffer had the wrong size for rubato (a bug in the bookkeeping here).
    #[error("resampler buffer: {0}")]
    Buffer(#[from] rubato::audioadapter_buffers::SizeError),
    /// The output could not be made into a frame.
    #[error(transparent)]
    Audio(#[from] AudioError),
}

/// Converts a stream of interleaved frames from one sample rate to another.
///
/// Any rates are accepted; the common pairs (48, 24, 16, 8 kHz and 44.1/22.05 kHz to any of
/// those) use rubato's exact FFT converter on 10 ms blocks, other pairs its sinc converter.
/// Equal rates pass frames through untouched.
pub struct Resampler {
    input_rate: u32,
    output_rate: u32,
    channels: u16,
    /// `None` when the rates are equal.
    engine: Option<Engine>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("input_rate", &self.input_rate)
            .field("output_rate", &self.output_rate)
            .field("channels", &self.channels)
            .field("delay", &self.delay())
            .finish()
    }
}

impl Resampler {
    /// A resampler for frames of `channels` channels from `input_rate` to `output_rate`.
    pub fn new(input_rate: u32, output_rate: u32, channels: u16) -> Result<Self, ResampleError> {
        if input_rate == 0 || output_rate == 0 || channels == 0 {
            return Err(ResampleError::InvalidFormat {
                input_rate,
                output_rate,
                channels,
            });
        }
        let engine = if input_rate == output_rate {
            None
        } else {
            Some(Engine::new(input_rate, output_rate, usize::from(channels))?)
        };
        Ok(Resampler {
            input_rate,
            output_rate,
            channels,
            engine,
        })
    }

    /// The rate frames must arrive at.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// The rate frames leave at.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// The channel count of frames in and out.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// The most a sample is held back: waiting for its input block to fill, plus the
    /// filter's own delay. Zero for equal rates; about 15 ms for 48 kHz -> 16 kHz.
    pub fn delay(&self) -> Duration {
        match &self.engine {
            None => Duration::ZERO,
            Some(engine) => {
                duration_of(engine.inner.input_frames_max(), self.input_rate)
                    + duration_of(engine.inner.output_delay(), self.output_rate)
            }
        }
    }

    /// Takes one frame of any length and returns the output that is ready (possibly empty).
    pub fn process(&mut self, frame: &AudioFrame) -> Result<AudioFrame, ResampleError> {
        self.check_format(frame)?;
        let Some(engine) = &mut self.engine else {
            return Ok(frame.clone());
        };
        engine.push(frame.samples());
        let mut out = Vec::new();
        while engine.pending_frames() >= engine.inner.input_frames_next() {
            engine.convert_block(&mut out)?;
        }
        Ok(AudioFrame::new(out, self.output_rate, self.channels)?)
    }

    /// Ends the stream: returns the output still held inside, so that the whole output is
    /// as long as the whole input at the new rate, and makes the resampler ready for a new
    /// stream.
    pub fn flush(&mut self) -> Result<AudioFrame, ResampleError> {
        let Some(engine) = &mut self.engine else {
            return Ok(AudioFrame::new(
                Vec::new(),
                self.output_rate,
                self.channels,
            )?);
        };
        let expected = engine.expected_output(self.input_rate, self.output_rate);
        let remaining =
            usize::try_from(expected.saturating_sub(engine.frames_out)).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        // Each block yields output, so this bound is never reached; it only rules out a loop.
        let max_blocks = remaining.saturating_add(engine.inner.output_delay() + 2);
        for _ in 0..max_blocks {
            if engine.frames_out >= expected {
                break;
            }
            engine.pad_to_block();
            engine.convert_block(&mut out)?;
        }
        out.truncate(remaining.saturating_mul(engine.channels));
        engine.reset();
        Ok(AudioFrame::new(out, self.output_rate, self.channels)?)
    }

    fn check_format(&self, frame: &AudioFrame) -> Result<(), ResampleError> {
        if frame.sample_rate() != self.input_rate {
            return Err(ResampleError::UnexpectedRate {
                expected: self.input_rate,
                actual: frame.sample_rate(),
            });
        }
        if frame.channels() != self.channels {
            return Err(ResampleError::UnexpectedChannels {
                expected: self.channels,
                actual: frame.channels(),
            });
        }
        Ok(())
    }
}

/// The rubato converter and the bookkeeping around it.
struct Engine {
    inner: Box<dyn rubato::Resampler<f32>>,
    channels: usize,
    /// Interleaved input not yet converted.
    pending: Vec<f32>,
    /// Interleaved output of one block.
    scratch: Vec<f32>,
    /// Output frames of startup delay still to drop.
    trim: usize,
    /// Input frames taken since the stream began.
    frames_in: u64,
    /// Output frames handed out since the stream began.
    frames_out: u64,
}

impl Engine {
    fn new(input_rate: u32, output_rate: u32, channels: usize) -> Result<Self, ResampleError> {
        let (rate_in, rate_out) = (input_rate as usize, output_rate as usize);
        let block = samples_for(input_rate, BLOCK).max(1);
        let exact_block = rate_in / gcd(rate_in, rate_out);
        let inner: Box<dyn rubato::Resampler<f32>> =
            if exact_block <= samples_for(input_rate, MAX_EXACT_BLOCK) {
                let chunk = block.div_ceil(exact_block) * exact_block;
                Box::new(Fft::<f32>::new(
                    rate_in,
                    rate_out,
                    chunk,
                    channels,
                    FixedSync::Both,
                )?)
            } else {
                let parameters =
                    SincInterpolationParameters::new(SINC_LEN, WindowFunction::BlackmanHarris2);
                Box::new(Async::<f32>::new_sinc(
                    f64::from(output_rate) / f64::from(input_rate),
                    1.0,
                    &parameters,
                    block,
                    channels,
                    FixedAsync::Input,
                )?)
            };
        let scratch = vec![0.0; inner.output_frames_max() * channels];
        let trim = inner.output_delay();
        Ok(Engine {
            inner,
            channels,
            pending: Vec::new(),
            scratch,
            trim,
            frames_in: 0,
            frames_out: 0,
        })
    }

    fn push(&mut self, samples: &[i16]) {
        self.pending
            .extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
        self.frames_in += (samples.len() / self.channels) as u64;
    }

    fn pending_frames(&self) -> usize {
        self.pending.len() / self.channels
    }

    /// Fills the pending input with silence up to one block.
    fn pad_to_block(&mut self) {
        let needed = self.inner.input_frames_next() * self.channels;
        if self.pending.len() < needed {
            self.pending.resize(needed, 0.0);
        }
    }

    /// The whole stream's output length: the input length at the output rate, rounded.
    fn expected_output(&self, input_rate: u32, output_rate: u32) -> u64 {
        let scaled = u128::from(self.frames_in) * u128::from(output_rate);
        let rounded = (scaled + u128::from(input_rate / 2)) / u128::from(input_rate);
        u64::try_from(rounded).unwrap_or(u64::MAX)
    }

    /// Converts one block from the front of `pending`, appending the output to `out`.
    fn convert_block(&mut self, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let frames_in = self.inner.input_frames_next();
        let capacity = self.scratch.len() / self.channels;
        let input = InterleavedSlice::new(&self.pending[..], self.channels, frames_in)?;
        let mut output = InterleavedSlice::new_mut(&mut self.scratch[..], self.channels, capacity)?;
        let (read, written) = self.inner.process_into_buffer(&input, &mut output, None)?;
        self.pending.drain(..read * self.channels);
        let skipped = written.min(self.trim);
        self.trim -= skipped;
        let fresh = &self.scratch[skipped * self.channels..written * self.channels];
        out.extend(fresh.iter().map(|&x| to_i16(x)));
        self.frames_out += (written - skipped) as u64;
        Ok(())
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.pending.clear();
        self.trim = self.inner.output_delay();
        self.frames_in = 0;
        self.frames_out = 0;
    }
}

fn to_i16(x: f32) -> i16 {
    // Clamped to the i16 range first, so the cast cannot wrap.
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, duration: Duration, amplitude: f32) -> Vec<i16> {
        (0..samples_for(rate, duration))
            .map(|i| {
                let t = i as f32 / rate as f32;
                ((2.0 * std::f32::consts::PI * freq * t).sin() * amplitude) as i16
            })
            .collect()
    }

    /// Feeds `samples` in frames whose lengths cycle through `sizes`, then flushes.
    fn run(resampler: &mut Resampler, samples: &[i16], sizes: &[usize]) -> Vec<i16> {
        let rate = resampler.input_rate();
        let mut out = Vec::new();
        let mut rest = samples;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            let frame = AudioFrame::mono(head.to_vec(), rate);
            out.extend(resampler.process(&frame).unwrap().into_samples());
        }
        out.extend(resampler.flush().unwrap().into_samples());
        out
    }

    fn rising_zero_crossings(samples: &[i16]) -> usize {
        samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count()
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_duration_from_48k_to_16k() {
        let input = sine(1000.0, 48_000, Duration::from_secs(1), 12_000.0);
        let mut resampler = Resampler::new(48_000, 16_000, 1).unwrap();
        let out = run(&mut resampler, &input, &[960, 480, 777, 13]);
        let duration = duration_of(out.len(), 16_000);
        assert!(duration.abs_diff(Duration::from_secs(1)) <= Duration::from_millis(2));
        let crossings = rising_zero_crossings(&out);
        assert!((998..=1001).contains(&crossings), "{crossings} cycles");
        let level = AudioFrame::mono(out[1000..15000].to_vec(), 16_000).level_dbfs();
        let expected = AudioFrame::mono(input, 48_000).level_dbfs();
        assert!((level - expected).abs() < 0.5, "{level} vs {expected} dBFS");
    }

    #[test]
    fn upsampling_gives_the_right_lengths() {
        for (from, to, sizes) in [
            (8_000, 16_000, &[160, 80, 33][..]),
            (24_000, 48_000, &[480, 240, 1001][..]),
        ] {
            let input = sine(440.0, from, Duration::from_millis(1234), 8000.0);
            let mut resampler = Resampler::new(from, to, 1).unwrap();
            let out = run(&mut resampler, &input, sizes);
            assert_eq!(
                out.len(),
                input.len() * (to / from) as usize,
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn equal_rates_pass_frames_through_unchanged() {
        let mut resampler = Resampler::new(16_000, 16_000, 1).unwrap();
        let frame = AudioFrame::mono(sine(300.0, 16_000, Duration::from_millis(20), 5e3), 16_000);
        assert_eq!(resampler.process(&frame).unwrap(), frame);
        assert!(resampler.flush().unwrap().is_empty());
        assert_eq!(resampler.delay(), Duration::ZERO);
    }

    #[test]
    fn output_stays_aligned_with_input_and_arrives_while_streaming() {
        // 100 ms of silence, then a tone: the tone must start at 100 ms in the output too.
        let mut input = vec![0; 4800];
        input.extend(sine(500.0, 48_000, Duration::from_millis(200), 10_000.0));
        let mut resampler = Resampler::new(48_000, 16_000, 1).unwrap();
        let mut out = Vec::new();
        for chunk in input.chunks(960) {
            let frame = resampler
                .process(&AudioFrame::mono(chunk.to_vec(), 48_000))
                .unwrap();
            out.extend(frame.into_samples());
        }
        // All but the held-back tail is already out before the flush.
        let held = 4800 + 9600 - out.len() * 3;
        assert!(
            duration_of(held, 48_000) <= resampler.delay(),
            "{held} held"
        );
        out.extend(resampler.flush().unwrap().into_samples());
        let onset = out.iter().position(|s| s.abs() > 1000).unwrap();
        assert!(onset.abs_diff(1600) <= 16, "tone starts at sample {onset}");
        assert!(resampler.delay() <= Duration::from_millis(20));
    }

    #[test]
    fn any_input_rate_works_with_small_delay() {
        for from in [22_050, 44_100, 11_025, 44_101] {
            let input = sine(1000.0, from, Duration::from_secs(1), 12_000.0);
            let mut resampler = Resampler::new(from, 16_000, 1).unwrap();
            assert!(
                resampler.delay() <= Duration::from_millis(32),
                "{from} Hz: {:?}",
                resampler.delay()
            );
            let out = run(&mut resampler, &input, &[441, 100, 999]);
            assert_eq!(out.len(), 16_000, "{from} Hz");
            let crossings = rising_zero_crossings(&out);
            assert!((998..=1001).contains(&crossings), "{from} Hz: {crossings}");
        }
    }

    #[test]
    fn stereo_channels_stay_apart() {
        let left = sine(1000.0, 48_000, Duration::from_millis(500), 10_000.0);
        let interleaved: Vec<i16> = left.iter().flat_map(|&s| [s, 0]).collect();
        let mut resampler = Resampler::new(48_000, 24_000, 2).unwrap();
        let mut out = resampler
            .process(&AudioFrame::new(interleaved, 48_000, 2).unwrap())
            .unwrap();
        out.append(&resampler.flush().unwrap()).unwrap();
        assert_eq!(out.samples_per_channel(), 12_000);
        let right_peak = out
            .samples()
            .iter()
            .skip(1)
            .step_by(2)
            .map(|s| s.abs())
            .max();
        assert!(right_peak.unwrap_or(0) < 50);
    }

    #[test]
    fn frames_in_the_wrong_format_are_refused() {
        let mut resampler = Resampler::new(48_000, 16_000, 1).unwrap();
        let err = resampler.process(&AudioFrame::mono(vec![0; 160], 16_000));
        assert!(matches!(
            err,
            Err(ResampleError::UnexpectedRate {
                expected: 48_000,
                actual: 16_000
            })
        ));
        let stereo = AudioFrame::new(vec![0; 960], 48_000, 2).unwrap();
        assert!(matches!(
            resampler.process(&stereo),
            Err(ResampleError::UnexpectedChannels { .. })
        ));
        assert!(Resampler::new(0, 16_000, 1).is_err());
        assert!(Resampler::new(16_000, 8_000, 0).is_err());
    }

    #[test]
    fn a_flushed_resampler_starts_a_new_stream_cleanly() {
        let mut resampler = Resampler::new(16_000, 8_000, 1).unwrap();
        let input = sine(300.0, 16_000, Duration::from_millis(300), 9000.0);
        let first = run(&mut resampler, &input, &[320]);
        let second = run(&mut resampler, &input, &[320]);
        assert_eq!(first, second);
    }
}

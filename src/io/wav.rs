//! WAV files as [`AudioFrame`]s, for tests, benchmarks and recorded calls.
//!
//! ```
//! use bella_vista::io::wav::{read_wav, split_frames, write_wav};
//! use bella_vista::voice::audio::AudioFrame;
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("hello.wav");
//! write_wav(&path, &AudioFrame::mono(vec![0; 500], 16_000))?;
//! let frames = split_frames(&read_wav(&path)?, Duration::from_millis(20));
//! assert_eq!(frames.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;
use std::time::Duration;

use hound::{SampleFormat, WavReader, WavSpec, WavWriter};

use crate::voice::audio::{AudioError, AudioFrame, samples_for};

/// Why a WAV file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file could not be opened, read, parsed or written.
    #[error("WAV file: {0}")]
    File(#[from] hound::Error),
    /// The samples are in a format not read here.
    #[error("unsupported WAV sample format: {bits}-bit {format:?}")]
    UnsupportedFormat {
        /// Bits per sample.
        bits: u16,
        /// Integer or float.
        format: SampleFormat,
    },
    /// The header describes no valid frame (zero channels or rate, a cut-off last frame).
    #[error(transparent)]
    Audio(#[from] AudioError),
}

/// Reads a whole WAV file: integer PCM of 8 to 32 bits (scaled to 16) or 32-bit float, any
/// rate and channel count, returned as stored (not resampled or mixed down).
pub fn read_wav(path: impl AsRef<Path>) -> Result<AudioFrame, WavError> {
    let reader = WavReader::open(path)?;
    let spec = reader.spec();
    let samples: Vec<i16> = match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Int, 16) => reader.into_samples::<i16>().collect::<Result<_, _>>()?,
        (SampleFormat::Int, bits @ 8..=32) => {
            let shift = i32::from(bits) - 16;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|s| to_16_bits(s, shift)))
                .collect::<Result<_, _>>()?
        }
        (SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .map(|s| s.map(float_to_i16))
            .collect::<Result<_, _>>()?,
        (format, bits) => return Err(WavError::UnsupportedFormat { bits, format }),
    };
    Ok(AudioFrame::new(samples, spec.sample_rate, spec.channels)?)
}

/// Writes a frame as a 16-bit PCM WAV file at its own rate and channel count.
pub fn write_wav(path: impl AsRef<Path>, frame: &AudioFrame) -> Result<(), WavError> {
    let spec = WavSpec {
        channels: frame.channels(),
        sample_rate: frame.sample_rate(),
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let mut writer = WavWriter::create(path, spec)?;
    for &sample in frame.samples() {
        writer.write_sample(sample)?;
    }
    writer.finalize()?;
    Ok(())
}

/// Cuts a frame into frames of `frame_duration` each (rounded down to whole samples); the
/// last one is padded with silence. An empty frame, or a duration shorter than one sample,
/// gives no frames.
pub fn split_frames(frame: &AudioFrame, frame_duration: Duration) -> Vec<AudioFrame> {
    let per_channel = samples_for(frame.sample_rate(), frame_duration);
    if per_channel == 0 || frame.is_empty() {
        return Vec::new();
    }
    let size = per_channel * usize::from(frame.channels());
    frame
        .samples()
        .chunks(size)
        .map(|chunk| {
            let mut samples = chunk.to_vec();
            samples.resize(size, 0);
            AudioFrame::new(samples, frame.sample_rate(), frame.channels())
                .expect("whole per-channel frames in the source frame's valid format")
        })
        .collect()
}

fn to_16_bits(sample: i32, shift: i32) -> i16 {
    let scaled = if shift >= 0 {
        sample >> shift
    } else {
        sample << -shift
    };
    scaled.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

fn float_to_i16(sample: f32) -> i16 {
    // Clamped to the i16 range first, so the cast cannot wrap.
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_frame_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        for frame in [
            AudioFrame::mono(
                (0..16_000).map(|i| (i % 200 - 100) as i16 * 300).collect(),
                16_000,
            ),
            AudioFrame::new((0..4800).map(|i| i as i16).collect(), 48_000, 2).unwrap(),
        ] {
            let path = dir.path().join("frame.wav");
            write_wav(&path, &frame).unwrap();
            assert_eq!(read_wav(&path).unwrap(), frame);
        }
    }

    #[test]
    fn float_and_24_bit_files_are_read_as_16_bit() {
        let dir = tempfile::tempdir().unwrap();
        let float = dir.path().join("float.wav");
        let spec = WavSpec {
            channels: 1,
            sample_rate: 22_050,
            bits_per_sample: 32,
            sample_format: SampleFormat::Float,
        };
        let mut writer = WavWriter::create(&float, spec).unwrap();
        for s in [0.0f32, 0.5, -1.0, 2.0] {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        let frame = read_wav(&float).unwrap();
        assert_eq!(frame.samples(), [0, 16384, -32768, 32767]);
        assert_eq!(frame.sample_rate(), 22_050);

        let deep = dir.path().join("24.wav");
        let spec = WavSpec {
            bits_per_sample: 24,
            sample_format: SampleFormat::Int,
            ..spec
        };
        let mut writer = WavWriter::create(&deep, spec).unwrap();
        for s in [0i32, 256 * 1000, -(1 << 23)] {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        assert_eq!(read_wav(&deep).unwrap().samples(), [0, 1000, -32768]);
    }

    #[test]
    fn missing_and_broken_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_wav(dir.path().join("absent.wav")).is_err());
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"RIFF not really").unwrap();
        assert!(matches!(read_wav(&junk), Err(WavError::File(_))));
    }

    #[test]
    fn frames_are_split_and_the_last_is_padded() {
        let frame = AudioFrame::new((1..=1000).collect(), 16_000, 2).unwrap();
        let frames = split_frames(&frame, Duration::from_millis(10));
        assert_eq!(frames.len(), 4);
        assert!(
            frames
                .iter()
                .all(|f| f.samples().len() == 320 && f.channels() == 2)
        );
        assert_eq!(frames[3].samples()[..40], frame.samples()[960..]);
        assert!(frames[3].samples()[40..].iter().all(|&s| s == 0));
        assert!(split_frames(&frame, Duration::ZERO).is_empty());
        assert!(
            split_frames(&AudioFrame::mono(vec![], 16_000), Duration::from_millis(10)).is_empty()
        );
    }
}

//! Samples between a device's format and 16-bit PCM, and between channel layouts.

use cpal::{FromSample, Sample};

/// One device sample as 16-bit PCM (floats are clamped to full scale).
pub(super) fn to_i16<T: Sample>(sample: T) -> i16
where
    i16: FromSample<T>,
{
    i16::from_sample_(sample)
}

/// One 16-bit PCM sample in a device's format.
pub(super) fn from_i16<T: FromSample<i16>>(sample: i16) -> T {
    T::from_sample_(sample)
}

/// Interleaved samples laid out for `to` channels instead of `from`: equal layouts are
/// copied, anything else is averaged down to mono and the mono copied into every channel.
/// Zero channel counts are treated as mono; a trailing partial frame is dropped.
pub(super) fn remix(samples: &[i16], from: u16, to: u16) -> Vec<i16> {
    let from = usize::from(from.max(1));
    let to = usize::from(to.max(1));
    if from == to {
        return samples[..samples.len() - samples.len() % from].to_vec();
    }
    let mut out = Vec::with_capacity(samples.len() / from * to);
    for frame in samples.chunks_exact(from) {
        let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
        // The mean of i16 values is an i16.
        let mono = (sum / from as i32) as i16;
        out.extend(std::iter::repeat_n(mono, to));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_map_to_full_scale_and_clamp() {
        assert_eq!(to_i16(0.0_f32), 0);
        assert_eq!(to_i16(0.5_f32), 16_384);
        assert_eq!(to_i16(-1.0_f32), i16::MIN);
        assert_eq!(to_i16(1.0_f32), i16::MAX);
        assert_eq!(to_i16(3.0_f32), i16::MAX);
        assert_eq!(to_i16(-3.0_f64), i16::MIN);
        assert_eq!(from_i16::<f32>(i16::MIN), -1.0);
        assert_eq!(from_i16::<f32>(16_384), 0.5);
    }

    #[test]
    fn integers_keep_their_top_bits() {
        assert_eq!(to_i16(1234_i16), 1234);
        assert_eq!(to_i16(32_768_u16), 0);
        assert_eq!(to_i16(0_u16), i16::MIN);
        assert_eq!(to_i16(u16::MAX), i16::MAX);
        assert_eq!(to_i16(0x1234_5678_i32), 0x1234);
        assert_eq!(to_i16(cpal::I24::new(0x12_3456).unwrap()), 0x1234);
        assert_eq!(to_i16(128_u8), 0);
        assert_eq!(from_i16::<u16>(0), 32_768);
        assert_eq!(from_i16::<i32>(0x1234), 0x1234_0000);
        assert_eq!(from_i16::<u8>(i16::MIN), 0);
    }

    #[test]
    fn mono_is_copied_into_every_channel() {
        assert_eq!(remix(&[1, 2, 3], 1, 2), vec![1, 1, 2, 2, 3, 3]);
        assert_eq!(remix(&[7], 1, 4), vec![7, 7, 7, 7]);
        assert_eq!(remix(&[1, 2, 3], 1, 1), vec![1, 2, 3]);
    }

    #[test]
    fn other_layouts_are_averaged_through_mono() {
        assert_eq!(remix(&[100, 300, -10, -20], 2, 1), vec![200, -15]);
        assert_eq!(
            remix(&[i16::MAX, i16::MAX, i16::MIN, i16::MIN], 2, 1),
            vec![i16::MAX, i16::MIN]
        );
        assert_eq!(
            remix(&[10, 20, 30, 40], 2, 4),
            vec![15, 15, 15, 15, 35, 35, 35, 35]
        );
    }

    #[test]
    fn partial_frames_and_zero_channels_are_tolerated() {
        assert_eq!(remix(&[1, 2, 3], 2, 2), vec![1, 2]);
        assert_eq!(remix(&[1, 2, 3], 2, 1), vec![1]);
        assert_eq!(remix(&[5], 0, 0), vec![5]);
        assert!(remix(&[], 1, 2).is_empty());
    }
}

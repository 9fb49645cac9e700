//! Opus for LiveKit audio: 48 kHz mono, 20 ms packets. No I/O; callers run these off the
//! async runtime (a blocking task for encoding, a thread per track for decoding).

use opus::{Application, Channels};

use crate::voice::audio::AudioFrame;

/// The rate of all audio in and out of a room.
pub(super) const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms packet at [`SAMPLE_RATE`], mono.
pub(super) const FRAME_SAMPLES: usize = 960;
/// The longest Opus packet: 120 ms.
const MAX_PACKET_SAMPLES: usize = 5_760;
/// The largest encoded packet we produce (Opus recommends 4000 bytes as a safe bound).
const MAX_PACKET_BYTES: usize = 4_000;
/// Lost packets concealed (packet-loss concealment) before a gap is treated as a pause.
const MAX_CONCEALED: u16 = 5;
/// The longest pause (10 s) filled with silence; a longer timestamp jump is a discontinuity
/// (a new source), not a pause.
const MAX_SILENCE_FILL: usize = SAMPLE_RATE as usize * 10;

/// Encodes mono 48 kHz PCM into 20 ms Opus packets, whatever the length of the input blocks.
pub(super) struct OpusEncoder {
    encoder: opus::Encoder,
    pending: Vec<i16>,
}

impl OpusEncoder {
    /// A voice encoder.
    pub(super) fn new() -> Result<Self, opus::Error> {
        let mut encoder = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)?;
        encoder.set_inband_fec(true)?;
        Ok(OpusEncoder {
            encoder,
            pending: Vec::with_capacity(FRAME_SAMPLES * 2),
        })
    }

    /// Takes mono samples and returns the packets completed by them (one per 20 ms; samples
    /// short of a packet wait for the next call).
    pub(super) fn push(&mut self, samples: &[i16]) -> Result<Vec<Vec<u8>>, opus::Error> {
        self.pending.extend_from_slice(samples);
        let mut packets = Vec::with_capacity(self.pending.len() / FRAME_SAMPLES);
        let mut start = 0;
        while self.pending.len() - start >= FRAME_SAMPLES {
            let frame = &self.pending[start..start + FRAME_SAMPLES];
            packets.push(self.encoder.encode_vec(frame, MAX_PACKET_BYTES)?);
            start += FRAME_SAMPLES;
        }
        self.pending.drain(..start);
        Ok(packets)
    }
}

/// Decodes one remote track's Opus packets, in RTP sequence order, into mono 48 kHz frames
/// that keep real time: lost packets are concealed, and the pauses of discontinuous
/// transmission (DTX: no packets while the sender is silent) come out as silence.
pub(super) struct OpusDecoder {
    decoder: opus::Decoder,
    last: Option<Position>,
    buffer: Vec<i16>,
}

/// Where the stream was after the last packet.
#[derive(Debug, Clone, Copy)]
struct Position {
    sequence: u16,
    /// The RTP timestamp the next packet has when nothing is missing.
    next_timestamp: u32,
}

impl OpusDecoder {
    /// A mono decoder (stereo streams are downmixed by Opus itself).
    pub(super) fn new() -> Result<Self, opus::Error> {
        Ok(OpusDecoder {
            decoder: opus::Decoder::new(SAMPLE_RATE, Channels::Mono)?,
            last: None,
            buffer: vec![0; MAX_PACKET_SAMPLES],
        })
    }

    /// Decodes the packet with RTP sequence number `sequence` and timestamp `timestamp`.
    /// Late or duplicate packets are dropped; a gap is concealed or filled with silence
    /// first; an undecodable packet yields nothing.
    pub(super) fn decode(
        &mut self,
        sequence: u16,
        timestamp: u32,
        payload: &[u8],
    ) -> Vec<AudioFrame> {
        let mut frames = Vec::new();
        if let Some(last) = self.last {
            let step = sequence.wrapping_sub(last.sequence);
            if step == 0 || step > u16::MAX / 2 {
                return frames;
            }
            let mut filled = 0;
            if (2..=MAX_CONCEALED + 1).contains(&step) {
                for _ in 1..step {
                    match self
                        .decoder
                        .decode(&[], &mut self.buffer[..FRAME_SAMPLES], false)
                    {
                        Ok(n) => {
                            filled += n;
                            frames.push(AudioFrame::mono(self.buffer[..n].to_vec(), SAMPLE_RATE));
                        }
                        Err(err) => tracing::debug!(%err, "opus concealment failed"),
                    }
                }
            }
            let gap = timestamp.wrapping_sub(last.next_timestamp) as usize;
            if gap <= MAX_SILENCE_FILL && gap > filled + FRAME_SAMPLES / 2 {
                frames.extend(silence(gap - filled));
            }
        }
        match self.decoder.decode(payload, &mut self.buffer, false) {
            Ok(n) => {
                frames.push(AudioFrame::mono(self.buffer[..n].to_vec(), SAMPLE_RATE));
                self.last = Some(Position {
                    sequence,
                    next_timestamp: timestamp.wrapping_add(n as u32),
                });
            }
            Err(err) => {
                tracing::debug!(%err, sequence, "undecodable opus packet");
                self.last = Some(Position {
                    sequence,
                    next_timestamp: timestamp.wrapping_add(FRAME_SAMPLES as u32),
                });
            }
        }
        frames
    }
}

/// `samples` of silence as 20 ms frames (the last one shorter).
fn silence(samples: usize) -> impl Iterator<Item = AudioFrame> {
    (0..samples).step_by(FRAME_SAMPLES).map(move |start| {
        AudioFrame::mono(vec![0; FRAME_SAMPLES.min(samples - start)], SAMPLE_RATE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn blocks_of_any_length_become_20ms_packets() {
        let mut encoder = OpusEncoder::new().expect("encoder");
        assert!(encoder.push(&tone(480)).expect("encode").is_empty());
        assert_eq!(encoder.push(&tone(480)).expect("encode").len(), 1);
        assert_eq!(encoder.push(&tone(2_000)).expect("encode").len(), 2);
    }

    #[test]
    fn a_tone_survives_encoding_and_decoding() {
        let mut encoder = OpusEncoder::new().expect("encoder");
        let mut decoder = OpusDecoder::new().expect("decoder");
        let packets = encoder.push(&tone(FRAME_SAMPLES * 50)).expect("encode");
        let mut decoded = Vec::new();
        for (i, packet) in packets.iter().enumerate() {
            for frame in decoder.decode(i as u16, (i * FRAME_SAMPLES) as u32, packet) {
                assert_eq!(frame.sample_rate(), SAMPLE_RATE);
                decoded.extend_from_slice(frame.samples());
            }
        }
        assert_eq!(decoded.len(), FRAME_SAMPLES * 50);
        // Skip the codec's start-up; the tone's RMS is 8000 / sqrt(2).
        assert!(rms(&decoded[FRAME_SAMPLES * 10..]) > 4000.0);
    }

    #[test]
    fn gaps_are_concealed_and_late_packets_dropped() {
        let mut encoder = OpusEncoder::new().expect("encoder");
        let mut decoder = OpusDecoder::new().expect("decoder");
        let packets = encoder.push(&tone(FRAME_SAMPLES * 4)).expect("encode");
        let ts = |i: u32| 1_000 + i * FRAME_SAMPLES as u32;
        assert_eq!(decoder.decode(65_535, ts(0), &packets[0]).len(), 1);
        // Sequence wraps; 0 and 1 are lost: two concealed frames, then the packet.
        assert_eq!(decoder.decode(2, ts(3), &packets[1]).len(), 3);
        assert!(decoder.decode(1, ts(2), &packets[2]).is_empty());
        assert!(decoder.decode(2, ts(3), &packets[2]).is_empty());
    }

    #[test]
    fn a_dtx_pause_comes_out_as_silence() {
        let mut encoder = OpusEncoder::new().expect("encoder");
        let mut decoder = OpusDecoder::new().expect("decoder");
        let packets = encoder.push(&tone(FRAME_SAMPLES * 2)).expect("encode");
        decoder.decode(10, 0, &packets[0]);
        // Consecutive sequence numbers, but 400 ms later: 19 frames of silence, then audio.
        let frames = decoder.decode(11, 20 * FRAME_SAMPLES as u32, &packets[1]);
        assert_eq!(frames.len(), 20);
        assert!(
            frames[..19]
                .iter()
                .all(|f| f.samples().iter().all(|&s| s == 0))
        );
        let total: usize = frames.iter().map(AudioFrame::samples_per_channel).sum();
        assert_eq!(total, 20 * FRAME_SAMPLES);
        // A jump of minutes is a new source, not a pause.
        assert_eq!(decoder.decode(12, 48_000 * 600, &packets[1]).len(), 1);
    }
}

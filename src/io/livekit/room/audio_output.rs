//! The agent's audio into the room: 48 kHz frames are Opus-encoded (on a blocking task) and
//! sent as one RTP packet per 20 ms on the published track.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

use super::opus_codec::{FRAME_SAMPLES, OpusEncoder, SAMPLE_RATE};
use super::rtc_values::apply;
use crate::voice::audio::AudioFrame;
use crate::voice::audio_io::{AudioClosed, AudioOutput};

/// The agent's published microphone track. Frames must be 48 kHz (mono, or downmixed);
/// each `write` sends what it completes at once: pacing is the caller's (one 20 ms frame per
/// pipeline tick). Ends with [`AudioClosed`] once the room is gone.
pub struct RoomAudioOutput {
    track: Arc<TrackLocalStaticRTP>,
    track_sid: String,
    encoder: Arc<Mutex<OpusEncoder>>,
    rtp: RtpClock,
    warned_rate: bool,
}

impl std::fmt::Debug for RoomAudioOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomAudioOutput")
            .field("track_sid", &self.track_sid)
            .finish_non_exhaustive()
    }
}

/// The RTP header fields that advance per packet.
#[derive(Debug, Clone, Copy)]
struct RtpClock {
    ssrc: u32,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    first: bool,
}

impl RoomAudioOutput {
    pub(super) fn new(
        track: Arc<TrackLocalStaticRTP>,
        track_sid: String,
        ssrc: u32,
        payload_type: u8,
        encoder: OpusEncoder,
    ) -> Self {
        // RTP wants random initial sequence numbers and timestamps (RFC 3550 §5.1); the clock's
        // nanoseconds are random enough for that and need no extra dependency.
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        RoomAudioOutput {
            track,
            track_sid,
            encoder: Arc::new(Mutex::new(encoder)),
            rtp: RtpClock {
                ssrc,
                payload_type,
                sequence: (seed >> 8) as u16,
                timestamp: seed.rotate_left(13),
                first: true,
            },
            warned_rate: false,
        }
    }

    /// The server's id of the published track (`TR_...`), e.g. for `lk.transcribed_track_id`.
    pub fn track_sid(&self) -> &str {
        &self.track_sid
    }

    async fn send(&mut self, payload: Vec<u8>) -> Result<(), AudioClosed> {
        let clock = self.rtp;
        let track = &self.track;
        let sent = apply(
            |packet| track.write_rtp(packet),
            |packet| {
                packet.header.version = 2;
                packet.header.marker = clock.first;
                packet.header.payload_type = clock.payload_type;
                packet.header.sequence_number = clock.sequence;
                packet.header.timestamp = clock.timestamp;
                packet.header.ssrc = clock.ssrc;
                packet.payload = payload.into();
            },
        )
        .await;
        sent.map_err(|err| {
            tracing::debug!(%err, "audio packet not sent");
            AudioClosed
        })?;
        self.rtp.sequence = self.rtp.sequence.wrapping_add(1);
        self.rtp.timestamp = self.rtp.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        self.rtp.first = false;
        Ok(())
    }
}

impl AudioOutput for RoomAudioOutput {
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    async fn write(&mut self, frame: AudioFrame) -> Result<(), AudioClosed> {
        if frame.sample_rate() != SAMPLE_RATE {
            if !self.warned_rate {
                self.warned_rate = true;
                tracing::warn!(
                    expected = SAMPLE_RATE,
                    got = frame.sample_rate(),
                    "room audio output dropped frames at the wrong rate"
                );
            }
            return Ok(());
        }
        let mono = if frame.channels() == 1 {
            frame
        } else {
            frame.to_mono()
        };
        let encoder = Arc::clone(&self.encoder);
        let packets = tokio::task::spawn_blocking(move || {
            encoder
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(mono.samples())
        })
        .await
        .map_err(|_| AudioClosed)?;
        let packets = packets.map_err(|err| {
            tracing::warn!(%err, "opus encoding failed");
            AudioClosed
        })?;
        for payload in packets {
            self.send(payload).await?;
        }
        Ok(())
    }
}

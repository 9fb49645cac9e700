//! Remote audio into the voice pipeline: each subscribed audio track is read by a task (RTP)
//! and decoded on its own thread (Opus), and [`AudioRouter`] decides which
//! [`RoomAudioInput`] hears which participant.

use std::sync::{Arc, Mutex, PoisonError, mpsc as std_mpsc};

use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::opus_codec::OpusDecoder;
use crate::voice::audio::AudioFrame;
use crate::voice::audio_io::AudioInput;

/// Frames an input may fall behind by (2 s of 20 ms frames) before new ones are dropped.
const INPUT_QUEUE_FRAMES: usize = 100;
/// RTP packets waiting for the decoder thread before new ones are dropped.
const DECODE_QUEUE_PACKETS: usize = 50;

/// Audio of one remote participant from a room, as 48 kHz mono frames in real time.
///
/// It follows the participant it was given (or the first one that publishes audio), and ends
/// (`next_frame` returns `None`) when that participant leaves or the room disconnects.
#[derive(Debug)]
pub struct RoomAudioInput {
    frames: mpsc::Receiver<AudioFrame>,
}

impl RoomAudioInput {
    /// An input that has already ended (the room is gone).
    pub(super) fn ended() -> Self {
        let (_, frames) = mpsc::channel(1);
        RoomAudioInput { frames }
    }
}

impl AudioInput for RoomAudioInput {
    async fn next_frame(&mut self) -> Option<AudioFrame> {
        self.frames.recv().await
    }
}

/// An RTP packet's part the decoder needs.
struct Packet {
    sequence: u16,
    timestamp: u32,
    payload: Vec<u8>,
}

/// Where one track's decoded frames go (shared with its decoder thread).
type Listeners = Arc<Mutex<Vec<mpsc::Sender<AudioFrame>>>>;

/// An input waiting for, or following, a participant.
struct Input {
    wanted: Option<String>,
    bound: Option<String>,
    frames: mpsc::Sender<AudioFrame>,
}

/// A subscribed remote audio track.
struct Track {
    identity: String,
    track_sid: String,
    listeners: Listeners,
}

/// Which inputs hear which tracks. Owned by the room's session; no I/O.
#[derive(Default)]
pub(super) struct AudioRouter {
    inputs: Vec<Input>,
    tracks: Vec<Track>,
}

impl AudioRouter {
    /// A new input for `wanted` (any participant when `None`), bound at once when a matching
    /// track is already subscribed.
    pub(super) fn add_input(&mut self, wanted: Option<String>) -> RoomAudioInput {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE_FRAMES);
        let mut input = Input {
            wanted,
            bound: None,
            frames: tx,
        };
        let first = self
            .tracks
            .iter()
            .find(|t| input.wanted.as_deref().is_none_or(|w| w == t.identity))
            .map(|t| t.identity.clone());
        if let Some(identity) = first {
            for track in self.tracks.iter().filter(|t| t.identity == identity) {
                listen(&track.listeners, &input.frames);
            }
            input.bound = Some(identity);
        }
        self.inputs.push(input);
        RoomAudioInput { frames: rx }
    }

    /// Registers a subscribed audio track of `identity`; returns where its frames go.
    pub(super) fn add_track(&mut self, identity: &str, track_sid: &str) -> Listeners {
        let listeners: Listeners = Arc::default();
        for input in &mut self.inputs {
            let matches = match (&input.bound, &input.wanted) {
                (Some(bound), _) => bound == identity,
                (None, Some(wanted)) => wanted == identity,
                (None, None) => true,
            };
            if matches {
                input.bound = Some(identity.to_owned());
                listen(&listeners, &input.frames);
            }
        }
        self.tracks.push(Track {
            identity: identity.to_owned(),
            track_sid: track_sid.to_owned(),
            listeners: Arc::clone(&listeners),
        });
        listeners
    }

    /// Forgets a track that ended (its inputs stay bound to the participant).
    pub(super) fn remove_track(&mut self, track_sid: &str) {
        self.tracks.retain(|t| t.track_sid != track_sid);
    }

    /// `identity` left: its inputs end and its tracks are forgotten.
    pub(super) fn participant_left(&mut self, identity: &str) {
        for track in self.tracks.iter().filter(|t| t.identity == identity) {
            lock(&track.listeners).clear();
        }
        self.tracks.retain(|t| t.identity != identity);
        self.inputs
            .retain(|input| input.bound.as_deref() != Some(identity));
    }

    /// The room is gone: every input ends.
    pub(super) fn close(&mut self) {
        for track in &self.tracks {
            lock(&track.listeners).clear();
        }
        self.tracks.clear();
        self.inputs.clear();
    }
}

fn lock(listeners: &Listeners) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<AudioFrame>>> {
    listeners.lock().unwrap_or_else(PoisonError::into_inner)
}

fn listen(listeners: &Listeners, frames: &mpsc::Sender<AudioFrame>) {
    lock(listeners).push(frames.clone());
}

/// Reads `track`'s RTP in a task and decodes it on a thread of its own, sending frames to
/// `listeners`. Both end when the track does (or the peer connection closes).
pub(super) fn spawn_remote_audio(
    track: Arc<dyn TrackRemote>,
    track_sid: String,
    listeners: Listeners,
) {
    let (packets_tx, packets_rx) = std_mpsc::sync_channel::<Packet>(DECODE_QUEUE_PACKETS);
    let thread_name = format!("lk-opus-{track_sid}");
    let spawned = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || decode_loop(packets_rx, listeners));
    if let Err(err) = spawned {
        tracing::warn!(%err, track_sid, "no decoder thread; the track is not heard");
        tokio::spawn(drain(track));
        return;
    }
    tokio::spawn(async move {
        while let Some(event) = track.poll().await {
            match event {
                TrackRemoteEvent::OnRtpPacket(packet) => {
                    let item = Packet {
                        sequence: packet.header.sequence_number,
                        timestamp: packet.header.timestamp,
                        payload: packet.payload.to_vec(),
                    };
                    match packets_tx.try_send(item) {
                        Ok(()) => {}
                        Err(std_mpsc::TrySendError::Full(_)) => {
                            tracing::debug!(track_sid, "decoder behind; packet dropped");
                        }
                        Err(std_mpsc::TrySendError::Disconnected(_)) => break,
                    }
                }
                TrackRemoteEvent::OnEnded => break,
                _ => {}
            }
        }
        tracing::debug!(track_sid, "remote audio track ended");
    });
}

/// Reads a track nobody listens to (video), so its events do not pile up.
pub(super) async fn drain(track: Arc<dyn TrackRemote>) {
    while let Some(event) = track.poll().await {
        if matches!(event, TrackRemoteEvent::OnEnded) {
            break;
        }
    }
}

fn decode_loop(packets: std_mpsc::Receiver<Packet>, listeners: Listeners) {
    let mut decoder = match OpusDecoder::new() {
        Ok(decoder) => decoder,
        Err(err) => {
            tracing::warn!(%err, "opus decoder unavailable");
            return;
        }
    };
    while let Ok(packet) = packets.recv() {
        for frame in decoder.decode(packet.sequence, packet.timestamp, &packet.payload) {
            let mut listeners = lock(&listeners);
            listeners.retain(|tx| match tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!("audio input behind; frame dropped");
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(listeners: &Listeners) {
        for tx in lock(listeners).iter() {
            tx.try_send(AudioFrame::mono(vec![1; 960], 48_000))
                .expect("room for a frame");
        }
    }

    #[tokio::test]
    async fn the_first_participant_with_audio_is_heard_until_it_leaves() {
        let mut router = AudioRouter::default();
        let mut input = router.add_input(None);
        let caller = router.add_track("caller", "TR_1");
        let other = router.add_track("other", "TR_2");
        send(&caller);
        send(&other);
        assert!(input.next_frame().await.is_some());
        assert!(input.frames.try_recv().is_err(), "only the caller is heard");
        router.participant_left("caller");
        assert!(input.next_frame().await.is_none());
    }

    #[tokio::test]
    async fn an_input_for_an_identity_waits_for_it() {
        let mut router = AudioRouter::default();
        let early = router.add_track("someone", "TR_1");
        let mut input = router.add_input(Some("caller".into()));
        send(&early);
        assert!(input.frames.try_recv().is_err());
        let caller = router.add_track("caller", "TR_2");
        send(&caller);
        assert!(input.next_frame().await.is_some());
        router.close();
        assert!(input.next_frame().await.is_none());
    }

    #[tokio::test]
    async fn a_late_input_binds_to_an_existing_track() {
        let mut router = AudioRouter::default();
        let caller = router.add_track("caller", "TR_1");
        let mut input = router.add_input(None);
        send(&caller);
        assert!(input.next_frame().await.is_some());
    }
}

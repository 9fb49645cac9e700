//! A voice call in a LiveKit room: the caller's microphone into the voice pipeline, the
//! agent's voice published as a track, transcriptions of both sides as `lk.transcription`
//! text streams, and the agent's state as the `lk.agent.state` attribute that LiveKit
//! frontends read.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::room::{Room, RoomAudioInput, RoomError, RoomEvent, RoomEvents};
use crate::agent::{AgentState, SessionHandle};
use crate::bella_vista::CallerInfo;
use crate::voice::audio::AudioFrame;
use crate::voice::audio_io::AudioInput;
use crate::voice::call::{
    CallError, CallEvent, CallReport, Pace, VoiceServices, run_call_with_events,
};
use crate::voice::pipeline::PipelineConfig;

/// Topic of LiveKit's transcription text streams.
pub const TRANSCRIPTION_TOPIC: &str = "lk.transcription";
/// Attribute of a phone caller's participant (LiveKit SIP) with their number.
pub const PHONE_ATTRIBUTE: &str = "sip.phoneNumber";
/// Participant attribute with the agent's state.
pub const AGENT_STATE_ATTRIBUTE: &str = "lk.agent.state";

/// Why a room call ended early.
#[derive(Debug, thiserror::Error)]
pub enum RoomCallError {
    /// The room refused or failed.
    #[error(transparent)]
    Room(#[from] RoomError),
    /// The call itself failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Runs one call in `room` with `session` answering, until the caller leaves or the room
/// ends; then leaves the room. The caller is the first remote participant that publishes
/// a microphone; if none does within `caller_wait` (the room vanished, the caller gave up),
/// the call ends and the job is released.
pub async fn run_room_call(
    room: Room,
    events: RoomEvents,
    session: SessionHandle,
    services: &VoiceServices,
    config: PipelineConfig,
    caller_wait: Duration,
    caller: Arc<CallerInfo>,
) -> Result<CallReport, RoomCallError> {
    let output = room.publish_audio("agent-voice").await?;
    let agent_track = output.track_sid().to_string();
    let input = CallerInput {
        input: room.audio_input(None).await,
        first_frame_by: Some(tokio::time::Instant::now() + caller_wait),
    };
    let room = std::sync::Arc::new(room);
    set_state(&room, AgentState::Listening).await;

    let (call_events, reports) = mpsc::unbounded_channel();
    let publisher = tokio::spawn(publish_call_events(
        room.clone(),
        events,
        reports,
        agent_track,
        caller,
    ));
    let result = run_call_with_events(
        session,
        services,
        config,
        input,
        output,
        Pace::RealTime,
        Some(call_events),
    )
    .await;
    let _ = publisher.await;
    room.disconnect().await;
    let (report, _) = result?;
    Ok(report)
}

/// The caller's audio, given up on if its first frame does not come in time.
struct CallerInput {
    input: RoomAudioInput,
    first_frame_by: Option<tokio::time::Instant>,
}

impl AudioInput for CallerInput {
    async fn next_frame(&mut self) -> Option<AudioFrame> {
        match self.first_frame_by {
            None => self.input.next_frame().await,
            Some(deadline) => {
                let frame = tokio::time::timeout_at(deadline, self.input.next_frame())
                    .await
                    .ok()
                    .flatten();
                if frame.is_some() {
                    self.first_frame_by = None;
                } else {
                    tracing::info!("no caller audio in time; leaving the room");
                }
                frame
            }
        }
    }
}

async fn set_state(room: &Room, state: AgentState) {
    let value = match state {
        AgentState::Listening => "listening",
        AgentState::Thinking => "thinking",
        AgentState::Speaking => "speaking",
    };
    let attributes = HashMap::from([(AGENT_STATE_ATTRIBUTE.to_string(), value.to_string())]);
    if let Err(error) = room.set_attributes(attributes).await {
        tracing::warn!(%error, "could not set the agent state attribute");
    }
}

/// Forwards call events to the room until the call ends, keeping track of the caller's
/// track for the transcription attributes.
async fn publish_call_events(
    room: std::sync::Arc<Room>,
    mut room_events: RoomEvents,
    mut calls: mpsc::UnboundedReceiver<CallEvent>,
    agent_track: String,
    caller: Arc<CallerInfo>,
) {
    let mut caller_track = String::new();
    loop {
        tokio::select! {
            event = calls.recv() => match event {
                None => break,
                Some(CallEvent::StateChanged(state)) => set_state(&room, state).await,
                Some(CallEvent::UserTranscript(text)) => {
                    send_transcription(&room, &text, &caller_track).await;
                }
                Some(CallEvent::AgentTranscript(text)) => {
                    send_transcription(&room, &text, &agent_track).await;
                }
            },
            event = room_events.recv() => match event {
                Some(RoomEvent::TrackSubscribed { track_sid, .. }) if caller_track.is_empty() => {
                    caller_track = track_sid;
                }
                Some(RoomEvent::ParticipantConnected { attributes, .. }) => {
                    if let Some(phone) = attributes.get(PHONE_ATTRIBUTE).filter(|p| !p.is_empty()) {
                        caller.set_phone(phone);
                    }
                }
                Some(_) => {}
                None => {
                    // The room is over; the call ends when its input does. Keep draining
                    // call events until then.
                    while let Some(event) = calls.recv().await {
                        tracing::debug!(?event, "room gone; call event dropped");
                    }
                    break;
                }
            },
        }
    }
}

async fn send_transcription(room: &Room, text: &str, track: &str) {
    static SEGMENT: AtomicU64 = AtomicU64::new(0);
    let segment = SEGMENT.fetch_add(1, Ordering::Relaxed);
    let attributes = HashMap::from([
        ("lk.transcription_final".to_string(), "true".to_string()),
        ("lk.segment_id".to_string(), format!("SG_{segment:x}")),
        ("lk.transcribed_track_id".to_string(), track.to_string()),
    ]);
    if let Err(error) = room
        .send_text_stream(TRANSCRIPTION_TOPIC, text, attributes)
        .await
    {
        tracing::warn!(%error, "could not send a transcription");
    }
}

//! A voice call in a LiveKit room: the caller's microphone into the voice pipeline, the
//! agent's voice published as a track, transcriptions of both sides as `lk.transcription`
//! text streams, and the agent's state as the `lk.agent.state` attribute that LiveKit
//! frontends read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::room::{Room, RoomError, RoomEvent, RoomEvents};
use crate::agent::{AgentState, SessionHandle};
use crate::voice::call::{
    CallError, CallEvent, CallReport, Pace, VoiceServices, run_call_with_events,
};
use crate::voice::pipeline::PipelineConfig;

/// Topic of LiveKit's transcription text streams.
pub const TRANSCRIPTION_TOPIC: &str = "lk.transcription";
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
/// a microphone.
pub async fn run_room_call(
    room: Room,
    events: RoomEvents,
    session: SessionHandle,
    services: &VoiceServices,
    config: PipelineConfig,
) -> Result<CallReport, RoomCallError> {
    let output = room.publish_audio("agent-voice").await?;
    let agent_track = output.track_sid().to_string();
    let input = room.audio_input(None).await;
    let room = std::sync::Arc::new(room);
    set_state(&room, AgentState::Listening).await;

    let (call_events, reports) = mpsc::unbounded_channel();
    let publisher = tokio::spawn(publish_call_events(
        room.clone(),
        events,
        reports,
        agent_track,
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

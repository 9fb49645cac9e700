//! A voice call in a LiveKit room: the caller's microphone into the voice pipeline, the
//! agent's voice published as a track, transcriptions of both sides as `lk.transcription`
//! text streams, and the agent's state as the `lk.agent.state` attribute that LiveKit
//! frontends read. For phone callers (LiveKit SIP): their number, their key presses
//! (`SipDTMF` packets), hanging up (removing the SIP participant, so the bridge sends BYE)
//! and transfers (`TransferSIPParticipant`, a SIP REFER).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use livekit_api::services::room::RoomClient;
use livekit_api::services::sip::{SIPClient, TransferSIPParticipantOptions};
use tokio::sync::mpsc;

use super::room::{ParticipantKind, Room, RoomAudioInput, RoomError, RoomEvent, RoomEvents};
use crate::agent::{AgentState, CallerInfo, CallerKind, SessionHandle};
use crate::voice::audio::AudioFrame;
use crate::voice::audio_io::AudioInput;
use crate::voice::call::{
    CallError, CallEvent, CallInput, CallLink, CallReport, Pace, VoiceServices,
    run_call_with_events,
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

/// The LiveKit server APIs a call acts through: removing a participant or deleting the
/// room to hang up, transferring a SIP participant. Made from the API key and secret
/// (`LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`), like LiveKit's own agents do.
#[derive(Clone, Debug)]
pub struct ServerApi {
    rooms: Arc<RoomClient>,
    sip: Arc<SIPClient>,
}

impl ServerApi {
    /// The APIs of the server at `url` (`ws://`, `wss://`, `http://` or `https://`).
    pub fn new(url: &str, api_key: &str, api_secret: &str) -> Self {
        ServerApi {
            rooms: Arc::new(RoomClient::with_api_key(url, api_key, api_secret)),
            sip: Arc::new(SIPClient::with_api_key(url, api_key, api_secret)),
        }
    }
}

/// How a call in a room runs, besides the room and the session.
#[derive(Clone)]
pub struct RoomCallOptions {
    /// Speech providers and VAD.
    pub services: VoiceServices,
    /// Pipeline settings.
    pub pipeline: PipelineConfig,
    /// How long to wait for the caller's audio before leaving the room.
    pub caller_wait: Duration,
    /// The server APIs, to hang up and transfer; without them the agent can only leave.
    pub api: Option<ServerApi>,
}

/// Runs one call in `room` with `session` answering, until the caller leaves, the room
/// ends, or the agent hangs up (then the caller is removed: for a phone caller the SIP
/// bridge sends BYE; a browser caller's room is deleted); then leaves the room. The caller
/// is the first remote participant that publishes a microphone; if none does within
/// `caller_wait` (the room vanished, the caller gave up), the call ends and the job is
/// released. What the room says about the caller goes into `caller`.
pub async fn run_room_call(
    room: Room,
    events: RoomEvents,
    session: SessionHandle,
    options: RoomCallOptions,
    caller: Arc<CallerInfo>,
) -> Result<CallReport, RoomCallError> {
    let output = room.publish_audio("agent-voice").await?;
    let agent_track = output.track_sid().to_string();
    let input = CallerInput {
        input: room.audio_input(None).await,
        first_frame_by: Some(tokio::time::Instant::now() + options.caller_wait),
    };
    let room = Arc::new(room);
    set_state(&room, AgentState::Listening).await;

    let (link, call_events, call_inputs) = CallLink::new();
    let bridge = RoomBridge {
        room: room.clone(),
        api: options.api.clone(),
        caller,
        caller_identity: None,
        caller_track: String::new(),
        agent_track,
        inputs: call_inputs,
    };
    let bridge = tokio::spawn(bridge.run(events, call_events));
    let result = run_call_with_events(
        session,
        &options.services,
        options.pipeline,
        input,
        output,
        Pace::RealTime,
        Some(link),
    )
    .await;
    let bridge = bridge.await.ok();
    if let (Ok((report, _)), Some(bridge)) = (&result, &bridge)
        && report.hung_up
    {
        bridge.hang_up().await;
    }
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

/// Between the call and the room: reports the call to the room (state, transcriptions),
/// tells the call what the room says (key presses, transfer outcomes), and knows who the
/// caller is.
struct RoomBridge {
    room: Arc<Room>,
    api: Option<ServerApi>,
    caller: Arc<CallerInfo>,
    caller_identity: Option<String>,
    caller_track: String,
    agent_track: String,
    inputs: mpsc::UnboundedSender<CallInput>,
}

impl RoomBridge {
    /// Runs until the call ends (its events close); returns itself for the hang-up.
    async fn run(
        mut self,
        mut room_events: RoomEvents,
        mut calls: mpsc::UnboundedReceiver<CallEvent>,
    ) -> Self {
        loop {
            tokio::select! {
                event = calls.recv() => match event {
                    None => break,
                    Some(event) => self.on_call_event(event).await,
                },
                event = room_events.recv() => match event {
                    Some(event) => self.on_room_event(event),
                    None => {
                        // The room is over; the call ends when its input does. Keep
                        // draining call events until then.
                        while let Some(event) = calls.recv().await {
                            tracing::debug!(?event, "room gone; call event dropped");
                        }
                        break;
                    }
                },
            }
        }
        self
    }

    async fn on_call_event(&mut self, event: CallEvent) {
        match event {
            CallEvent::StateChanged(state) => set_state(&self.room, state).await,
            CallEvent::UserTranscript(text) => {
                let caller = self.caller_identity.as_deref();
                send_transcription(&self.room, &text, &self.caller_track, caller).await;
            }
            CallEvent::AgentTranscript(text) => {
                send_transcription(&self.room, &text, &self.agent_track, None).await;
            }
            CallEvent::TransferRequested { to } => self.transfer(to),
        }
    }

    fn on_room_event(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::ParticipantConnected {
                identity,
                kind,
                attributes,
            } if kind != ParticipantKind::Agent && self.caller_identity.is_none() => {
                if kind == ParticipantKind::Sip {
                    self.caller.set_kind(CallerKind::Phone);
                } else {
                    self.caller.set_kind(CallerKind::Web);
                }
                if let Some(phone) = attributes.get(PHONE_ATTRIBUTE).filter(|p| !p.is_empty()) {
                    self.caller.set_phone(phone);
                }
                tracing::info!(%identity, ?kind, "caller in the room");
                self.caller_identity = Some(identity);
            }
            RoomEvent::TrackSubscribed { track_sid, .. } if self.caller_track.is_empty() => {
                self.caller_track = track_sid;
            }
            RoomEvent::DtmfReceived { identity, key } => {
                let from_caller = match (&identity, &self.caller_identity) {
                    (Some(sender), Some(caller)) => sender == caller,
                    _ => true,
                };
                if from_caller {
                    tracing::info!(%key, "caller pressed a key");
                    let _ = self.inputs.send(CallInput::KeyPressed(key));
                }
            }
            _ => {}
        }
    }

    /// Transfers the caller in the background and reports the outcome to the call.
    fn transfer(&self, to: String) {
        let inputs = self.inputs.clone();
        let target = match (&self.api, &self.caller_identity, self.caller.is_phone()) {
            (Some(api), Some(identity), true) => Ok((api.sip.clone(), identity.clone())),
            (None, _, _) => Err("no LiveKit API credentials to transfer with".to_string()),
            _ => Err("the caller is not a phone participant".to_string()),
        };
        let room = self.room.name().to_string();
        tokio::spawn(async move {
            let result = match target {
                Ok((sip, identity)) => {
                    tracing::info!(%identity, %to, "transferring the caller");
                    sip.transfer_sip_participant(
                        room,
                        identity,
                        to,
                        TransferSIPParticipantOptions::default(),
                    )
                    .await
                    .map_err(|error| error.to_string())
                }
                Err(reason) => Err(reason),
            };
            if let Err(reason) = &result {
                tracing::warn!(%reason, "transfer failed");
            }
            let _ = inputs.send(CallInput::TransferFinished(result));
        });
    }

    /// Ends the call for the caller: a phone caller's participant is removed (the SIP
    /// bridge then sends BYE); for anyone else the room is deleted.
    async fn hang_up(&self) {
        let Some(api) = &self.api else {
            tracing::info!("hanging up by leaving the room (no LiveKit API credentials)");
            return;
        };
        let room = self.room.name();
        let result = match (&self.caller_identity, self.caller.is_phone()) {
            (Some(identity), true) => {
                tracing::info!(%identity, "hanging up: removing the phone caller");
                api.rooms.remove_participant(room, identity).await
            }
            _ => {
                tracing::info!(%room, "hanging up: deleting the room");
                api.rooms.delete_room(room).await
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "could not hang up through the server API; leaving the room");
        }
    }
}

/// Sends one final transcription on `lk.transcription`, as LiveKit frontends expect it: the
/// sender is the participant who spoke (`speaker`; the agent itself when `None`) and
/// `lk.transcribed_track_id` names their track.
async fn send_transcription(room: &Room, text: &str, track: &str, speaker: Option<&str>) {
    static SEGMENT: AtomicU64 = AtomicU64::new(0);
    let segment = SEGMENT.fetch_add(1, Ordering::Relaxed);
    let attributes = HashMap::from([
        ("lk.transcription_final".to_string(), "true".to_string()),
        ("lk.segment_id".to_string(), format!("SG_{segment:x}")),
        ("lk.transcribed_track_id".to_string(), track.to_string()),
    ]);
    if let Err(error) = room
        .send_text_stream_for(TRANSCRIPTION_TOPIC, text, attributes, speaker)
        .await
    {
        tracing::warn!(%error, "could not send a transcription");
    }
}

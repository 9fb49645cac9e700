//! The room's driver: one task that owns the incoming side of the connection. It applies the
//! server's signalling (subscriber offers, publisher answers, candidates, participant
//! updates, replies), trickles local candidates, starts remote audio, turns data packets
//! into events, and ends the room.
//!
//! Reconnection is deliberately small: when the signalling WebSocket drops, the session tries
//! to resume it ([`RESUME_ATTEMPTS`] times): `SignalClient::restart`, then `SyncState` and an
//! ICE-restart offer on the publisher. If that fails, or a peer connection fails, or the
//! server asks us to leave, the room emits [`RoomEvent::Disconnected`] and ends; a job then
//! ends with it.

use std::sync::Arc;
use std::time::Duration;

use livekit_protocol as proto;
use livekit_signaling::{SignalEvent, SignalEvents};
use proto::signal_response::Message as Response;
use tokio::sync::{mpsc, oneshot};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{RTCIceCandidateInit, RTCPeerConnectionState};

use super::audio_input::{AudioRouter, RoomAudioInput, drain, spawn_remote_audio};
use super::data::DataReceiver;
use super::engine::{Engine, read_channel};
use super::events::{DisconnectReason, RoomEvent};
use super::roster::{Roster, split_stream_id};
use super::transport::{TransportEvent, TransportEventKind};

/// How many times a lost signalling connection is resumed before the room gives up.
pub(super) const RESUME_ATTEMPTS: u32 = 2;
/// Wait before each resume attempt.
const RESUME_BACKOFF: Duration = Duration::from_millis(500);

/// What the room handle asks of its session.
pub(super) enum Command {
    /// A new audio input for a participant (or the first one with audio).
    AudioInput {
        identity: Option<String>,
        reply: oneshot::Sender<RoomAudioInput>,
    },
    /// Leave the room; `done` is dropped once the room is closed.
    Disconnect { done: oneshot::Sender<()> },
}

/// The channels a session reads.
pub(super) struct Inputs {
    pub(super) signal: SignalEvents,
    pub(super) transports: mpsc::UnboundedReceiver<TransportEvent>,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    pub(super) data: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Where data-channel messages go (cloned for channels the server opens).
    pub(super) data_tx: mpsc::UnboundedSender<Vec<u8>>,
}

/// The room's driver.
pub(super) struct Session {
    engine: Arc<Engine>,
    events: mpsc::UnboundedSender<RoomEvent>,
    roster: Roster,
    router: AudioRouter,
    data: DataReceiver,
}

impl Session {
    /// A session for `engine`; `roster` already holds the participants from the join.
    pub(super) fn new(
        engine: Arc<Engine>,
        events: mpsc::UnboundedSender<RoomEvent>,
        roster: Roster,
    ) -> Self {
        Session {
            engine,
            events,
            roster,
            router: AudioRouter::default(),
            data: DataReceiver::default(),
        }
    }

    /// Runs until the room ends.
    pub(super) async fn run(mut self, mut inputs: Inputs) {
        // Dropped once the room is closed, which is what `Room::disconnect` waits for.
        let mut disconnected = None;
        let reason = loop {
            tokio::select! {
                signal = inputs.signal.recv() => match signal {
                    Some(SignalEvent::Message(message)) => {
                        if let Some(reason) = self.on_signal(*message).await {
                            break reason;
                        }
                    }
                    Some(SignalEvent::Close(why)) => {
                        tracing::info!(%why, "signalling connection lost");
                        self.emit(RoomEvent::Reconnecting);
                        if !self.resume().await {
                            break DisconnectReason::SignalLost;
                        }
                    }
                    None => break DisconnectReason::SignalLost,
                },
                Some(event) = inputs.transports.recv() => {
                    if let Some(reason) = self.on_transport(event, &inputs.data_tx).await {
                        break reason;
                    }
                }
                Some(bytes) = inputs.data.recv() => {
                    if let Some(event) = self.data.receive(&bytes) {
                        self.emit(event);
                    }
                }
                command = inputs.commands.recv() => match command {
                    Some(Command::AudioInput { identity, reply }) => {
                        let _ = reply.send(self.router.add_input(identity));
                    }
                    Some(Command::Disconnect { done }) => {
                        disconnected = Some(done);
                        break DisconnectReason::ClientRequested;
                    }
                    // The room handle is gone: leave.
                    None => break DisconnectReason::ClientRequested,
                },
            }
        };
        self.finish(reason).await;
        drop(disconnected);
    }

    async fn on_signal(&mut self, message: Response) -> Option<DisconnectReason> {
        match message {
            Response::Offer(offer) => match self.engine.subscriber.answer(offer.sdp).await {
                Ok(answer) => self.engine.send_answer(answer).await,
                Err(err) => tracing::warn!(%err, "subscriber offer not applied"),
            },
            Response::Answer(answer) => {
                match self.engine.publisher.apply_answer(answer.sdp).await {
                    Ok(Some(next_offer)) => self.engine.send_offer(next_offer).await,
                    Ok(None) => {}
                    Err(err) => tracing::warn!(%err, "publisher answer not applied"),
                }
            }
            Response::Trickle(trickle) => self.on_trickle(trickle).await,
            Response::Update(update) => {
                for event in self.roster.apply(update.participants) {
                    if let RoomEvent::ParticipantDisconnected { identity } = &event {
                        self.router.participant_left(identity);
                    }
                    self.emit(event);
                }
            }
            Response::TrackPublished(published) => self.engine.track_published(published),
            Response::RequestResponse(response) => self.engine.request_answered(response),
            Response::TrackUnpublished(unpublished) => {
                self.router.remove_track(&unpublished.track_sid);
            }
            Response::Leave(leave) => {
                tracing::info!(reason = ?leave.reason(), action = ?leave.action(), "server asked us to leave");
                return Some(DisconnectReason::ServerRequested(leave.reason()));
            }
            _ => {}
        }
        None
    }

    async fn on_trickle(&mut self, trickle: proto::TrickleRequest) {
        let target = trickle.target();
        match serde_json::from_str::<RTCIceCandidateInit>(&trickle.candidate_init) {
            Ok(candidate) => {
                if let Err(err) = self.engine.transport(target).add_candidate(candidate).await {
                    tracing::debug!(%err, ?target, "remote candidate not added");
                }
            }
            Err(err) => tracing::debug!(%err, "unreadable remote candidate"),
        }
    }

    async fn on_transport(
        &mut self,
        event: TransportEvent,
        data_tx: &mpsc::UnboundedSender<Vec<u8>>,
    ) -> Option<DisconnectReason> {
        match event.kind {
            TransportEventKind::Candidate(candidate) => {
                self.engine.send_candidate(event.target, candidate).await;
            }
            TransportEventKind::State(state) => {
                tracing::debug!(target = ?event.target, ?state, "peer connection state");
                self.engine.set_link_state(event.target, state);
                if state == RTCPeerConnectionState::Failed {
                    return Some(DisconnectReason::MediaFailed);
                }
            }
            TransportEventKind::DataChannel(channel) => {
                tokio::spawn(read_channel(channel, data_tx.clone(), None));
            }
            TransportEventKind::Track(track) => self.on_track(track).await,
        }
        None
    }

    async fn on_track(&mut self, track: Arc<dyn TrackRemote>) {
        let stream_id = track.stream_id().await;
        let is_audio = track.kind().await.to_string() == "audio";
        let Some((participant_sid, track_sid)) = split_stream_id(&stream_id) else {
            tracing::debug!(stream_id, "remote track without a LiveKit stream id");
            tokio::spawn(drain(track));
            return;
        };
        let identity = self
            .roster
            .identity(participant_sid)
            .or_else(|| self.roster.track(track_sid).map(|(identity, _)| identity))
            .map(str::to_owned);
        let Some(identity) = identity else {
            tracing::debug!(
                participant_sid,
                track_sid,
                "track of an unknown participant"
            );
            tokio::spawn(drain(track));
            return;
        };
        let track_sid = track_sid.to_owned();
        self.emit(RoomEvent::TrackSubscribed {
            identity: identity.clone(),
            track_sid: track_sid.clone(),
        });
        let is_microphone = self.roster.track(&track_sid).is_none_or(|(_, info)| {
            info.source() == proto::TrackSource::Microphone
                || info.source() == proto::TrackSource::Unknown
        });
        if is_audio && is_microphone {
            let listeners = self.router.add_track(&identity, &track_sid);
            spawn_remote_audio(track, track_sid, listeners);
        } else {
            tokio::spawn(drain(track));
        }
    }

    /// Tries to resume a lost signalling connection; `false` when the room must end.
    async fn resume(&mut self) -> bool {
        if self.engine.is_closed() {
            return false;
        }
        for attempt in 1..=RESUME_ATTEMPTS {
            tokio::time::sleep(RESUME_BACKOFF * attempt).await;
            match self
                .engine
                .signal
                .restart(proto::ReconnectReason::RrSignalDisconnected)
                .await
            {
                Ok(_) => {
                    let sync = self.engine.sync_state().await;
                    self.engine
                        .signal
                        .send(proto::signal_request::Message::SyncState(sync))
                        .await;
                    match self.engine.publisher.restart_ice().await {
                        Ok(offer) => self.engine.send_offer(offer).await,
                        Err(err) => tracing::warn!(%err, "publisher ICE restart failed"),
                    }
                    self.engine.signal.set_reconnected().await;
                    tracing::info!(attempt, "signalling connection resumed");
                    self.emit(RoomEvent::Reconnected);
                    return true;
                }
                Err(err) => tracing::warn!(attempt, %err, "resume failed"),
            }
        }
        false
    }

    /// Ends the room: tells the server (when we leave by choice), closes everything, and emits
    /// the last event.
    async fn finish(&mut self, reason: DisconnectReason) {
        self.engine.set_closed(reason.clone());
        self.router.close();
        if reason == DisconnectReason::ClientRequested {
            self.engine.send_leave().await;
        }
        self.engine.signal.close().await;
        self.engine.publisher.close().await;
        self.engine.subscriber.close().await;
        self.emit(RoomEvent::Disconnected { reason });
    }

    fn emit(&self, event: RoomEvent) {
        // Nobody listening is fine: events are information, not commands.
        let _ = self.events.send(event);
    }
}

//! The connection to one room, shared by the [`Room`](super::Room) handle and its session
//! task: the signalling client, the two peer connections (LiveKit's classic dual-PC mode:
//! the server offers on the subscriber, we offer on the publisher), the publisher's data
//! channels, and the requests awaiting a server reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use livekit_protocol as proto;
use livekit_signaling::SignalClient;
use prost::Message;
use proto::signal_request::Message as Request;
use tokio::sync::{oneshot, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{RTCIceCandidateInit, RTCPeerConnectionState};

use super::error::RoomError;
use super::events::DisconnectReason;
use super::transport::{PeerTransport, Target, first_mid};

/// Label of the reliable (ordered, retransmitted) data channel.
pub(super) const RELIABLE_LABEL: &str = "_reliable";
/// Label of the lossy (unordered, no retransmission) data channel.
pub(super) const LOSSY_LABEL: &str = "_lossy";
/// How long the server gets to answer a request (track publication, attributes).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The state of the two peer connections, and whether the room is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Links {
    /// Publisher peer connection state.
    pub(super) publisher: RTCPeerConnectionState,
    /// Subscriber peer connection state.
    pub(super) subscriber: RTCPeerConnectionState,
    /// Set once the room is disconnected.
    pub(super) closed: Option<DisconnectReason>,
}

/// Who the local participant is.
#[derive(Debug, Clone)]
pub(super) struct LocalParticipant {
    /// Server id (`PA_...`).
    pub(super) sid: String,
    /// Identity from the token.
    pub(super) identity: String,
}

/// The publisher's two data channels.
pub(super) struct DataChannels {
    reliable: Arc<dyn DataChannel>,
    lossy: Arc<dyn DataChannel>,
}

/// Creates the publisher's `_reliable` (ordered, retransmitted) and `_lossy` (unordered, no
/// retransmission) data channels, before its first offer.
pub(super) async fn open_data_channels(
    publisher: &PeerTransport,
) -> Result<DataChannels, RoomError> {
    let reliable = publisher
        .pc()
        .create_data_channel(RELIABLE_LABEL, Some(RTCDataChannelInit::default()))
        .await?;
    let lossy_init = RTCDataChannelInit {
        ordered: false,
        max_retransmits: Some(0),
        ..Default::default()
    };
    let lossy = publisher
        .pc()
        .create_data_channel(LOSSY_LABEL, Some(lossy_init))
        .await?;
    Ok(DataChannels { reliable, lossy })
}

type Pending<K, V> = Mutex<HashMap<K, oneshot::Sender<V>>>;

/// Everything both the room handle and the session use.
pub(super) struct Engine {
    pub(super) signal: SignalClient,
    pub(super) publisher: PeerTransport,
    pub(super) subscriber: PeerTransport,
    pub(super) local: LocalParticipant,
    reliable: Arc<dyn DataChannel>,
    lossy: Arc<dyn DataChannel>,
    reliable_open: watch::Receiver<bool>,
    pending_tracks: Pending<String, proto::TrackInfo>,
    pending_requests: Pending<u32, proto::RequestResponse>,
    published: Mutex<Vec<proto::TrackPublishedResponse>>,
    sequence: AtomicU32,
    links: watch::Sender<Links>,
}

impl Engine {
    /// Assembles the engine. Messages arriving on the publisher's data channels (unusual) go
    /// to `incoming`.
    pub(super) fn new(
        signal: SignalClient,
        publisher: PeerTransport,
        subscriber: PeerTransport,
        local: LocalParticipant,
        channels: DataChannels,
        incoming: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    ) -> Self {
        let DataChannels { reliable, lossy } = channels;
        let (open_tx, reliable_open) = watch::channel(false);
        tokio::spawn(read_channel(
            Arc::clone(&reliable),
            incoming.clone(),
            Some(open_tx),
        ));
        tokio::spawn(read_channel(Arc::clone(&lossy), incoming, None));
        Engine {
            signal,
            publisher,
            subscriber,
            local,
            reliable,
            lossy,
            reliable_open,
            pending_tracks: Mutex::default(),
            pending_requests: Mutex::default(),
            published: Mutex::default(),
            sequence: AtomicU32::new(1),
            links: watch::Sender::new(Links {
                publisher: RTCPeerConnectionState::New,
                subscriber: RTCPeerConnectionState::New,
                closed: None,
            }),
        }
    }

    /// The transport for `target`.
    pub(super) fn transport(&self, target: Target) -> &PeerTransport {
        match target {
            Target::Publisher => &self.publisher,
            Target::Subscriber => &self.subscriber,
        }
    }

    /// Sends a publisher offer.
    pub(super) async fn send_offer(&self, sdp: String) {
        self.signal
            .send(Request::Offer(session_description("offer", sdp)))
            .await;
    }

    /// Sends the subscriber's answer.
    pub(super) async fn send_answer(&self, sdp: String) {
        self.signal
            .send(Request::Answer(session_description("answer", sdp)))
            .await;
    }

    /// Trickles a local candidate of `target` to the server.
    pub(super) async fn send_candidate(&self, target: Target, mut candidate: RTCIceCandidateInit) {
        // `webrtc` tags candidates with an empty mid; name the bundle's first section instead.
        if let Some(sdp) = self.transport(target).pending_or_current_local_sdp().await
            && let Some(mid) = first_mid(&sdp)
        {
            candidate.sdp_mid = Some(mid.to_owned());
            candidate.sdp_mline_index = Some(0);
        }
        let candidate_init = match serde_json::to_string(&candidate) {
            Ok(json) => json,
            Err(err) => {
                tracing::debug!(%err, "candidate not serialisable");
                return;
            }
        };
        let trickle = proto::TrickleRequest {
            candidate_init,
            target: target as i32,
            r#final: false,
        };
        self.signal.send(Request::Trickle(trickle)).await;
    }

    /// Publishes an audio track on the signalling side and waits for the server's track info.
    pub(super) async fn add_audio_track(
        &self,
        cid: &str,
        name: &str,
    ) -> Result<proto::TrackInfo, RoomError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending_tracks).insert(cid.to_owned(), tx);
        let request = proto::AddTrackRequest {
            cid: cid.to_owned(),
            name: name.to_owned(),
            r#type: proto::TrackType::Audio as i32,
            source: proto::TrackSource::Microphone as i32,
            ..Default::default()
        };
        self.signal.send(Request::AddTrack(request)).await;
        let info = self
            .await_reply(rx, "the track publication")
            .await
            .inspect_err(|_| {
                lock(&self.pending_tracks).remove(cid);
            })?;
        lock(&self.published).push(proto::TrackPublishedResponse {
            cid: cid.to_owned(),
            track: Some(info.clone()),
        });
        Ok(info)
    }

    /// The server published a track of ours.
    pub(super) fn track_published(&self, response: proto::TrackPublishedResponse) {
        let waiter = lock(&self.pending_tracks).remove(&response.cid);
        if let (Some(waiter), Some(track)) = (waiter, response.track) {
            let _ = waiter.send(track);
        }
    }

    /// Sets the local participant's attributes (merged into the existing ones).
    pub(super) async fn update_attributes(
        &self,
        attributes: HashMap<String, String>,
    ) -> Result<(), RoomError> {
        let request_id = self.signal.next_request_id();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending_requests).insert(request_id, tx);
        let update = proto::UpdateParticipantMetadata {
            attributes,
            request_id,
            ..Default::default()
        };
        self.signal.send(Request::UpdateMetadata(update)).await;
        let response = self
            .await_reply(rx, "the attribute update")
            .await
            .inspect_err(|_| {
                lock(&self.pending_requests).remove(&request_id);
            })?;
        match response.reason() {
            proto::request_response::Reason::Ok => Ok(()),
            reason => Err(RoomError::Refused {
                reason,
                message: response.message,
            }),
        }
    }

    /// The server answered request `response.request_id`.
    pub(super) fn request_answered(&self, response: proto::RequestResponse) {
        if let Some(waiter) = lock(&self.pending_requests).remove(&response.request_id) {
            let _ = waiter.send(response);
        }
    }

    /// Sends data packets, in order, on the reliable channel (waiting for it to open). A
    /// packet without a sender identity is sent as the local participant's; one that names
    /// another participant (a transcription sent on their behalf) keeps it.
    pub(super) async fn send_reliable(
        &self,
        packets: Vec<proto::DataPacket>,
    ) -> Result<(), RoomError> {
        let mut open = self.reliable_open.clone();
        // Only whether it opened is kept: the watch guard must not live across an await.
        let opened = tokio::time::timeout(REQUEST_TIMEOUT, open.wait_for(|open| *open))
            .await
            .map(|waited| waited.map(|_| ()));
        match opened {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(RoomError::Disconnected),
            Err(_) => {
                return Err(RoomError::Timeout {
                    what: "the reliable data channel",
                    after: REQUEST_TIMEOUT,
                });
            }
        }
        for mut packet in packets {
            if packet.participant_identity.is_empty() {
                packet.participant_identity = self.local.identity.clone();
            }
            packet.participant_sid = self.local.sid.clone();
            packet.sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
            let bytes = packet.encode_to_vec();
            self.reliable.send(bytes.as_slice().into()).await?;
        }
        Ok(())
    }

    /// What the server needs to resume this session on a new signalling connection.
    pub(super) async fn sync_state(&self) -> proto::SyncState {
        let answer = self.subscriber.local_sdp().await;
        let offer = self.subscriber.remote_sdp().await;
        let data_channels = [(&self.reliable, RELIABLE_LABEL), (&self.lossy, LOSSY_LABEL)]
            .into_iter()
            .map(|(channel, label)| proto::DataChannelInfo {
                label: label.to_owned(),
                id: u32::try_from(channel.id()).unwrap_or(u32::MAX),
                target: Target::Publisher as i32,
            })
            .collect();
        proto::SyncState {
            answer: answer.map(|sdp| session_description("answer", sdp)),
            offer: offer.map(|sdp| session_description("offer", sdp)),
            subscription: Some(proto::UpdateSubscription {
                subscribe: false,
                ..Default::default()
            }),
            publish_tracks: lock(&self.published).clone(),
            data_channels,
            ..Default::default()
        }
    }

    /// Tells the server we leave.
    pub(super) async fn send_leave(&self) {
        let leave = proto::LeaveRequest {
            reason: proto::DisconnectReason::ClientInitiated as i32,
            action: proto::leave_request::Action::Disconnect as i32,
            ..Default::default()
        };
        self.signal.send(Request::Leave(leave)).await;
    }

    /// Records a peer connection's new state.
    pub(super) fn set_link_state(&self, target: Target, state: RTCPeerConnectionState) {
        self.links.send_modify(|links| match target {
            Target::Publisher => links.publisher = state,
            Target::Subscriber => links.subscriber = state,
        });
    }

    /// Marks the room closed and drops every waiting request.
    pub(super) fn set_closed(&self, reason: DisconnectReason) {
        self.links.send_modify(|links| {
            links.closed.get_or_insert(reason);
        });
        lock(&self.pending_tracks).clear();
        lock(&self.pending_requests).clear();
    }

    /// Watches the peer connections' states.
    pub(super) fn links(&self) -> watch::Receiver<Links> {
        self.links.subscribe()
    }

    /// Whether the room is over.
    pub(super) fn is_closed(&self) -> bool {
        self.links.borrow().closed.is_some()
    }

    async fn await_reply<T>(
        &self,
        rx: oneshot::Receiver<T>,
        what: &'static str,
    ) -> Result<T, RoomError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(RoomError::Disconnected),
            Err(_) => Err(RoomError::Timeout {
                what,
                after: REQUEST_TIMEOUT,
            }),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn session_description(kind: &str, sdp: String) -> proto::SessionDescription {
    proto::SessionDescription {
        r#type: kind.to_owned(),
        sdp,
        ..Default::default()
    }
}

/// Follows a data channel: its open state (when asked) and its messages, until it closes.
pub(super) async fn read_channel(
    channel: Arc<dyn DataChannel>,
    incoming: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    open: Option<watch::Sender<bool>>,
) {
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                if let Some(open) = &open {
                    open.send_replace(true);
                }
            }
            DataChannelEvent::OnMessage(message) => {
                let delivered = incoming.send(message.data.to_vec()).is_ok();
                if !delivered {
                    break;
                }
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    if let Some(open) = &open {
        open.send_replace(false);
    }
}

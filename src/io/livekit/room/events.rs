//! What happens in a room, as seen by the local participant: a closed set of events in the
//! past tense, delivered in order through [`RoomEvents`].

use std::collections::HashMap;

use livekit_protocol as proto;
use tokio::sync::mpsc;

/// The kind of a participant (standard user, agent, SIP caller, ...), as the server reports it.
pub type ParticipantKind = proto::participant_info::Kind;

/// Why the local participant is no longer in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// [`Room::disconnect`](super::Room::disconnect) was called.
    ClientRequested,
    /// The server asked this participant to leave (room deleted, removed, duplicate
    /// identity, server shutting down, ...).
    ServerRequested(proto::DisconnectReason),
    /// The signalling connection was lost and could not be resumed.
    SignalLost,
    /// A peer connection failed (ICE or DTLS) and media could not continue.
    MediaFailed,
}

/// Something that happened in the room.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// A remote participant is in the room: it joined, or it was already there when the local
    /// participant joined.
    ParticipantConnected {
        /// The participant's identity.
        identity: String,
        /// What kind of participant it is.
        kind: ParticipantKind,
        /// Its attributes when it appeared.
        attributes: HashMap<String, String>,
    },
    /// A remote participant changed some of its attributes.
    AttributesChanged {
        /// The participant's identity.
        identity: String,
        /// The attributes that changed, with their new values (an empty value: removed).
        changed: HashMap<String, String>,
    },
    /// A remote participant left the room.
    ParticipantDisconnected {
        /// The participant's identity.
        identity: String,
    },
    /// Media of a remote participant's track started arriving.
    TrackSubscribed {
        /// The publishing participant's identity.
        identity: String,
        /// The track's server id (`TR_...`).
        track_sid: String,
    },
    /// A user data packet arrived (`publish_data` in the other SDKs).
    DataReceived {
        /// Who sent it, when the server says (absent for server-sent data).
        identity: Option<String>,
        /// The packet's topic (may be empty).
        topic: String,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A phone caller pressed a key: LiveKit SIP sends RFC 4733 DTMF from the caller as a
    /// `SipDTMF` data packet.
    DtmfReceived {
        /// Who pressed it (the SIP participant), when the server says.
        identity: Option<String>,
        /// The key: `0`-`9`, `*`, `#`, `A`-`D`.
        key: char,
    },
    /// A complete text stream arrived (e.g. `lk.chat`, `lk.transcription` of another agent).
    TextReceived {
        /// Who sent it.
        identity: String,
        /// The stream's topic.
        topic: String,
        /// The whole text.
        text: String,
        /// The stream's attributes.
        attributes: HashMap<String, String>,
    },
    /// The signalling connection was lost; the room is trying to resume the session (what
    /// LiveKit's SDKs call `reconnecting`). Media keeps flowing meanwhile.
    Reconnecting,
    /// The session was resumed on a new signalling connection (LiveKit's `reconnected`).
    Reconnected,
    /// The local participant is no longer in the room; no event follows this one.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
}

/// The room's events, in the order they happened. Ends (`None`) after
/// [`RoomEvent::Disconnected`].
#[derive(Debug)]
pub struct RoomEvents {
    rx: mpsc::UnboundedReceiver<RoomEvent>,
}

impl RoomEvents {
    pub(super) fn new(rx: mpsc::UnboundedReceiver<RoomEvent>) -> Self {
        RoomEvents { rx }
    }

    /// The next event, or `None` once the room is gone and every event has been read.
    pub async fn recv(&mut self) -> Option<RoomEvent> {
        self.rx.recv().await
    }

    /// The next event if one is already waiting.
    pub fn try_recv(&mut self) -> Option<RoomEvent> {
        self.rx.try_recv().ok()
    }
}

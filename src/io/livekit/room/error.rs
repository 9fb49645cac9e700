//! What can go wrong while joining or using a LiveKit room.

use std::time::Duration;

use livekit_protocol as proto;

/// Why a room operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// The signalling WebSocket could not be opened or the join was refused (bad token,
    /// unreachable server, ...).
    #[error("signalling failed: {0}")]
    Signal(#[from] livekit_signaling::SignalError),
    /// The WebRTC stack refused an operation (SDP, ICE candidate, data channel, track).
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    /// Something did not happen in time: the peer connections did not connect, the server
    /// did not acknowledge a track or a request.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long it was awaited.
        after: Duration,
    },
    /// The server sent something this client cannot use (no participant in the join
    /// response, an SDP that does not parse, ...).
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
    /// The server answered a request (attributes, metadata) with an error.
    #[error("the server refused the request ({reason:?}): {message}")]
    Refused {
        /// The reason code the server gave.
        reason: proto::request_response::Reason,
        /// The server's explanation.
        message: String,
    },
    /// The Opus codec could not be set up or failed.
    #[error("opus: {0}")]
    Codec(#[from] opus::Error),
    /// The room is disconnected (left, or the connection was lost).
    #[error("the room is disconnected")]
    Disconnected,
}

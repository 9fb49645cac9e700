//! A LiveKit room participant in pure Rust: signalling through `livekit-signaling`, media and
//! data through `webrtc` (webrtc-rs), Opus through `opus`. It is what the agent needs, not a
//! full SDK: join, hear one caller, speak, send text streams and set attributes, see who comes
//! and goes, leave.
//!
//! How it connects (LiveKit's classic dual peer-connection mode, which webrtc-rs handles as
//! a browser would):
//! 1. `SignalClient::connect` opens the WebSocket and returns the join response (who is
//!    there, ICE servers).
//! 2. Two peer connections bind one UDP socket each. On the **subscriber** the server offers
//!    (remote tracks, its data channels) and we answer; on the **publisher** we offer (our
//!    `_reliable`/`_lossy` data channels, later our audio track) and the server answers.
//!    Candidates trickle both ways over the signalling connection.
//! 3. [`Room::connect`] returns once both peer connections are connected.
//!
//! Remote audio is decoded per track on a thread of its own; the agent's audio is encoded on
//! a blocking task; neither blocks the async runtime.
//!
//! ```no_run
//! use bella_vista::io::livekit::room::{Room, RoomOptions};
//! use bella_vista::voice::audio_io::AudioInput;
//! # async fn example(token: &str) -> Result<(), bella_vista::io::livekit::room::RoomError> {
//! let (room, mut events) = Room::connect("ws://127.0.0.1:7880", token, RoomOptions::default()).await?;
//! let mut caller = room.audio_input(None).await;
//! let _speaker = room.publish_audio("agent").await?;
//! while let Some(frame) = caller.next_frame().await {
//!     let _ = frame; // into the voice pipeline
//! }
//! room.disconnect().await;
//! # drop(events.try_recv());
//! # Ok(())
//! # }
//! ```

mod audio_input;
mod audio_output;
mod data;
mod engine;
mod error;
mod events;
mod opus_codec;
mod roster;
mod rtc_values;
mod session;
mod transport;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use livekit_protocol as proto;
use livekit_signaling::{SignalClient, SignalOptions};
use tokio::sync::{mpsc, oneshot};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{RTCIceServer, RTCPeerConnectionState};

pub use audio_input::RoomAudioInput;
pub use audio_output::RoomAudioOutput;
pub use error::RoomError;
pub use events::{DisconnectReason, ParticipantKind, RoomEvent, RoomEvents};

use engine::{Engine, LocalParticipant, REQUEST_TIMEOUT};
use opus_codec::OpusEncoder;
use roster::Roster;
use session::{Command, Inputs, Session};
use transport::{PeerTransport, Target, TransportConfig};

/// The signalling protocol version we speak. 16 is the last before features this client
/// does not implement (packet trailers at 17, negotiated data channels at 18).
const PROTOCOL_VERSION: u32 = 16;

/// How to join.
#[derive(Debug, Clone)]
pub struct RoomOptions {
    /// Subscribe to every remote track automatically (what an agent wants).
    pub auto_subscribe: bool,
    /// How long the whole join may take: signalling, ICE, DTLS, data channels.
    pub connect_timeout: Duration,
    /// Local UDP address for the peer connections' sockets. `None`: `127.0.0.1:0` when the
    /// server is on a loopback address, else `0.0.0.0:0` (every non-loopback interface).
    pub bind_address: Option<String>,
}

impl Default for RoomOptions {
    fn default() -> Self {
        RoomOptions {
            auto_subscribe: true,
            connect_timeout: Duration::from_secs(15),
            bind_address: None,
        }
    }
}

/// A joined room, as the local participant. Dropping it leaves the room (like
/// [`disconnect`](Room::disconnect), without waiting).
pub struct Room {
    engine: Arc<Engine>,
    commands: mpsc::UnboundedSender<Command>,
    joined_in: Duration,
    name: String,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("identity", &self.engine.local.identity)
            .field("sid", &self.engine.local.sid)
            .finish_non_exhaustive()
    }
}

impl Room {
    /// Joins the room `token` grants at `url` (`ws://` or `wss://`), and returns once media
    /// and data can flow. The events start with a
    /// [`ParticipantConnected`](RoomEvent::ParticipantConnected) per participant already there.
    pub async fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
    ) -> Result<(Room, RoomEvents), RoomError> {
        let started = tokio::time::Instant::now();
        let (signal, join, signal_events) =
            SignalClient::connect(url, token, signal_options(&options), None).await?;
        let (transport_tx, transport_rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::unbounded_channel();
        let config = transport_config(url, &options, &join);
        let engine =
            Arc::new(assemble(signal, &join, config, transport_tx, data_tx.clone()).await?);

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut roster = Roster::new(engine.local.sid.clone());
        for event in roster.apply(join.other_participants) {
            let _ = events_tx.send(event);
        }
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let inputs = Inputs {
            signal: signal_events,
            transports: transport_rx,
            commands: commands_rx,
            data: data_rx,
            data_tx,
        };
        tokio::spawn(Session::new(Arc::clone(&engine), events_tx, roster).run(inputs));
        let mut room = Room {
            engine,
            commands: commands_tx,
            joined_in: Duration::ZERO,
            name: join
                .room
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default(),
        };

        // The publisher connects now (not at the first publication) so data can flow at once.
        let connected = async {
            if let Some(offer) = room.engine.publisher.request_offer().await?.1 {
                room.engine.send_offer(offer).await;
            }
            tokio::time::timeout(options.connect_timeout, room.wait_connected())
                .await
                .unwrap_or(Err(RoomError::Timeout {
                    what: "the peer connections to connect",
                    after: options.connect_timeout,
                }))
        };
        if let Err(err) = connected.await {
            room.disconnect().await;
            return Err(err);
        }
        room.joined_in = started.elapsed();
        tracing::info!(
            identity = %room.engine.local.identity,
            joined_in_ms = room.joined_in.as_millis() as u64,
            "joined room"
        );
        Ok((room, RoomEvents::new(events_rx)))
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local participant's identity.
    pub fn identity(&self) -> &str {
        &self.engine.local.identity
    }

    /// The local participant's server id (`PA_...`).
    pub fn sid(&self) -> &str {
        &self.engine.local.sid
    }

    /// How long [`connect`](Room::connect) took, from the first signalling byte to connected
    /// peer connections.
    pub fn joined_in(&self) -> Duration {
        self.joined_in
    }

    /// Whether the room is still connected.
    pub fn is_connected(&self) -> bool {
        !self.engine.is_closed()
    }

    /// Audio of the remote participant `identity`, or of the first one that publishes a
    /// microphone when `None`. The input ends when that participant leaves or the room ends.
    pub async fn audio_input(&self, identity: Option<&str>) -> RoomAudioInput {
        let (reply, rx) = oneshot::channel();
        let command = Command::AudioInput {
            identity: identity.map(str::to_owned),
            reply,
        };
        if self.commands.send(command).is_ok()
            && let Ok(input) = rx.await
        {
            return input;
        }
        // The room is over: an input that has already ended.
        RoomAudioInput::ended()
    }

    /// Publishes the agent's microphone track named `name` and returns where to write its
    /// audio (48 kHz). Returns once the server has the track and the publisher has been
    /// renegotiated.
    pub async fn publish_audio(&self, name: &str) -> Result<RoomAudioOutput, RoomError> {
        if self.engine.is_closed() {
            return Err(RoomError::Disconnected);
        }
        let cid = new_track_cid();
        let info = self.engine.add_audio_track(&cid, name).await?;
        let ssrc = ssrc_for(&cid);
        let track = Arc::new(TrackLocalStaticRTP::new(rtc_values::opus_track(
            &cid, &cid, ssrc,
        )));
        let sender = self
            .engine
            .publisher
            .pc()
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await?;
        let (offer_id, offer) = self.engine.publisher.request_offer().await?;
        if let Some(offer) = offer {
            self.engine.send_offer(offer).await;
        }
        tokio::time::timeout(REQUEST_TIMEOUT, self.engine.publisher.negotiated(offer_id))
            .await
            .map_err(|_| RoomError::Timeout {
                what: "the publisher renegotiation",
                after: REQUEST_TIMEOUT,
            })?;
        let payload_type = sender
            .get_parameters()
            .await?
            .rtp_parameters
            .codecs
            .first()
            .map(|codec| codec.payload_type)
            .ok_or_else(|| RoomError::Protocol("no audio codec negotiated".into()))?;
        let encoder = OpusEncoder::new()?;
        Ok(RoomAudioOutput::new(
            track,
            info.sid,
            ssrc,
            payload_type,
            encoder,
        ))
    }

    /// Sends `text` as a LiveKit text stream on `topic` (e.g. `lk.transcription`) to everyone,
    /// with `attributes` in its header. Returns the stream id.
    pub async fn send_text_stream(
        &self,
        topic: &str,
        text: &str,
        attributes: HashMap<String, String>,
    ) -> Result<String, RoomError> {
        self.send_text_stream_for(topic, text, attributes, None)
            .await
    }

    /// Like [`send_text_stream`](Room::send_text_stream), sent on behalf of the participant
    /// `sender` when given: LiveKit's convention for the transcription of a participant's
    /// speech is a stream whose sender is that participant (livekit-server lets an agent
    /// name another sender on a text stream and marks it generated).
    pub async fn send_text_stream_for(
        &self,
        topic: &str,
        text: &str,
        attributes: HashMap<String, String>,
        sender: Option<&str>,
    ) -> Result<String, RoomError> {
        if self.engine.is_closed() {
            return Err(RoomError::Disconnected);
        }
        let stream_id = data::new_stream_id();
        let packets = data::text_stream_packets(&stream_id, topic, text, attributes, sender);
        self.engine.send_reliable(packets).await?;
        Ok(stream_id)
    }

    /// Sets attributes of the local participant (merged into the existing ones; an empty
    /// value removes a key), e.g. `lk.agent.state`. Returns once the server accepted them.
    /// The token must grant `canUpdateOwnMetadata`.
    pub async fn set_attributes(
        &self,
        attributes: HashMap<String, String>,
    ) -> Result<(), RoomError> {
        if self.engine.is_closed() {
            return Err(RoomError::Disconnected);
        }
        self.engine.update_attributes(attributes).await
    }

    /// Leaves the room: tells the server, closes the peer connections, ends the inputs, and
    /// emits [`RoomEvent::Disconnected`]. Returns once that is done; calling it again is fine.
    pub async fn disconnect(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Disconnect { done }).is_ok() {
            let _ = finished.await;
        }
    }

    async fn wait_connected(&self) -> Result<(), RoomError> {
        let mut links = self.engine.links();
        let connected = links
            .wait_for(|links| {
                links.closed.is_some()
                    || links.publisher == RTCPeerConnectionState::Failed
                    || links.subscriber == RTCPeerConnectionState::Failed
                    || (links.publisher == RTCPeerConnectionState::Connected
                        && links.subscriber == RTCPeerConnectionState::Connected)
            })
            .await
            .map_err(|_| RoomError::Disconnected)?
            .clone();
        if connected.closed.is_some() {
            return Err(RoomError::Disconnected);
        }
        if connected.publisher != RTCPeerConnectionState::Connected
            || connected.subscriber != RTCPeerConnectionState::Connected
        {
            return Err(RoomError::Protocol(format!(
                "peer connections failed (publisher {:?}, subscriber {:?})",
                connected.publisher, connected.subscriber
            )));
        }
        Ok(())
    }
}

/// What the signalling client announces and how it connects.
fn signal_options(options: &RoomOptions) -> SignalOptions {
    let mut signal = SignalOptions::default();
    signal.auto_subscribe = options.auto_subscribe;
    // Region failover is for LiveKit Cloud; a self-hosted URL has no regions to try.
    signal.region_failover = false;
    signal.protocol_version = PROTOCOL_VERSION;
    // No packet trailers (video only) and no compressed data streams.
    signal.client_capabilities = Vec::new();
    signal
}

/// The peer connections' socket and ICE servers (those of the join response).
fn transport_config(
    url: &str,
    options: &RoomOptions,
    join: &proto::JoinResponse,
) -> TransportConfig {
    TransportConfig {
        bind: options
            .bind_address
            .clone()
            .unwrap_or_else(|| default_bind_address(url)),
        ice_servers: join
            .ice_servers
            .iter()
            .map(|server| RTCIceServer {
                urls: server.urls.clone(),
                username: server.username.clone(),
                credential: server.credential.clone(),
            })
            .collect(),
    }
}

/// The engine of a joined signalling session: peer connections and data channels. Closes the
/// signalling connection when they cannot be set up.
async fn assemble(
    signal: SignalClient,
    join: &proto::JoinResponse,
    config: TransportConfig,
    transport_events: mpsc::UnboundedSender<transport::TransportEvent>,
    incoming: mpsc::UnboundedSender<Vec<u8>>,
) -> Result<Engine, RoomError> {
    let parts = async {
        let participant = join
            .participant
            .as_ref()
            .ok_or_else(|| RoomError::Protocol("join response without a participant".into()))?;
        let local = LocalParticipant {
            sid: participant.sid.clone(),
            identity: participant.identity.clone(),
        };
        let publisher =
            PeerTransport::new(Target::Publisher, &config, transport_events.clone()).await?;
        let subscriber = PeerTransport::new(Target::Subscriber, &config, transport_events).await?;
        let channels = engine::open_data_channels(&publisher).await?;
        Ok((local, publisher, subscriber, channels))
    };
    match parts.await {
        Ok((local, publisher, subscriber, channels)) => Ok(Engine::new(
            signal, publisher, subscriber, local, channels, incoming,
        )),
        Err(err) => {
            signal.close().await;
            Err(err)
        }
    }
}

/// `127.0.0.1:0` for a server on a loopback address (a local test server offers only loopback
/// candidates), else every interface.
fn default_bind_address(url: &str) -> String {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback { "127.0.0.1:0" } else { "0.0.0.0:0" }.to_owned()
}

/// A client-side track id, unique in the process.
fn new_track_cid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "agent-audio-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A stable, non-zero SSRC derived from the track id and the clock.
fn ssrc_for(cid: &str) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let hash = cid.bytes().fold(2_166_136_261_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    (hash ^ nanos).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_bind_loopback() {
        assert_eq!(default_bind_address("ws://127.0.0.1:7880"), "127.0.0.1:0");
        assert_eq!(default_bind_address("ws://localhost:7880/"), "127.0.0.1:0");
        assert_eq!(default_bind_address("ws://[::1]:7880"), "127.0.0.1:0");
        assert_eq!(
            default_bind_address("wss://example.livekit.cloud"),
            "0.0.0.0:0"
        );
        assert_eq!(default_bind_address("ws://10.0.0.5:7880?x=1"), "0.0.0.0:0");
    }

    #[test]
    fn track_ids_and_ssrcs_differ() {
        assert_ne!(new_track_cid(), new_track_cid());
        assert_ne!(ssrc_for("a"), 0);
    }
}

//! One WebRTC peer connection to the LiveKit server (the publisher or the subscriber), with
//! what LiveKit's signalling needs around it: candidates that arrive before the remote
//! description are held, and offers are serialised (one in flight, at most one more queued).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use livekit_protocol as proto;
use tokio::sync::{Mutex, mpsc, watch};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCBundlePolicy, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

use super::error::RoomError;

/// Which of the two peer connections (LiveKit's `SignalTarget`).
pub(super) type Target = proto::SignalTarget;

/// Something a peer connection reported, tagged with which one.
pub(super) struct TransportEvent {
    /// The peer connection it came from.
    pub(super) target: Target,
    /// What happened.
    pub(super) kind: TransportEventKind,
}

/// What a peer connection reported.
pub(super) enum TransportEventKind {
    /// A local ICE candidate to trickle to the server.
    Candidate(RTCIceCandidateInit),
    /// The connection state changed.
    State(RTCPeerConnectionState),
    /// The server opened a data channel.
    DataChannel(Arc<dyn DataChannel>),
    /// Media of a remote track started arriving.
    Track(Arc<dyn TrackRemote>),
}

/// Where the peer connection binds its UDP socket and which ICE servers it uses.
#[derive(Debug, Clone)]
pub(super) struct TransportConfig {
    /// Local UDP address (port 0: any).
    pub(super) bind: String,
    /// ICE servers (from the join response).
    pub(super) ice_servers: Vec<RTCIceServer>,
}

/// Offer bookkeeping: ids count offers; one may be in flight, one more may be wanted.
#[derive(Debug, Default)]
struct Negotiation {
    remote_set: bool,
    pending_candidates: Vec<RTCIceCandidateInit>,
    next_offer: u64,
    in_flight: Option<u64>,
    wanted: bool,
}

/// A peer connection to the server.
pub(super) struct PeerTransport {
    target: Target,
    pc: Arc<dyn PeerConnection>,
    negotiation: Mutex<Negotiation>,
    /// The id of the last offer whose answer was applied.
    answered: watch::Sender<u64>,
}

impl PeerTransport {
    /// Builds the peer connection; its events go to `events`.
    pub(super) async fn new(
        target: Target,
        config: &TransportConfig,
        events: mpsc::UnboundedSender<TransportEvent>,
    ) -> Result<Self, RoomError> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(config.ice_servers.clone())
            .with_bundle_policy(RTCBundlePolicy::MaxBundle)
            .build();
        // Loopback candidates are what a local server offers; `with_udp_addrs` with a concrete
        // address binds exactly that address (a wildcard would skip loopback).
        // mDNS off: no multicast socket, no queries on the network; candidates are IPs.
        let settings = SettingEngineBuilder::new()
            .with_include_loopback_candidate(true)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .with_handler(Arc::new(Forwarder { target, events }))
            .with_udp_addrs(vec![config.bind.clone()])
            .build()
            .await?;
        Ok(PeerTransport {
            target,
            pc: Arc::new(pc),
            negotiation: Mutex::new(Negotiation::default()),
            answered: watch::Sender::new(0),
        })
    }

    /// The underlying peer connection.
    pub(super) fn pc(&self) -> &Arc<dyn PeerConnection> {
        &self.pc
    }

    /// Adds a remote candidate now, or once the remote description is set.
    pub(super) async fn add_candidate(
        &self,
        candidate: RTCIceCandidateInit,
    ) -> Result<(), RoomError> {
        let mut negotiation = self.negotiation.lock().await;
        if negotiation.remote_set {
            drop(negotiation);
            self.pc.add_ice_candidate(candidate).await?;
        } else {
            negotiation.pending_candidates.push(candidate);
        }
        Ok(())
    }

    /// Answers a server offer (the subscriber side): returns the answer's SDP.
    pub(super) async fn answer(&self, offer_sdp: String) -> Result<String, RoomError> {
        let offer = RTCSessionDescription::offer(offer_sdp)?;
        let mut negotiation = self.negotiation.lock().await;
        self.pc.set_remote_description(offer).await?;
        self.flush_candidates(&mut negotiation).await;
        let answer = self.pc.create_answer(None).await?;
        let sdp = answer.sdp.clone();
        self.pc.set_local_description(answer).await?;
        Ok(sdp)
    }

    /// Asks for an offer (the publisher side). Returns the id of the offer that will carry
    /// the connection's current state, and its SDP when it must be sent now; `None` when an
    /// offer is in flight (the next one follows its answer, from
    /// [`apply_answer`](Self::apply_answer)).
    pub(super) async fn request_offer(&self) -> Result<(u64, Option<String>), RoomError> {
        let mut negotiation = self.negotiation.lock().await;
        if let Some(in_flight) = negotiation.in_flight {
            negotiation.wanted = true;
            return Ok((in_flight + 1, None));
        }
        let (id, sdp) = self.create_offer(&mut negotiation).await?;
        Ok((id, Some(sdp)))
    }

    /// Restarts ICE with a fresh offer, sent at once: after a lost signalling connection the
    /// answer to any offer in flight is lost too, so that offer is forgotten (its waiters are
    /// released by this one's answer, which has a later id).
    pub(super) async fn restart_ice(&self) -> Result<String, RoomError> {
        let mut negotiation = self.negotiation.lock().await;
        negotiation.in_flight = None;
        negotiation.wanted = false;
        self.pc.restart_ice().await?;
        let (_, sdp) = self.create_offer(&mut negotiation).await?;
        Ok(sdp)
    }

    /// Applies the server's answer to our offer; returns the next offer's SDP when one was
    /// wanted meanwhile.
    pub(super) async fn apply_answer(
        &self,
        answer_sdp: String,
    ) -> Result<Option<String>, RoomError> {
        let answer = RTCSessionDescription::answer(answer_sdp)?;
        let mut negotiation = self.negotiation.lock().await;
        self.pc.set_remote_description(answer).await?;
        self.flush_candidates(&mut negotiation).await;
        if let Some(id) = negotiation.in_flight.take() {
            self.answered.send_replace(id);
        }
        if negotiation.wanted {
            negotiation.wanted = false;
            let (_, sdp) = self.create_offer(&mut negotiation).await?;
            return Ok(Some(sdp));
        }
        Ok(None)
    }

    /// Waits until the answer to offer `id` (or a later one) has been applied.
    pub(super) async fn negotiated(&self, id: u64) {
        let mut answered = self.answered.subscribe();
        // The sender lives as long as `self`, so this only ends when the id is reached.
        let _ = answered.wait_for(|applied| *applied >= id).await;
    }

    /// The local description in effect (pending or negotiated): what candidates belong to.
    pub(super) async fn pending_or_current_local_sdp(&self) -> Option<String> {
        self.pc.local_description().await.map(|d| d.sdp)
    }

    /// The negotiated local description's SDP.
    pub(super) async fn local_sdp(&self) -> Option<String> {
        self.pc.current_local_description().await.map(|d| d.sdp)
    }

    /// The current remote description's SDP.
    pub(super) async fn remote_sdp(&self) -> Option<String> {
        self.pc.current_remote_description().await.map(|d| d.sdp)
    }

    /// Closes the peer connection.
    pub(super) async fn close(&self) {
        if let Err(err) = self.pc.close().await {
            tracing::debug!(target = ?self.target, %err, "closing peer connection");
        }
    }

    async fn create_offer(
        &self,
        negotiation: &mut Negotiation,
    ) -> Result<(u64, String), RoomError> {
        let offer = self.pc.create_offer(None).await?;
        let sdp = offer.sdp.clone();
        self.pc.set_local_description(offer).await?;
        negotiation.next_offer += 1;
        let id = negotiation.next_offer;
        negotiation.in_flight = Some(id);
        Ok((id, sdp))
    }

    async fn flush_candidates(&self, negotiation: &mut Negotiation) {
        negotiation.remote_set = true;
        for candidate in negotiation.pending_candidates.drain(..) {
            if let Err(err) = self.pc.add_ice_candidate(candidate).await {
                tracing::debug!(target = ?self.target, %err, "remote candidate rejected");
            }
        }
    }
}

/// The first `a=mid:` of an SDP (candidates are tagged with it; LiveKit bundles everything).
pub(super) fn first_mid(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|line| line.trim().strip_prefix("a=mid:"))
        .map(str::trim)
}

/// Forwards the peer connection's callbacks, which run on its driver, into a channel.
struct Forwarder {
    target: Target,
    events: mpsc::UnboundedSender<TransportEvent>,
}

impl Forwarder {
    fn forward(&self, kind: TransportEventKind) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        // The receiver is gone once the room is closed; nothing is left to tell.
        let _ = self.events.send(TransportEvent {
            target: self.target,
            kind,
        });
        Box::pin(std::future::ready(()))
    }
}

// Written out rather than with `#[async_trait]` (not a dependency of this crate): each method
// has the signature that macro produces, and none of them waits.
impl PeerConnectionEventHandler for Forwarder {
    fn on_ice_candidate<'life0, 'async_trait>(
        &'life0 self,
        event: RTCPeerConnectionIceEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        match event.candidate.to_json() {
            Ok(init) => self.forward(TransportEventKind::Candidate(init)),
            Err(err) => {
                tracing::debug!(%err, "local candidate not serialisable");
                Box::pin(std::future::ready(()))
            }
        }
    }

    fn on_connection_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCPeerConnectionState,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.forward(TransportEventKind::State(state))
    }

    fn on_data_channel<'life0, 'async_trait>(
        &'life0 self,
        data_channel: Arc<dyn DataChannel>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.forward(TransportEventKind::DataChannel(data_channel))
    }

    fn on_track<'life0, 'async_trait>(
        &'life0 self,
        track: Arc<dyn TrackRemote>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.forward(TransportEventKind::Track(track))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_mid_is_found() {
        let sdp =
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=application 9\r\na=mid:1\r\n";
        assert_eq!(first_mid(sdp), Some("0"));
        assert_eq!(first_mid("v=0\r\n"), None);
    }
}

//! Values of `webrtc`'s core types that this crate cannot name.
//!
//! `webrtc` 0.21 takes some arguments whose types live in its private dependency `rtc`
//! (`RTCRtpEncodingParameters`, `rtp::Packet`), which this crate does not depend on. They
//! all implement `Default` and have public fields, so [`apply`] makes one from its default
//! and hands it to the call that takes it, which is what names its type.

use webrtc::media_stream::MediaStreamTrack;

/// The RTP clock rate of Opus (always 48 kHz, whatever the audio's rate).
pub(super) const OPUS_CLOCK_RATE: u32 = 48_000;

/// Makes a `T` from `T::default()`, lets `fill` set its fields, and passes it to `use_site`.
/// `T` is inferred from `use_site`'s body, which is checked before `fill`'s.
pub(super) fn apply<T: Default, R>(use_site: impl FnOnce(T) -> R, fill: impl FnOnce(&mut T)) -> R {
    let mut value = T::default();
    fill(&mut value);
    use_site(value)
}

/// A local audio track carrying Opus on one SSRC, as `webrtc` wants it for `add_track`.
/// `track_id` is what the SDP's `msid` announces; LiveKit matches it to the `cid` of the
/// `AddTrackRequest`.
pub(super) fn opus_track(track_id: &str, stream_id: &str, ssrc: u32) -> MediaStreamTrack {
    let mut track = MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id.to_owned(),
        track_id.to_owned(),
        "audio".into(),
        Vec::new(),
    );
    apply(
        |coding| track.add_coding(coding),
        |coding| {
            coding.rtp_coding_parameters.ssrc = Some(ssrc);
            coding.active = true;
            coding.codec.mime_type = "audio/opus".to_owned();
            coding.codec.clock_rate = OPUS_CLOCK_RATE;
            coding.codec.channels = 2;
            coding.codec.sdp_fmtp_line = "minptime=10;useinbandfec=1".to_owned();
        },
    );
    track
}

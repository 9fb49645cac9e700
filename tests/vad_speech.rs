//! Real speech through the caller's audio path: espeak-ng sentences with pauses of known
//! length, written to and read from a WAV file, resampled from 22.05 kHz to 16 kHz in
//! 20 ms frames, classified by webrtc-vad (default aggressiveness) and turned into
//! utterances by the speech detector (default thresholds).
//!
//! Tolerances: each detected start must lie within [`START_TOLERANCE`] (150 ms) and each
//! end within [`END_TOLERANCE`] (250 ms) of the truth, which is each sentence's first and
//! last sample louder than about -40 dBFS. The VAD's own hangover makes ends late by about
//! 70-130 ms; starts come within about 15 ms clean and 50 ms in noise.
//!
//! The same sentences as a phone call delivers them (8 kHz G.711 mu-law, as LiveKit SIP
//! receives them from the carrier) must be cut the same way, within the same tolerances.
//!
//! Needs espeak-ng (Debian package `espeak-ng`): without it these tests fail.

mod common;

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use bella_vista::io::wav::{read_wav, split_frames, write_wav};
use bella_vista::voice::audio::{AudioFrame, samples_for};
use bella_vista::voice::resample::Resampler;
use bella_vista::voice::speech_detector::{SpeechDetector, SpeechDetectorConfig, SpeechEvent};
use bella_vista::voice::vad::{VAD_SAMPLE_RATE, VadAggressiveness, VadPool, VadStream};
use common::speech::{
    ESPEAK_RATE, add_noise, concat_with_pauses_marked, espeak_to_frame, silence, white_noise,
};

/// How far a detected start may be from the true start.
const START_TOLERANCE: Duration = Duration::from_millis(150);
/// How far a detected end may be from the true end.
const END_TOLERANCE: Duration = Duration::from_millis(250);
/// The frame length through the whole path.
const FRAME: Duration = Duration::from_millis(20);
/// The silence inserted between sentences.
const PAUSE: Duration = Duration::from_millis(1200);

const SENTENCES: [&str; 4] = [
    "Hi, I would like to order a large pepperoni pizza for delivery.",
    "Can I also get two garlic breads and a bottle of sparkling water?",
    "My address is twelve Maple Street, apartment four.",
    "Yes.",
];

/// The caller's audio (a short lead-in, then each sentence followed by [`PAUSE`]) and where
/// each sentence's speech truly is.
fn caller() -> (AudioFrame, Vec<Range<Duration>>) {
    let mut parts = vec![(
        silence(Duration::from_millis(800), ESPEAK_RATE),
        Duration::ZERO,
    )];
    parts.extend(SENTENCES.iter().map(|text| (espeak_to_frame(text), PAUSE)));
    let (audio, mut truth) = concat_with_pauses_marked(&parts);
    truth.remove(0);
    (audio, truth)
}

/// Runs `audio` through a WAV file, the resampler, the VAD and the speech detector, as the
/// live path does frame by frame, and returns the utterances found.
async fn utterances(audio: &AudioFrame) -> Vec<Range<Duration>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("caller.wav");
    write_wav(&path, audio).expect("write the caller WAV");
    let audio = read_wav(&path).expect("read the caller WAV");

    let mut resampler =
        Resampler::new(audio.sample_rate(), VAD_SAMPLE_RATE, 1).expect("resampler for the WAV");
    let mut listener = Listener::new();
    for frame in split_frames(&audio, FRAME) {
        let converted = resampler.process(&frame).expect("resample");
        listener.hear(converted.samples()).await;
    }
    let rest = resampler.flush().expect("flush the resampler");
    listener.hear(rest.samples()).await;
    listener.finish().await
}

/// The VAD and the speech detector on 16 kHz audio cut into [`FRAME`]s.
struct Listener {
    _pool: VadPool,
    vad: VadStream,
    detector: SpeechDetector,
    pending: VecDeque<i16>,
    events: Vec<SpeechEvent>,
}

impl Listener {
    fn new() -> Self {
        let pool = VadPool::start(VadAggressiveness::default());
        Listener {
            vad: pool.open_stream(),
            _pool: pool,
            detector: SpeechDetector::new(SpeechDetectorConfig::default()),
            pending: VecDeque::new(),
            events: Vec::new(),
        }
    }

    /// Takes 16 kHz samples and classifies every whole frame.
    async fn hear(&mut self, samples: &[i16]) {
        self.pending.extend(samples);
        let frame_samples = samples_for(VAD_SAMPLE_RATE, FRAME);
        while self.pending.len() >= frame_samples {
            let samples: Vec<i16> = self.pending.drain(..frame_samples).collect();
            let frame = AudioFrame::mono(samples, VAD_SAMPLE_RATE);
            let duration = frame.duration();
            let is_speech = self.vad.classify(frame).await.expect("VAD decision");
            self.events.extend(self.detector.push(is_speech, duration));
        }
    }

    /// Pads and classifies the last partial frame, ends the stream and returns the
    /// utterances heard.
    async fn finish(mut self) -> Vec<Range<Duration>> {
        let frame_samples = samples_for(VAD_SAMPLE_RATE, FRAME);
        if !self.pending.is_empty() {
            let padding = vec![0; frame_samples - self.pending.len()];
            self.hear(&padding).await;
        }
        self.events.extend(self.detector.finish());
        pair_up(&self.events)
    }
}

/// Utterances from alternating start and end events, checking that they alternate.
fn pair_up(events: &[SpeechEvent]) -> Vec<Range<Duration>> {
    let mut open = None;
    let mut found = Vec::new();
    for event in events {
        match (*event, open) {
            (SpeechEvent::Started { at }, None) => open = Some(at),
            (
                SpeechEvent::Ended {
                    started_at,
                    ended_at,
                },
                Some(at),
            ) => {
                assert_eq!(started_at, at, "an end names its own start");
                assert!(ended_at > started_at);
                found.push(started_at..ended_at);
                open = None;
            }
            _ => panic!("start and end events out of order: {events:?}"),
        }
    }
    assert_eq!(open, None, "speech still open after finish()");
    found
}

fn signed_ms(found: Duration, truth: Duration) -> i64 {
    found.as_millis() as i64 - truth.as_millis() as i64
}

fn assert_utterances_match(found: &[Range<Duration>], truth: &[Range<Duration>]) {
    let errors: Vec<String> = found
        .iter()
        .zip(truth)
        .map(|(found, truth)| {
            format!(
                "start {:+} ms, end {:+} ms",
                signed_ms(found.start, truth.start),
                signed_ms(found.end, truth.end)
            )
        })
        .collect();
    assert_eq!(
        found.len(),
        truth.len(),
        "found {found:?}, spoken {truth:?}"
    );
    for (found, truth) in found.iter().zip(truth) {
        assert!(
            found.start.abs_diff(truth.start) <= START_TOLERANCE
                && found.end.abs_diff(truth.end) <= END_TOLERANCE,
            "found {found:?} for speech at {truth:?}; all errors: {errors:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_sentence_is_one_utterance_at_the_right_time() {
    let (audio, truth) = caller();
    let found = utterances(&audio).await;
    assert_utterances_match(&found, &truth);
}

#[tokio::test(flavor = "multi_thread")]
async fn sentences_are_still_found_in_white_noise_at_20_db_snr() {
    let (audio, truth) = caller();
    let noisy = add_noise(&audio, 20.0, 7);
    let found = utterances(&noisy).await;
    assert_utterances_match(&found, &truth);
}

/// `audio` as a telephone line carries it: resampled to 8 kHz, encoded as G.711 mu-law
/// (PCMU) and decoded again.
fn through_the_phone(audio: &AudioFrame) -> AudioFrame {
    let mut resampler = Resampler::new(audio.sample_rate(), 8_000, 1).expect("resampler");
    let mut narrow = resampler.process(audio).expect("to 8 kHz").into_samples();
    narrow.extend(resampler.flush().expect("flush").samples());
    let samples = narrow
        .into_iter()
        .map(|s| mulaw_decode(mulaw_encode(s)))
        .collect();
    AudioFrame::mono(samples, 8_000)
}

/// G.711 mu-law: 14-bit magnitude with bias 0x84, 3-bit segment, 4-bit step, inverted.
fn mulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let value = i32::from(sample);
    let sign = if value < 0 { 0x80 } else { 0 };
    let magnitude = value.abs().min(CLIP) + BIAS;
    let mut exponent = 7;
    while exponent > 0 && magnitude & (0x80 << exponent) == 0 {
        exponent -= 1;
    }
    let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

fn mulaw_decode(byte: u8) -> i16 {
    let byte = !byte;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let value = if byte & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    };
    value as i16
}

#[test]
fn mu_law_round_trips_within_its_step() {
    for sample in [-32_000_i16, -1000, -1, 0, 1, 100, 1000, 12_345, 32_000] {
        let back = mulaw_decode(mulaw_encode(sample));
        let step = (i32::from(sample).abs() / 16).max(8);
        assert!(
            (i32::from(back) - i32::from(sample)).abs() <= step,
            "{sample} -> {back}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn phone_audio_is_cut_like_wideband_audio() {
    let (audio, truth) = caller();
    let wide = utterances(&audio).await;
    let narrow = utterances(&through_the_phone(&audio)).await;
    let shifts: Vec<(i64, i64)> = narrow
        .iter()
        .zip(&wide)
        .map(|(n, w)| (signed_ms(n.start, w.start), signed_ms(n.end, w.end)))
        .collect();
    eprintln!("narrowband vs wideband utterances, (start, end) ms: {shifts:?}");
    assert_utterances_match(&narrow, &truth);
}

#[tokio::test(flavor = "multi_thread")]
async fn phone_audio_in_line_noise_is_still_cut_right() {
    let (audio, truth) = caller();
    let noisy = through_the_phone(&add_noise(&audio, 20.0, 11));
    let found = utterances(&noisy).await;
    assert_utterances_match(&found, &truth);
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_noise_is_not_speech() {
    // -35 dBFS: a clearly audible hiss, as on a poor phone line.
    for seed in 1..=3 {
        let noise = white_noise(Duration::from_secs(5), ESPEAK_RATE, -35.0, seed);
        assert_eq!(utterances(&noise).await, [], "noise with seed {seed}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn digital_silence_is_not_speech() {
    let quiet = silence(Duration::from_secs(5), ESPEAK_RATE);
    assert_eq!(utterances(&quiet).await, []);
}

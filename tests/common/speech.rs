//! Real speech for audio tests: sentences spoken by espeak-ng, joined with pauses of known
//! length, with noise added from a small deterministic generator.
//!
//! espeak-ng must be installed (Debian package `espeak-ng`); without it these helpers
//! panic with a message saying so, so the tests fail instead of passing vacuously.

use std::ops::Range;
use std::process::Command;
use std::time::Duration;

use bella_vista::io::wav::read_wav;
use bella_vista::voice::audio::{AudioFrame, duration_of, samples_for};

/// espeak-ng's output rate.
pub const ESPEAK_RATE: u32 = 22_050;

/// Amplitude above which a sample counts as sound when trimming espeak's near-silence
/// (about -40 dBFS).
pub const SPEECH_THRESHOLD: i16 = 330;

/// `text` spoken by espeak-ng with its default voice: mono, [`ESPEAK_RATE`].
pub fn espeak_to_frame(text: &str) -> AudioFrame {
    espeak_to_frame_with(text, &[])
}

/// `text` spoken by espeak-ng with extra arguments, e.g. `["-s", "150"]` (words per
/// minute) or `["-g", "5"]` (gap between words, in 10 ms units).
pub fn espeak_to_frame_with(text: &str, args: &[&str]) -> AudioFrame {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(args)
        .arg("-w")
        .arg(&path)
        .arg("--")
        .arg(text)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("espeak-ng failed ({status}) speaking {text:?}"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "espeak-ng is not installed; the speech tests need it \
             (Debian/Ubuntu: apt-get install -y espeak-ng)"
        ),
        Err(err) => panic!("cannot run espeak-ng: {err}"),
    }
    read_wav(&path).expect("espeak-ng wrote a readable WAV file")
}

/// Digital silence, mono.
pub fn silence(duration: Duration, rate: u32) -> AudioFrame {
    AudioFrame::silence(rate, 1, duration)
}

/// The parts one after another, each followed by its pause of silence. All parts must have
/// the same rate and channel count.
pub fn concat_with_pauses(parts: &[(AudioFrame, Duration)]) -> AudioFrame {
    concat_with_pauses_marked(parts).0
}

/// [`concat_with_pauses`], plus where each part's sound is in the result: from its first to
/// its last sample louder than [`SPEECH_THRESHOLD`] (a part with none gives an empty range
/// at its start).
pub fn concat_with_pauses_marked(
    parts: &[(AudioFrame, Duration)],
) -> (AudioFrame, Vec<Range<Duration>>) {
    let first = parts.first().map(|(frame, _)| frame);
    let rate = first.map_or(ESPEAK_RATE, AudioFrame::sample_rate);
    let channels = first.map_or(1, AudioFrame::channels);
    let mut out = AudioFrame::new(Vec::new(), rate, channels).expect("valid format");
    let mut marks = Vec::new();
    for (frame, pause) in parts {
        let offset = out.duration();
        let span = sound_span(frame).unwrap_or(Duration::ZERO..Duration::ZERO);
        marks.push(offset + span.start..offset + span.end);
        out.append(frame).expect("parts share one format");
        out.append(&AudioFrame::silence(rate, channels, *pause))
            .expect("silence in the same format");
    }
    (out, marks)
}

/// From the first to the end of the last sample louder than [`SPEECH_THRESHOLD`].
pub fn sound_span(frame: &AudioFrame) -> Option<Range<Duration>> {
    let channels = usize::from(frame.channels());
    let loud = |s: &i16| s.unsigned_abs() > SPEECH_THRESHOLD.unsigned_abs();
    let first = frame.samples().iter().position(loud)? / channels;
    let last = frame.samples().iter().rposition(loud)? / channels;
    Some(duration_of(first, frame.sample_rate())..duration_of(last + 1, frame.sample_rate()))
}

/// White Gaussian noise at an RMS level of `level_dbfs`, mono, the same for the same seed.
pub fn white_noise(duration: Duration, rate: u32, level_dbfs: f32, seed: u64) -> AudioFrame {
    let rms = 32768.0 * 10f64.powf(f64::from(level_dbfs) / 20.0);
    let mut noise = Gaussian::new(seed);
    let samples = (0..samples_for(rate, duration))
        .map(|_| to_i16(noise.next() * rms))
        .collect();
    AudioFrame::mono(samples, rate)
}

/// `frame` with white noise added `snr_db` below its active level: the mean power of its
/// 10 ms blocks that are not digital silence (so inserted pauses do not lower the level).
/// The noise covers the whole frame, pauses included.
pub fn add_noise(frame: &AudioFrame, snr_db: f32, seed: u64) -> AudioFrame {
    let level = active_level_dbfs(frame);
    let rms = 32768.0 * 10f64.powf(f64::from(level - snr_db) / 20.0);
    let mut noise = Gaussian::new(seed);
    let samples = frame
        .samples()
        .iter()
        .map(|&s| to_i16(f64::from(s) + noise.next() * rms))
        .collect();
    AudioFrame::new(samples, frame.sample_rate(), frame.channels()).expect("same format")
}

/// RMS level in dBFS of the 10 ms blocks above -70 dBFS.
pub fn active_level_dbfs(frame: &AudioFrame) -> f32 {
    let block = samples_for(frame.sample_rate(), Duration::from_millis(10)).max(1)
        * usize::from(frame.channels());
    let (sum, count) = frame
        .samples()
        .chunks(block)
        .map(|chunk| {
            let power: f64 = chunk
                .iter()
                .map(|&s| (f64::from(s) / 32768.0).powi(2))
                .sum();
            (power, chunk.len())
        })
        .filter(|&(power, len)| power / len as f64 > 1e-7)
        .fold((0.0, 0), |(sum, count), (power, len)| {
            (sum + power, count + len)
        });
    if count == 0 {
        return -100.0;
    }
    (10.0 * (sum / count as f64).log10()) as f32
}

fn to_i16(x: f64) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

/// Standard normal numbers from splitmix64 and Box-Muller: deterministic, no crate.
struct Gaussian {
    state: u64,
    spare: Option<f64>,
}

impl Gaussian {
    fn new(seed: u64) -> Self {
        Gaussian {
            state: seed,
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits in (0, 1].
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f64 {
        if let Some(spare) = self.spare.take() {
            return spare;
        }
        let radius = (-2.0 * self.uniform().ln()).sqrt();
        let angle = 2.0 * std::f64::consts::PI * self.uniform();
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }
}

//! Calls on this machine's microphone and speaker, through the default audio host.
//!
//! [`open`] starts one capture and one playback stream, each on a thread of its own (audio
//! callbacks never touch the async runtime), and returns them as an [`AudioInput`] and an
//! [`AudioOutput`]. The speaker side queues only a few frames, so when the pipeline stops
//! sending speech the speaker goes quiet within tens of milliseconds.
//!
//! The speaker is heard by the microphone: without echo cancellation, run the pipeline
//! half-duplex (interruptions off) unless the caller wears a headset.
//!
//! ```no_run
//! # fn main() -> Result<(), bella_vista::io::local::LocalAudioError> {
//! for device in bella_vista::io::local::list_devices()? {
//!     println!("{device}");
//! }
//! let (microphone, speaker) = bella_vista::io::local::open(None, Some("usb"))?;
//! # Ok(()) }
//! ```
//!
//! [`AudioInput`]: crate::voice::audio_io::AudioInput
//! [`AudioOutput`]: crate::voice::audio_io::AudioOutput

mod device;
mod input;
mod output;
mod ring;
mod samples;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use cpal::traits::{DeviceTrait, HostTrait};

pub use input::LocalInput;
pub use output::LocalOutput;

/// Which way audio flows through a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Capture: a microphone.
    Input,
    /// Playback: a speaker or headphones.
    Output,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// Why local audio could not be listed or opened. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalAudioError {
    /// No device matches the request, or there is no default device.
    #[error("{}", no_device_message(*.direction, .requested.as_deref(), .available))]
    NoDevice {
        /// The direction asked for.
        direction: Direction,
        /// The name asked for; `None` for the default device.
        requested: Option<String>,
        /// The names of the devices of that direction (without repeats).
        available: Vec<String>,
    },
    /// The audio host could not list its devices.
    #[error("could not list audio devices: {message}")]
    Devices {
        /// What the host said.
        message: String,
    },
    /// The device has no usable default format.
    #[error("audio {direction} device \"{device}\" has no usable format: {message}")]
    Format {
        /// The direction asked for.
        direction: Direction,
        /// The device's name.
        device: String,
        /// What the host said.
        message: String,
    },
    /// The device's sample format is not one converted here.
    #[error("audio {direction} device \"{device}\" uses unsupported sample format {format}")]
    UnsupportedFormat {
        /// The direction asked for.
        direction: Direction,
        /// The device's name.
        device: String,
        /// The sample format.
        format: String,
    },
    /// The stream could not be built or started.
    #[error("could not start the audio {direction} stream on \"{device}\": {message}")]
    Stream {
        /// The direction asked for.
        direction: Direction,
        /// The device's name.
        device: String,
        /// What the host said.
        message: String,
    },
    /// The device thread could not start, or the device did not open in time.
    #[error("the audio {direction} thread failed: {message}")]
    Thread {
        /// The direction asked for.
        direction: Direction,
        /// What went wrong.
        message: String,
    },
}

fn no_device_message(
    direction: Direction,
    requested: Option<&str>,
    available: &[String],
) -> String {
    let what = match requested {
        Some(name) => format!("no audio {direction} device matches \"{name}\""),
        None => format!("no audio {direction} device found"),
    };
    let available = if available.is_empty() {
        "none".to_owned()
    } else {
        available.join(", ")
    };
    one_line(&format!(
        "{what} (available: {available}); use --list-devices"
    ))
}

/// `text` with every run of whitespace (newlines included) made one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A device's default stream format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFormat {
    sample_rate: u32,
    channels: u16,
    sample_format: cpal::SampleFormat,
}

impl DeviceFormat {
    /// Samples per second per channel.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channel count.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// The device's native sample type.
    pub fn sample_format(&self) -> cpal::SampleFormat {
        self.sample_format
    }
}

/// One device in one direction, as listed by [`list_devices`]. A device that both records
/// and plays is listed once per direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    name: String,
    id: String,
    direction: Direction,
    format: Option<DeviceFormat>,
    is_default: bool,
}

impl DeviceInfo {
    /// The human name (not always unique: several ids may share it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's id for the device (unique; [`open`] accepts it too).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which way the audio flows.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The format [`open`] would use; `None` when the device would not say (often busy).
    pub fn default_format(&self) -> Option<DeviceFormat> {
        self.format
    }

    /// Whether this is the default device for its direction.
    pub fn is_default(&self) -> bool {
        self.is_default
    }
}

impl fmt::Display for DeviceInfo {
    /// One line: `* output  Name [id] 48000 Hz, 2 ch, f32` (`*` marks the default).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.is_default { '*' } else { ' ' };
        write!(
            f,
            "{mark} {:<7} {} [{}]",
            self.direction, self.name, self.id
        )?;
        match self.format {
            Some(format) => write!(
                f,
                " {} Hz, {} ch, {}",
                format.sample_rate, format.channels, format.sample_format
            ),
            None => f.write_str(" (format unknown)"),
        }
    }
}

/// The input and output devices of the default host, inputs first, each with its default
/// format and whether it is the default device.
///
/// Blocking (it opens each device briefly to read its format): call it outside async code
/// or through `spawn_blocking`.
pub fn list_devices() -> Result<Vec<DeviceInfo>, LocalAudioError> {
    let host = cpal::default_host();
    let mut list = Vec::new();
    for direction in [Direction::Input, Direction::Output] {
        let (devices, default) = match direction {
            Direction::Input => (host.input_devices(), host.default_input_device()),
            Direction::Output => (host.output_devices(), host.default_output_device()),
        };
        let mut devices: Vec<cpal::Device> = devices
            .map_err(|e| LocalAudioError::Devices {
                message: one_line(&e.to_string()),
            })?
            .collect();
        if let Some(default) = &default
            && !devices.contains(default)
        {
            devices.insert(0, default.clone());
        }
        list.extend(devices.iter().map(|device| {
            let Candidate { name, id } = device::candidate(device);
            let format = match direction {
                Direction::Input => device.default_input_config(),
                Direction::Output => device.default_output_config(),
            }
            .ok()
            .map(|config| DeviceFormat {
                sample_rate: config.sample_rate(),
                channels: config.channels(),
                sample_format: config.sample_format(),
            });
            DeviceInfo {
                name,
                id,
                direction,
                format,
                is_default: default.as_ref() == Some(device),
            }
        }));
    }
    Ok(list)
}

/// Opens a microphone and a speaker: each by name (exact, then case-insensitive, then a
/// case-insensitive part of the name) or by id, or the default device when `None` or blank.
///
/// Blocking until both devices play (at most a few seconds): call it outside async code
/// or through `spawn_blocking`. Frames from the input are at the device's rate and channel
/// count; the output takes mono frames at its [`sample_rate`](crate::voice::audio_io::AudioOutput::sample_rate).
pub fn open(
    input: Option<&str>,
    output: Option<&str>,
) -> Result<(LocalInput, LocalOutput), LocalAudioError> {
    let (frames_tx, frames) = tokio::sync::mpsc::channel(input::INPUT_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let builder = input::InputBuilder {
        frames: frames_tx,
        dropped: Arc::clone(&dropped),
    };
    let (thread, opened) = device::start(Direction::Input, input.map(str::to_owned), builder)?;
    let microphone = LocalInput::new(frames, dropped, thread, opened);

    let shared = output::Shared::new();
    let builder = output::OutputBuilder {
        shared: Arc::clone(&shared),
    };
    let (thread, opened) = device::start(Direction::Output, output.map(str::to_owned), builder)?;
    let speaker = LocalOutput::new(shared, thread, opened);
    Ok((microphone, speaker))
}

/// What a request for a device is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    name: String,
    id: String,
}

/// The first candidate whose name or id is `requested`, else whose name is `requested`
/// ignoring case, else whose name contains it ignoring case.
fn find_device(candidates: &[Candidate], requested: &str) -> Option<usize> {
    let lower = requested.to_lowercase();
    candidates
        .iter()
        .position(|c| c.name == requested || (!c.id.is_empty() && c.id == requested))
        .or_else(|| {
            candidates
                .iter()
                .position(|c| c.name.to_lowercase() == lower)
        })
        .or_else(|| {
            candidates
                .iter()
                .position(|c| c.name.to_lowercase().contains(&lower))
        })
}

/// The error for a request nothing matched, listing each name once.
fn no_device(
    direction: Direction,
    requested: Option<&str>,
    candidates: &[Candidate],
) -> LocalAudioError {
    let mut available: Vec<String> = Vec::new();
    for candidate in candidates {
        if !available.contains(&candidate.name) {
            available.push(candidate.name.clone());
        }
    }
    LocalAudioError::NoDevice {
        direction,
        requested: requested.map(str::to_owned),
        available,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn candidates(names: &[(&str, &str)]) -> Vec<Candidate> {
        names
            .iter()
            .map(|(name, id)| Candidate {
                name: (*name).into(),
                id: (*id).into(),
            })
            .collect()
    }

    #[test]
    fn names_match_exactly_then_ignoring_case_then_in_part() {
        let devices = candidates(&[
            ("USB Headset", "hw:CARD=1,DEV=0"),
            ("usb", "plughw:CARD=2,DEV=0"),
            ("HDA Intel PCH, ALC3246 Analog", "hw:CARD=0,DEV=0"),
        ]);
        assert_eq!(find_device(&devices, "usb"), Some(1));
        assert_eq!(find_device(&devices, "USB"), Some(1));
        assert_eq!(find_device(&devices, "usb headset"), Some(0));
        assert_eq!(find_device(&devices, "headset"), Some(0));
        assert_eq!(find_device(&devices, "alc3246"), Some(2));
        assert_eq!(find_device(&devices, "hw:CARD=0,DEV=0"), Some(2));
        assert_eq!(find_device(&devices, "bluetooth"), None);
        assert_eq!(find_device(&[], "usb"), None);
    }

    #[test]
    fn a_missing_device_is_reported_on_one_line() {
        let none = no_device(Direction::Input, None, &[]);
        assert_eq!(
            none.to_string(),
            "no audio input device found (available: none); use --list-devices"
        );
        let devices = candidates(&[("Speakers\nfront", "a"), ("HDMI", "b"), ("HDMI", "c")]);
        let missing = no_device(Direction::Output, Some("usb"), &devices);
        assert_eq!(
            missing.to_string(),
            "no audio output device matches \"usb\" (available: Speakers front, HDMI); \
             use --list-devices"
        );
        assert!(matches!(
            missing,
            LocalAudioError::NoDevice { ref available, .. } if available.len() == 2
        ));
    }

    #[test]
    fn devices_list_on_one_line_each() {
        let info = DeviceInfo {
            name: "USB Headset".into(),
            id: "hw:1".into(),
            direction: Direction::Output,
            format: Some(DeviceFormat {
                sample_rate: 48_000,
                channels: 2,
                sample_format: cpal::SampleFormat::F32,
            }),
            is_default: true,
        };
        assert_eq!(
            info.to_string(),
            "* output  USB Headset [hw:1] 48000 Hz, 2 ch, f32"
        );
    }

    /// Passes with or without a sound card: opening the defaults answers quickly, and a
    /// failure is one line.
    #[test]
    fn opening_the_default_devices_answers_promptly() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(open(None, None).map(|_| ()));
        });
        let opened = rx
            .recv_timeout(Duration::from_secs(1))
            .expect("open() answered within a second");
        if let Err(error) = opened {
            let message = error.to_string();
            assert!(!message.is_empty());
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }

    #[test]
    fn listing_devices_does_not_panic() {
        if let Err(error) = list_devices() {
            assert!(!error.to_string().contains('\n'));
        }
    }

    /// ALSA's "null" device (where present) runs the real threads and callbacks: capture
    /// yields silence in device-sized frames, playback takes every frame (the null device
    /// is not paced, so this shows nothing about timing).
    #[tokio::test]
    async fn a_null_device_runs_the_real_threads_and_callbacks() {
        use crate::voice::audio_io::{AudioInput, AudioOutput};
        let opened = tokio::task::spawn_blocking(|| open(Some("null"), Some("null")))
            .await
            .expect("open did not panic");
        let Ok((mut microphone, mut speaker)) = opened else {
            return; // No null device on this host.
        };
        let frame = tokio::time::timeout(Duration::from_secs(2), microphone.next_frame())
            .await
            .expect("capture delivers")
            .expect("a frame");
        assert_eq!(frame.sample_rate(), microphone.sample_rate());
        assert_eq!(frame.channels(), microphone.channels());
        assert_eq!(frame.level_dbfs(), -100.0);

        let rate = speaker.sample_rate();
        let started = std::time::Instant::now();
        for _ in 0..25 {
            let tone =
                crate::voice::audio::AudioFrame::mono(vec![1000; (rate / 50) as usize], rate);
            speaker.write(tone).await.expect("the speaker plays");
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(speaker.overflowed_samples(), 0);
    }
}

//! Device threads. cpal streams are not `Send` on every platform, so each stream is found,
//! built, played and dropped on a thread of its own, which keeps it alive until its
//! [`StreamThread`] handle is dropped or the device fails.

use std::sync::mpsc;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{BufferSize, FromSample, SampleFormat, SizedSample, StreamConfig, SupportedBufferSize};

use super::{Candidate, Direction, LocalAudioError, find_device, no_device, one_line};

/// How long a device may take to open before [`start`] gives up on it.
const OPEN_LIMIT: Duration = Duration::from_secs(5);

/// The callback period asked of a device, when it lets us choose.
pub(super) const DEVICE_PERIOD: Duration = Duration::from_millis(20);

/// What a device thread is told.
pub(super) enum Control {
    /// The handle was dropped: stop the stream and end the thread.
    Stop,
    /// The stream reported an error.
    Failed(cpal::Error),
}

/// Owns a device thread; dropping it stops the stream and ends the thread (without waiting
/// for it, so dropping never blocks an async task).
#[derive(Debug)]
pub(super) struct StreamThread {
    control: mpsc::Sender<Control>,
}

impl StreamThread {
    /// A handle whose thread is already gone (for tests of the parts around a stream).
    #[cfg(test)]
    pub(super) fn detached() -> Self {
        StreamThread {
            control: mpsc::channel().0,
        }
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        // The thread may already have ended after a device failure.
        let _ = self.control.send(Control::Stop);
    }
}

/// The device and format a stream was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Opened {
    /// The device's name.
    pub(super) device: String,
    /// Samples per second per channel.
    pub(super) sample_rate: u32,
    /// Interleaved channels.
    pub(super) channels: u16,
}

/// Builds one direction's stream for whatever sample type the device uses. Called on the
/// device thread, possibly twice (a second time with the device's default buffer size).
pub(super) trait StreamBuilder: Send + 'static {
    /// A stream of `T` samples on `device` with `config`, reporting errors to `on_error`.
    fn build<T>(
        &mut self,
        device: &cpal::Device,
        config: StreamConfig,
        on_error: impl FnMut(cpal::Error) + Send + 'static,
    ) -> Result<cpal::Stream, cpal::Error>
    where
        T: SizedSample + FromSample<i16> + Send + 'static,
        i16: FromSample<T>;

    /// The stream is gone for good (the device failed or the handle was dropped).
    fn stopped(&mut self) {}
}

/// Opens the `direction` device named `requested` (the default when `None`) on a new
/// thread with `builder`, and waits until it plays or fails.
pub(super) fn start<B: StreamBuilder>(
    direction: Direction,
    requested: Option<String>,
    builder: B,
) -> Result<(StreamThread, Opened), LocalAudioError> {
    let (control, inbox) = mpsc::channel();
    let (ready_tx, ready) = mpsc::sync_channel(1);
    let errors = control.clone();
    std::thread::Builder::new()
        .name(format!("audio-{direction}"))
        .spawn(move || {
            run(
                direction,
                requested.as_deref(),
                builder,
                &errors,
                &inbox,
                &ready_tx,
            )
        })
        .map_err(|e| LocalAudioError::Thread {
            direction,
            message: one_line(&e.to_string()),
        })?;
    match ready.recv_timeout(OPEN_LIMIT) {
        Ok(Ok(opened)) => Ok((StreamThread { control }, opened)),
        Ok(Err(error)) => Err(error),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(LocalAudioError::Thread {
            direction,
            message: format!("the device did not open within {OPEN_LIMIT:?}"),
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(LocalAudioError::Thread {
            direction,
            message: "the device thread ended before the device opened".into(),
        }),
    }
}

/// The device thread: open, report, then hold the stream until told to stop.
fn run<B: StreamBuilder>(
    direction: Direction,
    requested: Option<&str>,
    mut builder: B,
    errors: &mpsc::Sender<Control>,
    inbox: &mpsc::Receiver<Control>,
    ready: &mpsc::SyncSender<Result<Opened, LocalAudioError>>,
) {
    let (stream, opened) = match open(direction, requested, &mut builder, errors) {
        Ok(open) => open,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    if ready.send(Ok(opened.clone())).is_err() {
        // `start` gave up waiting; nobody will read this stream.
        builder.stopped();
        return;
    }
    tracing::info!(
        device = %opened.device,
        rate = opened.sample_rate,
        channels = opened.channels,
        "audio {direction} started"
    );
    // Every handle dropped (`Err`) means stop too.
    while let Ok(Control::Failed(error)) = inbox.recv() {
        if is_fatal(&error) {
            tracing::error!(device = %opened.device, %error, "audio {direction} stream failed");
            break;
        }
        tracing::debug!(device = %opened.device, %error, "audio {direction} stream");
    }
    drop(stream);
    builder.stopped();
}

/// Whether a stream error ends the stream (otherwise it is a glitch worth a log line).
fn is_fatal(error: &cpal::Error) -> bool {
    !matches!(
        error.kind(),
        cpal::ErrorKind::Xrun | cpal::ErrorKind::RealtimeDenied | cpal::ErrorKind::DeviceChanged
    )
}

/// Finds the device, picks its default format and plays a stream on it.
fn open<B: StreamBuilder>(
    direction: Direction,
    requested: Option<&str>,
    builder: &mut B,
    errors: &mpsc::Sender<Control>,
) -> Result<(cpal::Stream, Opened), LocalAudioError> {
    let host = cpal::default_host();
    let device = select(&host, direction, requested)?;
    let name = device_name(&device);
    let supported = match direction {
        Direction::Input => device.default_input_config(),
        Direction::Output => device.default_output_config(),
    }
    .map_err(|e| LocalAudioError::Format {
        direction,
        device: name.clone(),
        message: one_line(&e.to_string()),
    })?;
    let stream_error = |e: cpal::Error| LocalAudioError::Stream {
        direction,
        device: name.clone(),
        message: one_line(&e.to_string()),
    };
    let mut config = supported.config();
    config.buffer_size = buffer_size(supported.buffer_size(), config.sample_rate);
    let format = supported.sample_format();
    let stream = match build(builder, &device, config, format, errors) {
        Err(error) if config.buffer_size != BufferSize::Default => {
            tracing::debug!(%error, "audio {direction}: retrying with the default buffer size");
            config.buffer_size = BufferSize::Default;
            build(builder, &device, config, format, errors)
        }
        built => built,
    }
    .map_err(stream_error)?
    .ok_or_else(|| LocalAudioError::UnsupportedFormat {
        direction,
        device: name.clone(),
        format: format.to_string(),
    })?;
    stream.play().map_err(stream_error)?;
    let opened = Opened {
        device: name,
        sample_rate: config.sample_rate,
        channels: config.channels,
    };
    Ok((stream, opened))
}

/// Builds the stream for the device's sample type; `None` for a type not converted here.
fn build<B: StreamBuilder>(
    builder: &mut B,
    device: &cpal::Device,
    config: StreamConfig,
    format: SampleFormat,
    errors: &mpsc::Sender<Control>,
) -> Result<Option<cpal::Stream>, cpal::Error> {
    let errors = errors.clone();
    let on_error = move |error| {
        // The thread is gone only once the stream is dropped.
        let _ = errors.send(Control::Failed(error));
    };
    macro_rules! by_format {
        ($($variant:ident => $sample:ty),* $(,)?) => {
            match format {
                $(SampleFormat::$variant => builder.build::<$sample>(device, config, on_error).map(Some),)*
                _ => Ok(None),
            }
        };
    }
    by_format!(
        I8 => i8, I16 => i16, I24 => cpal::I24, I32 => i32, I64 => i64,
        U8 => u8, U16 => u16, U24 => cpal::U24, U32 => u32, U64 => u64,
        F32 => f32, F64 => f64,
    )
}

/// The device `requested` by name or id, or the default one.
fn select(
    host: &cpal::Host,
    direction: Direction,
    requested: Option<&str>,
) -> Result<cpal::Device, LocalAudioError> {
    let requested = requested.map(str::trim).filter(|r| !r.is_empty());
    let devices: Vec<cpal::Device> = match direction {
        Direction::Input => host.input_devices().map(Iterator::collect),
        Direction::Output => host.output_devices().map(Iterator::collect),
    }
    .unwrap_or_default();
    let candidates: Vec<Candidate> = devices.iter().map(candidate).collect();
    let found = match requested {
        None => match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        },
        Some(name) => find_device(&candidates, name).and_then(|i| devices.into_iter().nth(i)),
    };
    found.ok_or_else(|| no_device(direction, requested, &candidates))
}

/// A device's name and id, as matched against a request.
pub(super) fn candidate(device: &cpal::Device) -> Candidate {
    Candidate {
        name: device_name(device),
        id: device.id().map(|id| id.id().to_owned()).unwrap_or_default(),
    }
}

/// A device's human name (its `Display` errors for a vanished device, so not used here).
fn device_name(device: &cpal::Device) -> String {
    match device.description() {
        Ok(description) => description.name().to_owned(),
        Err(_) => device
            .id()
            .map_or_else(|_| "unknown device".to_owned(), |id| id.id().to_owned()),
    }
}

/// The buffer size to ask for: [`DEVICE_PERIOD`] within what the device allows.
fn buffer_size(supported: &SupportedBufferSize, sample_rate: u32) -> BufferSize {
    match *supported {
        SupportedBufferSize::Range { min, max } => {
            let wanted = crate::voice::audio::samples_for(sample_rate, DEVICE_PERIOD);
            let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
            BufferSize::Fixed(wanted.clamp(min, max.max(min)).max(1))
        }
        SupportedBufferSize::Unknown => BufferSize::Default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_size_aims_at_one_period_within_the_device_range() {
        let range = |min, max| SupportedBufferSize::Range { min, max };
        assert_eq!(
            buffer_size(&range(64, 8192), 48_000),
            BufferSize::Fixed(960)
        );
        assert_eq!(
            buffer_size(&range(2048, 8192), 48_000),
            BufferSize::Fixed(2048)
        );
        assert_eq!(buffer_size(&range(16, 256), 16_000), BufferSize::Fixed(256));
        assert_eq!(buffer_size(&range(0, 0), 48_000), BufferSize::Fixed(1));
        assert_eq!(
            buffer_size(&SupportedBufferSize::Unknown, 48_000),
            BufferSize::Default
        );
    }

    #[test]
    fn only_glitches_keep_a_stream_running() {
        assert!(!is_fatal(&cpal::ErrorKind::Xrun.into()));
        assert!(!is_fatal(&cpal::ErrorKind::DeviceChanged.into()));
        assert!(is_fatal(&cpal::ErrorKind::DeviceNotAvailable.into()));
        assert!(is_fatal(&cpal::ErrorKind::StreamInvalidated.into()));
    }
}

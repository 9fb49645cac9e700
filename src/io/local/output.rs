//! The speaker: frames from the pipeline queued into a small ring the device callback
//! drains. `write` waits while the ring is full, so the queue never holds more than a few
//! frames and an interruption is heard within tens of milliseconds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SizedSample, StreamConfig};
use tokio::sync::Notify;

use super::device::{DEVICE_PERIOD, Opened, StreamBuilder, StreamThread};
use super::ring::PlayoutRing;
use super::samples::{from_i16, remix};
use crate::voice::audio::{AudioFrame, samples_for};
use crate::voice::audio_io::{AudioClosed, AudioOutput};

/// Audio queued ahead of the device's own buffer: three 20 ms pipeline frames.
const QUEUE: Duration = Duration::from_millis(60);
/// Audio gathered before playback starts, and restarts after running dry.
const PRIME: Duration = Duration::from_millis(20);
/// How long `write` waits for room before deciding the device has stalled.
const STALL_LIMIT: Duration = Duration::from_millis(500);

/// State shared by the writer and the device callback.
#[derive(Debug)]
pub(super) struct Shared {
    ring: Mutex<PlayoutRing>,
    /// Signalled after every device read, so a waiting writer looks for room again.
    drained: Notify,
    /// Device reads so far (to tell a stalled device from a busy one).
    reads: AtomicU64,
    /// The stream is gone; writes fail.
    closed: AtomicBool,
}

impl Shared {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Shared {
            ring: Mutex::new(PlayoutRing::new(1, 0, 1)),
            drained: Notify::new(),
            reads: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// A ring for the device's format: [`QUEUE`] plus one device period of `period`
    /// frames (or [`DEVICE_PERIOD`] when unknown).
    fn reset(&self, sample_rate: u32, channels: u16, period: Option<usize>) {
        let period = period.unwrap_or_else(|| samples_for(sample_rate, DEVICE_PERIOD));
        let capacity = samples_for(sample_rate, QUEUE) + period;
        *self.ring() = PlayoutRing::new(capacity, samples_for(sample_rate, PRIME), channels);
    }

    fn ring(&self) -> MutexGuard<'_, PlayoutRing> {
        // A panic while holding the lock cannot leave the ring inconsistent.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.drained.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Agent audio to a playback device. Frames should be at [`AudioOutput::sample_rate`] (the
/// device's rate) and are converted to the device's channels and sample format. Dropping
/// it stops the stream.
#[derive(Debug)]
pub struct LocalOutput {
    shared: Arc<Shared>,
    device: String,
    sample_rate: u32,
    channels: u16,
    /// The device read count when a write last gave up waiting for room.
    stalled_at: Option<u64>,
    warned_rate: bool,
    _thread: StreamThread,
}

impl LocalOutput {
    pub(super) fn new(shared: Arc<Shared>, thread: StreamThread, opened: Opened) -> Self {
        LocalOutput {
            shared,
            device: opened.device,
            sample_rate: opened.sample_rate,
            channels: opened.channels,
            stalled_at: None,
            warned_rate: false,
            _thread: thread,
        }
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The device's channel count.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Times the device ran out of audio mid-playback and played silence.
    pub fn underruns(&self) -> u64 {
        self.shared.ring().underruns()
    }

    /// Samples dropped because the device stopped taking audio.
    pub fn overflowed_samples(&self) -> u64 {
        self.shared.ring().overflowed()
    }

    fn check_rate(&mut self, frame: &AudioFrame) {
        if frame.sample_rate() != self.sample_rate && !self.warned_rate {
            self.warned_rate = true;
            tracing::warn!(
                device = %self.device,
                expected = self.sample_rate,
                got = frame.sample_rate(),
                "frame at the wrong rate for the speaker; it will play at the wrong speed"
            );
        }
    }
}

impl AudioOutput for LocalOutput {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Queues the frame, waiting while the queue is full; fails once the device is gone.
    async fn write(&mut self, frame: AudioFrame) -> Result<(), AudioClosed> {
        self.check_rate(&frame);
        let samples = remix(frame.samples(), frame.channels(), self.channels);
        let mut rest = samples.as_slice();
        loop {
            if self.shared.is_closed() {
                return Err(AudioClosed);
            }
            let reads = self.shared.reads.load(Ordering::Acquire);
            let taken = self.shared.ring().push(rest);
            rest = &rest[taken..];
            if rest.is_empty() {
                return Ok(());
            }
            let waited = if self.stalled_at == Some(reads) {
                false
            } else {
                tokio::time::timeout(STALL_LIMIT, self.shared.drained.notified())
                    .await
                    .is_ok()
            };
            if !waited {
                // The device stopped taking audio without failing: keep the newest audio and
                // stop waiting until it reads again.
                if self.stalled_at.is_none() {
                    tracing::warn!(device = %self.device, "the speaker stopped taking audio");
                }
                self.stalled_at = Some(self.shared.reads.load(Ordering::Acquire));
                self.shared.ring().push_overwriting(rest);
                return if self.shared.is_closed() {
                    Err(AudioClosed)
                } else {
                    Ok(())
                };
            }
            self.stalled_at = None;
        }
    }
}

/// Builds playback streams that drain the shared ring.
pub(super) struct OutputBuilder {
    pub(super) shared: Arc<Shared>,
}

impl StreamBuilder for OutputBuilder {
    fn build<T>(
        &mut self,
        device: &cpal::Device,
        config: StreamConfig,
        on_error: impl FnMut(cpal::Error) + Send + 'static,
    ) -> Result<cpal::Stream, cpal::Error>
    where
        T: SizedSample + FromSample<i16> + Send + 'static,
        i16: FromSample<T>,
    {
        self.shared.reset(config.sample_rate, config.channels, None);
        let mut play = playback(Arc::clone(&self.shared));
        let stream = device.build_output_stream(
            config,
            move |out: &mut [T], _: &cpal::OutputCallbackInfo| play(out),
            on_error,
            None,
        )?;
        if let Ok(period) = stream.buffer_size() {
            let period = usize::try_from(period).unwrap_or(usize::MAX / 4);
            self.shared
                .reset(config.sample_rate, config.channels, Some(period));
        }
        Ok(stream)
    }

    fn stopped(&mut self) {
        self.shared.close();
    }
}

/// The playback callback: fills the device buffer from the ring (silence when it is dry)
/// and wakes the writer.
pub(super) fn playback<T>(shared: Arc<Shared>) -> impl FnMut(&mut [T]) + Send + 'static
where
    T: SizedSample + FromSample<i16>,
{
    let mut scratch: Vec<i16> = Vec::new();
    move |out: &mut [T]| {
        // Grows to the device's period once, then stays.
        scratch.resize(out.len(), 0);
        shared.ring().read(&mut scratch);
        for (slot, &sample) in out.iter_mut().zip(&scratch) {
            *slot = from_i16(sample);
        }
        shared.reads.fetch_add(1, Ordering::AcqRel);
        shared.drained.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(rate: u32, channels: u16) -> (LocalOutput, Arc<Shared>) {
        let shared = Shared::new();
        shared.reset(rate, channels, Some(samples_for(rate, DEVICE_PERIOD)));
        let opened = Opened {
            device: "test".into(),
            sample_rate: rate,
            channels,
        };
        let output = LocalOutput::new(Arc::clone(&shared), StreamThread::detached(), opened);
        (output, shared)
    }

    fn tone(rate: u32, value: i16) -> AudioFrame {
        AudioFrame::mono(
            vec![value; samples_for(rate, Duration::from_millis(20))],
            rate,
        )
    }

    #[tokio::test]
    async fn mono_frames_play_on_every_channel_in_the_device_format() {
        let (mut output, shared) = output(1000, 2);
        output.write(tone(1000, 16_384)).await.unwrap();
        let mut play = playback::<f32>(Arc::clone(&shared));
        let mut out = [9.0_f32; 8];
        play(&mut out);
        assert_eq!(out, [0.5; 8]);
        let mut out = [9.0_f32; 40];
        play(&mut out);
        assert_eq!(&out[..32], &[0.5; 32]);
        assert_eq!(&out[32..], &[0.0; 8], "silence after running dry");
        assert_eq!(output.underruns(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_wait_for_room_so_the_queue_stays_short() {
        let (mut output, shared) = output(1000, 1);
        // 60 ms queue + 20 ms period = 80 samples at 1 kHz: four 20-sample frames fit.
        for _ in 0..4 {
            output.write(tone(1000, 1)).await.unwrap();
        }
        let mut fifth = Box::pin(output.write(tone(1000, 2)));
        assert!(
            futures_util::poll!(&mut fifth).is_pending(),
            "a full queue makes the writer wait"
        );
        let mut play = playback::<i16>(Arc::clone(&shared));
        let mut out = [0_i16; 20];
        play(&mut out);
        assert_eq!(out, [1; 20]);
        assert!(fifth.await.is_ok());
        assert_eq!(shared.ring().len(), 80);
        assert_eq!(output.overflowed_samples(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_device_loses_the_oldest_audio_instead_of_blocking() {
        let (mut output, shared) = output(1000, 1);
        for value in 1..=4 {
            output.write(tone(1000, value)).await.unwrap();
        }
        let started = tokio::time::Instant::now();
        output.write(tone(1000, 5)).await.unwrap();
        assert_eq!(started.elapsed(), STALL_LIMIT);
        output.write(tone(1000, 6)).await.unwrap();
        assert_eq!(
            started.elapsed(),
            STALL_LIMIT,
            "no second wait while stalled"
        );
        assert_eq!(output.overflowed_samples(), 40);
        let mut out = [0_i16; 20];
        playback::<i16>(Arc::clone(&shared))(&mut out);
        assert_eq!(out, [3; 20], "the two oldest frames were dropped");
    }

    #[tokio::test]
    async fn writes_fail_once_the_device_is_gone() {
        let (mut output, shared) = output(1000, 1);
        shared.close();
        assert_eq!(output.write(tone(1000, 1)).await, Err(AudioClosed));
    }
}

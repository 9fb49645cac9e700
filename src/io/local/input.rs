//! The microphone: device callbacks turned into [`AudioFrame`]s on a bounded channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cpal::traits::DeviceTrait;
use cpal::{FromSample, SizedSample, StreamConfig};
use tokio::sync::mpsc;

use super::device::{StreamBuilder, StreamThread};
use super::samples::to_i16;
use crate::voice::audio::AudioFrame;
use crate::voice::audio_io::AudioInput;

/// Capture blocks that may wait for the pipeline before new ones are dropped (a second or
/// more at usual device periods).
pub(super) const INPUT_QUEUE: usize = 100;

/// Caller audio from a capture device: frames at the device's rate and channel count, in
/// whatever block size the device delivers. Dropping it stops the stream.
#[derive(Debug)]
pub struct LocalInput {
    frames: mpsc::Receiver<AudioFrame>,
    dropped: Arc<AtomicU64>,
    reported: u64,
    device: String,
    sample_rate: u32,
    channels: u16,
    _thread: StreamThread,
}

impl LocalInput {
    pub(super) fn new(
        frames: mpsc::Receiver<AudioFrame>,
        dropped: Arc<AtomicU64>,
        thread: StreamThread,
        opened: super::device::Opened,
    ) -> Self {
        LocalInput {
            frames,
            dropped,
            reported: 0,
            device: opened.device,
            sample_rate: opened.sample_rate,
            channels: opened.channels,
            _thread: thread,
        }
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The rate of the frames delivered.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The channel count of the frames delivered.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Capture blocks dropped so far because the pipeline fell behind.
    pub fn dropped_blocks(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AudioInput for LocalInput {
    /// The next captured block, or `None` once the device has failed.
    async fn next_frame(&mut self) -> Option<AudioFrame> {
        let frame = self.frames.recv().await;
        let dropped = self.dropped_blocks();
        if dropped > self.reported {
            tracing::warn!(
                device = %self.device,
                dropped = dropped - self.reported,
                "microphone audio dropped: the pipeline fell behind"
            );
            self.reported = dropped;
        }
        frame
    }
}

/// Builds capture streams that send each block as a frame.
pub(super) struct InputBuilder {
    pub(super) frames: mpsc::Sender<AudioFrame>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl StreamBuilder for InputBuilder {
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
        let mut capture = capture(
            config.sample_rate,
            config.channels,
            self.frames.clone(),
            Arc::clone(&self.dropped),
        );
        device.build_input_stream(
            config,
            move |data: &[T], _: &cpal::InputCallbackInfo| capture(data),
            on_error,
            None,
        )
    }
}

/// The capture callback: converts a block to a frame and queues it without ever waiting;
/// a block that does not fit (or cannot be a frame) is counted in `dropped`.
pub(super) fn capture<T>(
    sample_rate: u32,
    channels: u16,
    frames: mpsc::Sender<AudioFrame>,
    dropped: Arc<AtomicU64>,
) -> impl FnMut(&[T]) + Send + 'static
where
    T: SizedSample,
    i16: FromSample<T>,
{
    move |data: &[T]| {
        let samples = data.iter().map(|&s| to_i16(s)).collect();
        let sent = AudioFrame::new(samples, sample_rate, channels)
            .map_err(|_| ())
            .and_then(|frame| frames.try_send(frame).map_err(|_| ()));
        if sent.is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_become_frames_and_overflow_is_counted_not_awaited() {
        let (tx, rx) = mpsc::channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut callback = capture::<f32>(48_000, 2, tx, Arc::clone(&dropped));
        callback(&[0.5, -0.5, 0.0, 1.0]);
        callback(&[0.0; 6]);
        callback(&[0.0; 2]);
        callback(&[0.0; 3]);
        assert_eq!(
            dropped.load(Ordering::Relaxed),
            2,
            "one overflow, one ragged block"
        );

        let mut input = LocalInput::new(
            rx,
            dropped,
            StreamThread::detached(),
            super::super::device::Opened {
                device: "test".into(),
                sample_rate: 48_000,
                channels: 2,
            },
        );
        let first = input.next_frame().await.expect("a frame");
        assert_eq!(first.samples(), &[16_384, -16_384, 0, i16::MAX]);
        assert_eq!((first.sample_rate(), first.channels()), (48_000, 2));
        assert_eq!(input.next_frame().await.map(|f| f.samples().len()), Some(6));
        drop(callback);
        assert_eq!(input.next_frame().await, None, "the device is gone");
        assert_eq!(input.dropped_blocks(), 2);
    }
}

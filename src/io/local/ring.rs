//! The small queue between the agent's writes and the speaker's callback. It holds only a
//! few frames, so audio the agent stops sending stops playing within tens of milliseconds;
//! when it runs dry the speaker plays silence until a little audio has gathered again.

use std::collections::VecDeque;

/// Interleaved samples waiting to be played, bounded in length.
///
/// Invariants: the capacity and the priming level are whole device frames, and everything
/// pushed or read is whole frames, so channels never slip.
#[derive(Debug)]
pub(super) struct PlayoutRing {
    samples: VecDeque<i16>,
    channels: usize,
    capacity: usize,
    prime: usize,
    primed: bool,
    underruns: u64,
    overflowed: u64,
}

impl PlayoutRing {
    /// A ring of `capacity` frames of `channels` samples that starts (and, after running
    /// dry, restarts) playing once `prime` frames are queued.
    pub(super) fn new(capacity: usize, prime: usize, channels: u16) -> Self {
        let channels = usize::from(channels.max(1));
        let capacity = capacity.max(1) * channels;
        PlayoutRing {
            samples: VecDeque::with_capacity(capacity),
            channels,
            capacity,
            prime: (prime * channels).min(capacity),
            primed: false,
            underruns: 0,
            overflowed: 0,
        }
    }

    /// Samples queued.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.samples.len()
    }

    /// Queues as much of `samples` as fits, in whole frames; returns how many were taken.
    pub(super) fn push(&mut self, samples: &[i16]) -> usize {
        let room = self.capacity - self.samples.len();
        let taken = room.min(samples.len());
        let taken = taken - taken % self.channels;
        self.samples.extend(&samples[..taken]);
        taken
    }

    /// Queues all of `samples` (whole frames), dropping the oldest audio to make room.
    pub(super) fn push_overwriting(&mut self, samples: &[i16]) {
        let samples = &samples[..samples.len() - samples.len() % self.channels];
        let skipped = samples.len().saturating_sub(self.capacity);
        let samples = &samples[skipped..];
        let excess = (self.samples.len() + samples.len()).saturating_sub(self.capacity);
        self.samples.drain(..excess);
        self.samples.extend(samples);
        self.overflowed += (skipped + excess) as u64;
    }

    /// Fills `out` with queued audio and silence after it; returns how many samples were
    /// audio. Running dry mid-read counts as an underrun and waits for priming again.
    pub(super) fn read(&mut self, out: &mut [i16]) -> usize {
        if !self.primed {
            if self.samples.len() < self.prime.max(self.channels) {
                out.fill(0);
                return 0;
            }
            self.primed = true;
        }
        let played = out.len().min(self.samples.len());
        for (slot, sample) in out.iter_mut().zip(self.samples.drain(..played)) {
            *slot = sample;
        }
        out[played..].fill(0);
        if played < out.len() {
            self.underruns += 1;
            self.primed = false;
        }
        played
    }

    /// Reads that ran dry while playing.
    pub(super) fn underruns(&self) -> u64 {
        self.underruns
    }

    /// Samples dropped because the queue was full.
    pub(super) fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_ring_takes_only_what_fits_in_whole_frames() {
        let mut ring = PlayoutRing::new(3, 1, 2);
        assert_eq!(ring.push(&[1, 1, 2, 2]), 4);
        assert_eq!(ring.push(&[3, 3, 4, 4]), 2);
        assert_eq!(ring.len(), 6);
        assert_eq!(ring.push(&[5, 5]), 0);
        assert_eq!(ring.overflowed(), 0);
    }

    #[test]
    fn overwriting_drops_the_oldest_audio_and_counts_it() {
        let mut ring = PlayoutRing::new(3, 1, 1);
        ring.push(&[1, 2]);
        ring.push_overwriting(&[3, 4]);
        assert_eq!(ring.overflowed(), 1);
        let mut out = [0; 3];
        assert_eq!(ring.read(&mut out), 3);
        assert_eq!(out, [2, 3, 4]);

        ring.push_overwriting(&[5, 6, 7, 8, 9]);
        assert_eq!(ring.overflowed(), 3);
        assert_eq!(ring.read(&mut out), 3);
        assert_eq!(out, [7, 8, 9]);
    }

    #[test]
    fn an_underrun_plays_silence_and_counts_once() {
        let mut ring = PlayoutRing::new(8, 1, 1);
        ring.push(&[1, 2, 3]);
        let mut out = [9; 5];
        assert_eq!(ring.read(&mut out), 3);
        assert_eq!(out, [1, 2, 3, 0, 0]);
        assert_eq!(ring.underruns(), 1);
        assert_eq!(ring.read(&mut out), 0);
        assert_eq!(out, [0; 5]);
        assert_eq!(ring.underruns(), 1, "an idle ring is not a new underrun");
    }

    #[test]
    fn playback_waits_for_the_priming_level() {
        let mut ring = PlayoutRing::new(8, 4, 1);
        let mut out = [9; 2];
        ring.push(&[1, 2, 3]);
        assert_eq!(ring.read(&mut out), 0);
        assert_eq!(out, [0, 0]);
        ring.push(&[4]);
        assert_eq!(ring.read(&mut out), 2);
        assert_eq!(out, [1, 2]);
        assert_eq!(ring.read(&mut out), 2);
        assert_eq!(out, [3, 4]);
        assert_eq!(ring.underruns(), 0);
        assert_eq!(ring.read(&mut out), 0);
        assert_eq!(ring.underruns(), 1);
    }
}

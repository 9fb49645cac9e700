//! Retries with exponential back-off, shared by the adapters for OpenAI-compatible
//! servers: [`Backoff`] says how long to pause, [`Retries`] counts the retries of one
//! request and waits out each pause, and [`driven_stream`] turns a [`Drive`] state
//! machine (which retries until it has yielded something) into a stream.
//!
//! ```
//! use std::time::Duration;
//! use bella_vista::openai_http::retry::Backoff;
//!
//! let pauses: Vec<u128> = Backoff::new(Duration::from_millis(250), Duration::from_secs(1))
//!     .take(5)
//!     .map(|pause| pause.as_millis())
//!     .collect();
//! assert_eq!(pauses, [250, 500, 1000, 1000, 1000]);
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use tokio::time::sleep;

/// The pauses before successive retries: `initial`, doubling each time, never longer than
/// `max`. Endless; take as many as there are retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses from `initial`, doubling, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
    }

    /// The pause before the next retry.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next.min(self.max);
        self.next = self.next.saturating_mul(2);
        pause
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_pause())
    }
}

/// The retries of one request: how many were made, how many are allowed, and the
/// [`Backoff`] between them.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    made: u32,
    max: u32,
}

impl Retries {
    /// Up to `max` retries (after the first attempt), paused by `backoff`.
    pub fn new(max: u32, backoff: Backoff) -> Self {
        Self {
            backoff,
            made: 0,
            max,
        }
    }

    /// How many retries were made so far.
    pub fn made(&self) -> u32 {
        self.made
    }

    /// Allows no further retries: for a stream once an item reached its consumer, so that
    /// nothing is repeated.
    pub fn stop(&mut self) {
        self.max = self.made;
    }

    /// Whether to try again after `error`: only when it is `retryable` and retries are
    /// left. If so, logs a warning (`"{request} failed, retrying"`, such as
    /// `"transcription failed, retrying"`), counts the retry for `provider` (`llm`, `stt`,
    /// `tts`) in the metrics and waits out the pause first.
    ///
    /// Dropping the future cancels the wait.
    pub async fn back_off<E: fmt::Display>(
        &mut self,
        error: &E,
        retryable: bool,
        request: &str,
        provider: &'static str,
    ) -> bool {
        if !retryable || self.made >= self.max {
            return false;
        }
        let delay = self.backoff.next_pause();
        self.made += 1;
        tracing::warn!(
            %error,
            retry = self.made,
            max_retries = self.max,
            delay_ms = delay.as_millis() as u64,
            "{request} failed, retrying"
        );
        crate::telemetry::global().provider_retried(provider);
        sleep(delay).await;
        true
    }
}

/// A state machine that makes the items of a stream one at a time, when the consumer asks.
pub trait Drive: Send + 'static {
    /// What the stream yields.
    type Item: Send;

    /// The next item; `None` ends the stream.
    fn next(&mut self) -> impl Future<Output = Option<Self::Item>> + Send;
}

/// Where a streamed request that may be retried stands.
#[derive(Debug)]
pub enum Phase<A> {
    /// About to send the request (again, after a retryable failure).
    Opening,
    /// Reading the response of attempt `A`, whose headers arrived.
    Reading(A),
    /// The response is complete, or failed for good.
    Finished,
}

/// The stream of `driver`'s items.
///
/// Nothing is spawned: the consumer drives `driver`, and dropping the stream drops it,
/// cancelling whatever it was waiting for.
pub fn driven_stream<D: Drive>(driver: D) -> Pin<Box<dyn Stream<Item = D::Item> + Send>> {
    Box::pin(futures_util::stream::unfold(
        driver,
        |mut driver| async move { driver.next().await.map(|item| (item, driver)) },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(backoff: Backoff, count: usize) -> Vec<u128> {
        backoff.take(count).map(|pause| pause.as_millis()).collect()
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
        assert_eq!(millis(backoff, 7), [250, 500, 1000, 2000, 4000, 4000, 4000]);
        let mut long = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
        assert_eq!(long.nth(200), Some(Duration::from_secs(4)));
    }

    #[test]
    fn a_first_pause_above_the_cap_is_cut() {
        let backoff = Backoff::new(Duration::from_secs(9), Duration::from_secs(4));
        assert_eq!(millis(backoff, 2), [4000, 4000]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_limit_or_at_a_final_error() {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
        let mut retries = Retries::new(2, backoff);
        assert!(!retries.back_off(&"bad request", false, "test", "llm").await);
        let started = tokio::time::Instant::now();
        assert!(retries.back_off(&"timed out", true, "test", "llm").await);
        assert!(retries.back_off(&"timed out", true, "test", "llm").await);
        assert_eq!(started.elapsed(), Duration::from_millis(750));
        assert!(!retries.back_off(&"timed out", true, "test", "llm").await);
        assert_eq!(retries.made(), 2);
    }

    struct Countdown(u32);

    impl Drive for Countdown {
        type Item = u32;

        async fn next(&mut self) -> Option<u32> {
            self.0 = self.0.checked_sub(1)?;
            Some(self.0)
        }
    }

    #[tokio::test]
    async fn a_driven_stream_yields_until_its_driver_is_done() {
        use futures_util::StreamExt;
        let items: Vec<u32> = driven_stream(Countdown(3)).collect().await;
        assert_eq!(items, [2, 1, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_request_is_not_retried() {
        let mut retries = Retries::new(2, Backoff::new(Duration::ZERO, Duration::ZERO));
        assert!(retries.back_off(&"timed out", true, "test", "llm").await);
        retries.stop();
        assert!(!retries.back_off(&"timed out", true, "test", "llm").await);
        assert_eq!(retries.made(), 1);
    }
}

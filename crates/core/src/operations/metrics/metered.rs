//! Provider calls as data points: a wrapper around any [`Embedder`] or
//! [`ChatModel`] that records each call's provider, operation, outcome, the
//! HTTP status of a refusal (a 401 is a revoked key), tokens and cost.
//!
//! Tokens are estimated from text length ([`estimate_tokens`]): the
//! providers' own usage counts are not parsed, and the offline ones have none.

use super::point::DataPoint;
use super::MetricsSink;
use crate::providers::{
    estimate_tokens, ChatCompletion, ChatModel, ChatRequest, Embedder, ProviderError,
};
use crate::shared::storage::Clock;
use thiserror::Error;

/// A provider's price per 1,000 tokens, in billionths of a US dollar (so
/// configuration compares exactly; `0.00015` is 150,000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CostPer1k {
    nano_usd: u64,
}

/// A cost that is not a plain non-negative decimal number of dollars.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a non-negative decimal number of USD with at most 9 decimals: {0:?}")]
pub struct CostError(pub String);

impl CostPer1k {
    /// Nothing (the offline providers).
    pub const FREE: Self = Self { nano_usd: 0 };

    /// The price `usd` written as a decimal (`0.00015`, `2`, `.5`).
    ///
    /// # Errors
    /// Signs, exponents, more than 9 decimals, or anything not a number.
    pub fn parse(usd: &str) -> Result<Self, CostError> {
        let refuse = || CostError(usd.to_owned());
        let (whole, fraction) = usd.split_once('.').unwrap_or((usd, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !digits(whole)
            || !digits(fraction)
            || fraction.len() > 9
        {
            return Err(refuse());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| refuse())?
        };
        let fraction: u64 = format!("{fraction:0<9}").parse().map_err(|_| refuse())?;
        let nano_usd = whole
            .checked_mul(1_000_000_000)
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(refuse)?;
        Ok(Self { nano_usd })
    }

    /// The cost of `tokens` tokens in USD.
    #[must_use]
    pub fn usd(self, tokens: u64) -> f64 {
        tokens as f64 * self.nano_usd as f64 / 1_000.0 / 1_000_000_000.0
    }
}

/// A provider whose calls become [`DataPoint`]s.
#[derive(Debug)]
pub struct Metered<P, M, K> {
    inner: P,
    provider: &'static str,
    cost: CostPer1k,
    metrics: M,
    clock: K,
}

impl<P, M: MetricsSink, K: Clock> Metered<P, M, K> {
    /// Wraps `inner`, named `provider` (`offline`, `openai`, …) in the points.
    pub fn new(inner: P, provider: &'static str, cost: CostPer1k, metrics: M, clock: K) -> Self {
        Self {
            inner,
            provider,
            cost,
            metrics,
            clock,
        }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    fn record<T>(
        &self,
        operation: &str,
        started_ms: u64,
        result: &Result<T, ProviderError>,
        inputs: usize,
        tokens: u64,
    ) {
        let now = self.clock.now_ms();
        let refusal = match result {
            Err(ProviderError::Status { status, .. }) => Some(*status),
            _ => None,
        };
        self.metrics.record(DataPoint::provider_call(
            now,
            self.provider,
            operation,
            result.is_ok(),
            refusal,
            inputs,
            tokens,
            self.cost.usd(tokens),
            now.saturating_sub(started_ms),
        ));
    }
}

fn prompt_tokens(req: &ChatRequest) -> u64 {
    req.messages
        .iter()
        .map(|m| estimate_tokens(&m.content) as u64)
        .sum()
}

impl<E: Embedder, M: MetricsSink, K: Clock> Embedder for Metered<E, M, K> {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let started = self.clock.now_ms();
        let result = self.inner.embed(texts).await;
        let tokens = texts.iter().map(|t| estimate_tokens(t) as u64).sum();
        self.record("embed", started, &result, texts.len(), tokens);
        result
    }
}

impl<C: ChatModel, M: MetricsSink, K: Clock> ChatModel for Metered<C, M, K> {
    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        let started = self.clock.now_ms();
        let result = self.inner.complete(req).await;
        let output = result
            .as_ref()
            .map_or(0, |c| estimate_tokens(&c.text) as u64);
        self.record(
            "chat",
            started,
            &result,
            req.messages.len(),
            prompt_tokens(req) + output,
        );
        result
    }

    async fn stream(
        &self,
        req: &ChatRequest,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<ChatCompletion, ProviderError> {
        let started = self.clock.now_ms();
        // Counted as the text arrives: a stream cut short still cost what it sent.
        let mut streamed = 0usize;
        let result = {
            let mut count = |text: &str| {
                streamed += text.len();
                on_delta(text);
            };
            self.inner.stream(req, &mut count).await
        };
        let output = if streamed == 0 {
            0
        } else {
            streamed.div_ceil(crate::providers::batch::ESTIMATED_BYTES_PER_TOKEN) as u64
        };
        self.record(
            "stream",
            started,
            &result,
            req.messages.len(),
            prompt_tokens(req) + output,
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::metrics::{MetricKind, MetricsBuffer};
    use crate::providers::{ChatMessage, HashingEmbedder};
    use std::cell::Cell;

    struct Ticks(Cell<u64>);

    impl Clock for Ticks {
        fn now_ms(&self) -> u64 {
            let now = self.0.get();
            self.0.set(now + 5);
            now
        }
    }

    struct Refusing;

    impl Embedder for Refusing {
        fn model(&self) -> &str {
            "refusing"
        }
        fn dimensions(&self) -> usize {
            3
        }
        async fn embed(&self, _texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
            Err(ProviderError::Status {
                provider: "openai",
                status: 401,
                body_excerpt: "invalid api key".into(),
                retry_after: None,
            })
        }
    }

    struct Echo;

    impl ChatModel for Echo {
        fn model(&self) -> &str {
            "echo"
        }
        async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
            Ok(ChatCompletion {
                text: req.messages[0].content.clone(),
                model: "echo".into(),
            })
        }
        async fn stream(
            &self,
            req: &ChatRequest,
            on_delta: &mut dyn FnMut(&str),
        ) -> Result<ChatCompletion, ProviderError> {
            on_delta("abc");
            on_delta("def");
            self.complete(req).await
        }
    }

    #[test]
    fn costs_parse_exactly_and_refuse_what_is_not_a_price() {
        assert_eq!(CostPer1k::parse("0.00015").unwrap().nano_usd, 150_000);
        assert_eq!(CostPer1k::parse("2").unwrap().nano_usd, 2_000_000_000);
        assert_eq!(CostPer1k::parse(".5").unwrap().nano_usd, 500_000_000);
        assert_eq!(CostPer1k::parse("0").unwrap(), CostPer1k::FREE);
        for bad in ["", ".", "-1", "1e-3", "0.0000000001", "abc", "1.2.3", " 1"] {
            assert!(CostPer1k::parse(bad).is_err(), "{bad:?}");
        }
        let price = CostPer1k::parse("0.002").unwrap();
        assert!((price.usd(1_500) - 0.003).abs() < 1e-15);
        assert_eq!(CostPer1k::FREE.usd(1_000_000), 0.0);
    }

    #[test]
    fn an_embed_call_records_inputs_tokens_cost_and_duration() {
        let buffer = MetricsBuffer::default();
        let embedder = Metered::new(
            HashingEmbedder::new(8).unwrap(),
            "offline",
            CostPer1k::parse("1").unwrap(),
            &buffer,
            Ticks(Cell::new(100)),
        );
        let texts = vec!["abcdef".to_owned(), "abc".to_owned()];
        pollster::block_on(embedder.embed(&texts)).unwrap();
        let points = buffer.take();
        assert_eq!(points.len(), 1);
        let point = &points[0];
        assert_eq!(point.kind, MetricKind::Provider);
        assert_eq!(
            (
                point.name.as_str(),
                point.detail.as_str(),
                point.outcome.as_str()
            ),
            ("offline", "embed", "ok")
        );
        assert_eq!((point.items, point.tokens, point.status), (2.0, 3.0, 0));
        assert!((point.cost_usd - 0.003).abs() < 1e-12);
        assert_eq!((point.at_ms, point.duration_ms), (105, 5.0));
    }

    #[test]
    fn a_refusal_keeps_its_status() {
        let buffer = MetricsBuffer::default();
        let embedder = Metered::new(
            Refusing,
            "openai",
            CostPer1k::FREE,
            &buffer,
            Ticks(Cell::new(0)),
        );
        assert!(pollster::block_on(embedder.embed(&["x".to_owned()])).is_err());
        let point = &buffer.take()[0];
        assert_eq!((point.outcome.as_str(), point.status), ("error", 401));
    }

    #[test]
    fn chat_calls_count_prompt_and_answer_tokens() {
        let buffer = MetricsBuffer::default();
        let chat = Metered::new(
            Echo,
            "openai",
            CostPer1k::FREE,
            &buffer,
            Ticks(Cell::new(0)),
        );
        let req = ChatRequest::new(vec![ChatMessage::user("123456789")]);
        pollster::block_on(chat.complete(&req)).unwrap();
        let mut seen = String::new();
        pollster::block_on(chat.stream(&req, &mut |t| seen.push_str(t))).unwrap();
        assert_eq!(seen, "abcdef", "deltas still reach the caller");
        let points = buffer.take();
        assert_eq!(points[0].detail, "chat");
        assert_eq!(points[0].tokens, 6.0, "3 prompt + 3 answer");
        assert_eq!(points[1].detail, "stream");
        assert_eq!(points[1].tokens, 5.0, "3 prompt + 2 streamed");
    }
}

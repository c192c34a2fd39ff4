//! Splits a list of texts into embedding requests that respect a provider's limits on inputs
//! and tokens per request.
//!
//! Owns the limits and the token estimate; must never send anything. An input that cannot fit
//! any request is a typed error, not a batch of its own: the provider would reject it anyway,
//! and the fix (a smaller chunk) belongs to the chunker, not to silent truncation here.

use std::ops::Range;

/// Limits of one embedding endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most inputs in one request.
    pub max_inputs: usize,
    /// Most tokens summed over the inputs of one request.
    pub max_tokens_per_request: usize,
    /// Most tokens in one input, when the provider rejects longer ones.
    pub max_tokens_per_input: Option<usize>,
}

/// OpenAI embeddings: at most 2048 inputs per request.
/// Source: OpenAI API reference, "Create embeddings", `input` ("any array must be 2048
/// dimensions or less").
pub const OPENAI_MAX_INPUTS_PER_REQUEST: usize = 2048;
/// OpenAI embeddings: at most 300,000 tokens summed over all inputs of one request.
/// Source: OpenAI API reference, "Create embeddings", `input`.
pub const OPENAI_MAX_TOKENS_PER_REQUEST: usize = 300_000;
/// OpenAI `text-embedding-3-*`: at most 8192 tokens per input.
/// Source: OpenAI embeddings guide, model table ("max input 8192").
pub const OPENAI_MAX_TOKENS_PER_INPUT: usize = 8_192;

/// Workers AI `@cf/baai/bge-base-en-v1.5`: at most 100 texts per `AI.run` call.
/// Source: Cloudflare Workers AI model schema for bge-base-en-v1.5 (`text` array, maxItems 100).
pub const WORKERS_AI_BGE_MAX_INPUTS: usize = 100;
/// Workers AI `@cf/baai/bge-base-en-v1.5`: 512 tokens of context per input (longer inputs
/// are cut by the model, so this is not enforced: keeping chunks below it is the chunker's job).
/// Source: Cloudflare Workers AI model page ("Maximum Input Tokens 512").
pub const WORKERS_AI_BGE_MAX_TOKENS_PER_INPUT: usize = 512;
/// Workers AI `@cf/baai/bge-base-en-v1.5`: context window of one request.
/// Source: Cloudflare Workers AI model page ("Context Window 153,600 tokens").
pub const WORKERS_AI_BGE_MAX_TOKENS_PER_REQUEST: usize = 153_600;

/// Limits of OpenAI's `/v1/embeddings` for `text-embedding-3-*`.
pub const OPENAI_EMBEDDING_LIMITS: BatchLimits = BatchLimits {
    max_inputs: OPENAI_MAX_INPUTS_PER_REQUEST,
    max_tokens_per_request: OPENAI_MAX_TOKENS_PER_REQUEST,
    max_tokens_per_input: Some(OPENAI_MAX_TOKENS_PER_INPUT),
};

/// Limits of Workers AI `@cf/baai/bge-base-en-v1.5`.
pub const WORKERS_AI_BGE_LIMITS: BatchLimits = BatchLimits {
    max_inputs: WORKERS_AI_BGE_MAX_INPUTS,
    max_tokens_per_request: WORKERS_AI_BGE_MAX_TOKENS_PER_REQUEST,
    max_tokens_per_input: None,
};

/// Bytes per token assumed by [`estimate_tokens`]: English BPE averages about 4 characters
/// per token; 3 bytes over-estimates, so a planned batch is not rejected for being too large.
pub const ESTIMATED_BYTES_PER_TOKEN: usize = 3;

/// Conservative token count of `text` without a tokenizer (at least 1).
#[must_use]
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(ESTIMATED_BYTES_PER_TOKEN).max(1)
}

/// One planned request: a contiguous range of the input texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingBatch {
    /// Positions of the texts in this request.
    pub range: Range<usize>,
    /// Estimated tokens summed over them.
    pub estimated_tokens: usize,
}

/// Why texts could not be planned into batches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// One input exceeds the per-input or per-request token limit.
    #[error("input {index} is about {tokens} tokens, over the limit of {limit}")]
    InputTooLarge {
        /// Input position.
        index: usize,
        /// Estimated tokens.
        tokens: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// An input is empty; embedding APIs reject empty strings.
    #[error("input {index} is empty")]
    EmptyInput {
        /// Input position.
        index: usize,
    },
    /// The limits allow no input at all.
    #[error("batch limits allow no input: {0:?}")]
    InvalidLimits(BatchLimits),
}

/// Plans requests in input order, each within `limits.max_inputs` and
/// `limits.max_tokens_per_request` as counted by `estimate`.
///
/// # Errors
/// [`BatchError`] for an empty input, an input over a token limit, or zero limits.
pub fn plan_batches<S: AsRef<str>>(
    texts: &[S],
    limits: &BatchLimits,
    estimate: impl Fn(&str) -> usize,
) -> Result<Vec<EmbeddingBatch>, BatchError> {
    if limits.max_inputs == 0 || limits.max_tokens_per_request == 0 {
        return Err(BatchError::InvalidLimits(*limits));
    }
    let per_input = limits
        .max_tokens_per_input
        .map_or(limits.max_tokens_per_request, |l| {
            l.min(limits.max_tokens_per_request)
        });
    let mut batches = Vec::new();
    let mut start = 0;
    let mut tokens = 0;
    for (index, text) in texts.iter().enumerate() {
        let text = text.as_ref();
        if text.trim().is_empty() {
            return Err(BatchError::EmptyInput { index });
        }
        let cost = estimate(text);
        if cost > per_input {
            return Err(BatchError::InputTooLarge {
                index,
                tokens: cost,
                limit: per_input,
            });
        }
        let count = index - start;
        if count > 0
            && (count == limits.max_inputs || tokens + cost > limits.max_tokens_per_request)
        {
            batches.push(EmbeddingBatch {
                range: start..index,
                estimated_tokens: tokens,
            });
            start = index;
            tokens = 0;
        }
        tokens += cost;
    }
    if start < texts.len() {
        batches.push(EmbeddingBatch {
            range: start..texts.len(),
            estimated_tokens: tokens,
        });
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(max_inputs: usize, per_request: usize, per_input: Option<usize>) -> BatchLimits {
        BatchLimits {
            max_inputs,
            max_tokens_per_request: per_request,
            max_tokens_per_input: per_input,
        }
    }

    #[test]
    fn splits_on_input_count() {
        let texts = vec!["a"; 5];
        let plan = plan_batches(&texts, &limits(2, 100, None), |_| 1).unwrap();
        let ranges: Vec<_> = plan.iter().map(|b| b.range.clone()).collect();
        assert_eq!(ranges, [0..2, 2..4, 4..5]);
    }

    #[test]
    fn splits_on_token_budget() {
        let texts = ["aaaa", "aaaa", "aa", "aaaaaa", "a"];
        let plan = plan_batches(&texts, &limits(100, 8, None), str::len).unwrap();
        let ranges: Vec<_> = plan
            .iter()
            .map(|b| (b.range.clone(), b.estimated_tokens))
            .collect();
        assert_eq!(ranges, [(0..2, 8), (2..4, 8), (4..5, 1)]);
    }

    #[test]
    fn oversized_and_empty_inputs_are_typed_errors() {
        let too_big = plan_batches(&["ok", "toolong"], &limits(10, 100, Some(5)), str::len);
        assert_eq!(
            too_big,
            Err(BatchError::InputTooLarge {
                index: 1,
                tokens: 7,
                limit: 5
            })
        );
        let over_request = plan_batches(&["toolong"], &limits(10, 4, None), str::len);
        assert_eq!(
            over_request,
            Err(BatchError::InputTooLarge {
                index: 0,
                tokens: 7,
                limit: 4
            })
        );
        assert_eq!(
            plan_batches(&["a", " "], &limits(10, 10, None), str::len),
            Err(BatchError::EmptyInput { index: 1 })
        );
        assert!(matches!(
            plan_batches(&["a"], &limits(0, 10, None), str::len),
            Err(BatchError::InvalidLimits(_))
        ));
        assert_eq!(
            plan_batches::<&str>(&[], &OPENAI_EMBEDDING_LIMITS, estimate_tokens),
            Ok(vec![])
        );
    }

    #[test]
    fn provider_limits_plan_realistic_corpora() {
        let chunk = "word ".repeat(400); // 2000 bytes, ~667 estimated tokens
        let texts = vec![chunk; 1000];
        let openai = plan_batches(&texts, &OPENAI_EMBEDDING_LIMITS, estimate_tokens).unwrap();
        assert_eq!(
            openai.len(),
            3,
            "300k-token budget / 667 tokens per chunk = 449 per request"
        );
        let workers = plan_batches(&texts, &WORKERS_AI_BGE_LIMITS, estimate_tokens).unwrap();
        assert_eq!(workers.len(), 10);
        assert_eq!(estimate_tokens("abcdefg"), 3);
        assert_eq!(estimate_tokens(""), 1);
    }

    proptest! {
        #[test]
        fn batches_cover_inputs_in_order_within_limits(
            lens in proptest::collection::vec(1usize..50, 0..200),
            max_inputs in 1usize..20,
            per_request in 50usize..200,
        ) {
            let texts: Vec<String> = lens.iter().map(|l| "x".repeat(*l)).collect();
            let lim = limits(max_inputs, per_request, None);
            let plan = plan_batches(&texts, &lim, str::len).unwrap();
            let mut next = 0;
            for batch in &plan {
                prop_assert_eq!(batch.range.start, next);
                prop_assert!(!batch.range.is_empty());
                prop_assert!(batch.range.len() <= max_inputs);
                let sum: usize = texts[batch.range.clone()].iter().map(String::len).sum();
                prop_assert_eq!(sum, batch.estimated_tokens);
                prop_assert!(sum <= per_request);
                next = batch.range.end;
            }
            prop_assert_eq!(next, texts.len());
        }
    }
}

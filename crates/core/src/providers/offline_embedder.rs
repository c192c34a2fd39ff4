//! The offline embedder: deterministic feature hashing of normalised words (and character
//! trigrams) into a fixed dimension, so the service runs with no provider key at all.
//!
//! Owns the tokenisation and hashing, which must give the same vector on every platform
//! (FNV-1a, never std's randomly keyed hasher). Must never claim semantic quality: it matches
//! shared words and word pieces, not meaning.

use super::error::ProviderError;
use super::Embedder;
use crate::document::text::{is_stop_word, words};

/// Provider name in errors and logs.
pub const PROVIDER: &str = "offline-hashing";
/// Model name recorded with the vectors; bump it when the features change.
pub const MODEL: &str = "offline-hashing-v1";
/// Default dimension, matching the vector index (1536, cosine).
pub const DEFAULT_DIMENSIONS: usize = 1536;
/// Character n-gram length used for sub-word features.
pub const CHAR_NGRAM: usize = 3;
/// Weight of one character n-gram relative to a whole word.
pub const CHAR_NGRAM_WEIGHT: f32 = 0.25;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes` after a one-byte namespace (so words and n-grams never collide by design).
fn fnv1a(namespace: u8, bytes: &[u8]) -> u64 {
    std::iter::once(namespace)
        .chain(bytes.iter().copied())
        .fold(FNV_OFFSET, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
        })
}

/// Crude English stemming: drops a plural `s` (not `ss`, `us`, `is`) from words longer than 3.
#[must_use]
pub fn stem(word: &str) -> &str {
    let plural = word.len() > 3
        && word.ends_with('s')
        && !(word.ends_with("ss") || word.ends_with("us") || word.ends_with("is"));
    if plural {
        &word[..word.len() - 1]
    } else {
        word
    }
}

/// Normalised terms of `text`: lowercase Unicode words, stop words removed, stemmed.
pub fn index_terms(text: &str) -> impl Iterator<Item = String> + '_ {
    words(text)
        .filter(|w| !is_stop_word(w))
        .map(|w| stem(&w).to_owned())
}

/// Deterministic hashing embedder; same text gives the same L2-normalised vector everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingEmbedder {
    dimensions: usize,
    char_ngrams: bool,
}

impl HashingEmbedder {
    /// An embedder producing `dimensions`-long vectors, with character trigrams on.
    ///
    /// # Errors
    /// `InvalidRequest` when `dimensions` is 0.
    pub fn new(dimensions: usize) -> Result<Self, ProviderError> {
        if dimensions == 0 {
            return Err(ProviderError::InvalidRequest {
                provider: PROVIDER,
                reason: "dimensions must be > 0".into(),
            });
        }
        Ok(Self {
            dimensions,
            char_ngrams: true,
        })
    }

    /// Whole words only, no character n-grams.
    #[must_use]
    pub fn without_char_ngrams(mut self) -> Self {
        self.char_ngrams = false;
        self
    }

    fn add(&self, vector: &mut [f32], hash: u64, weight: f32) {
        // Widening u64 -> u128 keeps the modulo exact on 32-bit wasm too.
        let slot = usize::try_from(u128::from(hash) % self.dimensions as u128).unwrap_or(0);
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[slot] += sign * weight;
    }

    /// Embeds one text. Empty or stop-word-only text gets one fixed "no
    /// terms" feature rather than the zero vector, whose cosine is undefined
    /// (vector indexes reject it).
    #[must_use]
    pub fn embed_text(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.dimensions];
        let mut terms = 0usize;
        for term in index_terms(text) {
            terms += 1;
            self.add(&mut vector, fnv1a(b'w', term.as_bytes()), 1.0);
            if self.char_ngrams {
                let padded: Vec<char> = std::iter::once('<')
                    .chain(term.chars())
                    .chain(std::iter::once('>'))
                    .collect();
                for gram in padded.windows(CHAR_NGRAM) {
                    let gram: String = gram.iter().collect();
                    self.add(&mut vector, fnv1a(b'c', gram.as_bytes()), CHAR_NGRAM_WEIGHT);
                }
            }
        }
        if terms == 0 {
            self.add(&mut vector, fnv1a(b'e', b""), 1.0);
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        Self {
            dimensions: DEFAULT_DIMENSIONS,
            char_ngrams: true,
        }
    }
}

impl Embedder for HashingEmbedder {
    fn model(&self) -> &str {
        MODEL
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        Ok(texts.iter().map(|t| self.embed_text(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        // Published FNV-1a 64 test vectors, with the namespace byte as the first input byte.
        assert_eq!(fnv1a(b'a', b""), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b'f', b"oobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn vectors_are_unit_length_and_stable() {
        let e = HashingEmbedder::default();
        let v = e.embed_text("Rust services on Cloudflare Workers");
        assert_eq!(v.len(), DEFAULT_DIMENSIONS);
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-5);
        assert_eq!(
            v,
            e.embed_text("rust SERVICE, on cloudflare worker!"),
            "case, plural and punctuation are normalised"
        );
        // Pinned checksum: the same text must give the same vector on every platform.
        let checksum: f64 = v
            .iter()
            .enumerate()
            .map(|(i, x)| f64::from(*x) * (i as f64 + 1.0))
            .sum();
        assert!((checksum - CHECKSUM).abs() < 1e-3, "checksum {checksum}");
    }

    const CHECKSUM: f64 = -223.913_626_7;

    #[test]
    fn similar_texts_score_higher_than_unrelated_ones() {
        let e = HashingEmbedder::default();
        let query = e.embed_text("How does the billing platform handle payments?");
        let related = e.embed_text("The billing platform processes card payments and invoices.");
        let unrelated = e.embed_text("Our office dog enjoys long walks in the park.");
        assert!(cosine(&query, &related) > cosine(&query, &unrelated) + 0.2);
        let typo = e.embed_text("kubernets cluster");
        let right = e.embed_text("kubernetes clusters");
        assert!(
            cosine(&typo, &right) > 0.3,
            "character trigrams tolerate typos"
        );
    }

    #[test]
    fn empty_text_and_zero_dimensions() {
        let e = HashingEmbedder::new(8).unwrap().without_char_ngrams();
        let empty = e.embed_text("the and of");
        assert_eq!(empty, e.embed_text(""));
        let norm: f32 = empty.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "never the zero vector");
        assert!(HashingEmbedder::new(0).is_err());
        let batch = pollster::block_on(e.embed(&["a b".to_owned(), "c".to_owned()])).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(stem("services"), "service");
        assert_eq!(stem("class"), "class");
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("bus"), "bus");
    }
}

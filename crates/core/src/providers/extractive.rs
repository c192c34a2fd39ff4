//! The offline answerer: picks the passage sentences that best match the question's terms and
//! cites them as `[n]`, so the service answers (modestly) with no model configured.
//!
//! Owns sentence selection and answer wording; deterministic for the same input. Must never
//! invent text: every sentence in an answer is copied from a passage.

use super::error::ProviderError;
use super::offline_embedder::index_terms;
use super::{ChatCompletion, ChatModel, ChatRequest, Passage};
use std::collections::{BTreeMap, BTreeSet};

/// Provider name in errors and logs.
pub const PROVIDER: &str = "extractive";
/// Model name recorded with answers.
pub const MODEL: &str = "extractive-v1";
/// What the answerer says when no passage sentence matches the question.
pub const NO_ANSWER: &str = "I could not find anything about that in the documents.";
/// Default number of sentences in an answer.
pub const DEFAULT_MAX_SENTENCES: usize = 3;
/// A sentence is kept only if it scores at least this share of the best sentence.
pub const MIN_RELATIVE_SCORE: f64 = 0.35;
/// Weight of a question term found in the passage's title or headings, per sentence.
pub const HEADING_MATCH_WEIGHT: f64 = 0.5;

/// An extractive answer with the passages it cites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractiveAnswer {
    /// The answer text, with `[n]` citations.
    pub text: String,
    /// Passage numbers cited, ascending.
    pub cited: Vec<usize>,
}

/// Answers by quoting the best-matching sentences of the passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractiveAnswerer {
    max_sentences: usize,
}

impl Default for ExtractiveAnswerer {
    fn default() -> Self {
        Self {
            max_sentences: DEFAULT_MAX_SENTENCES,
        }
    }
}

struct Candidate<'a> {
    passage_order: usize,
    position: usize,
    number: usize,
    sentence: String,
    terms: BTreeSet<String>,
    heading_terms: &'a BTreeSet<String>,
}

/// Splits passage text into sentences. Markdown wraps a paragraph over
/// several lines, so lines are first joined into blocks (a paragraph, a list
/// item, a table row: each its own block; headings, code fences and table
/// separators dropped: a heading is a label, not a statement, and already
/// weighs in through the passage's heading path), then each block is cut
/// after `.`, `!`, `?` followed by a space.
fn sentences(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_fence = false;
    let flush = |current: &mut String, blocks: &mut Vec<String>| {
        let block = std::mem::take(current);
        if !block.trim().is_empty() {
            blocks.push(block);
        }
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            flush(&mut current, &mut blocks);
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if trimmed.is_empty() {
            flush(&mut current, &mut blocks);
            continue;
        }
        if let Some(row) = trimmed.strip_prefix('|') {
            flush(&mut current, &mut blocks);
            let cells: Vec<&str> = row
                .trim_end_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let separator = cells
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')));
            if !separator {
                blocks.push(cells.join("; "));
            }
            continue;
        }
        if trimmed.starts_with('#') {
            flush(&mut current, &mut blocks);
            continue;
        }
        let item = trimmed.starts_with("- ")
            || trimmed.starts_with("* ")
            || trimmed.starts_with("+ ")
            || trimmed
                .split_once(". ")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if item {
            flush(&mut current, &mut blocks);
        }
        let body = trimmed.trim_start_matches(['>', '-', '*', '+']).trim();
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(body);
    }
    flush(&mut current, &mut blocks);
    let mut out = Vec::new();
    for block in &blocks {
        let bytes = block.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let ends =
                matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_some_and(|n| *n == b' ');
            if ends {
                out.push(block[start..=i].trim().to_owned());
                start = i + 1;
            }
        }
        out.push(block[start..].trim().to_owned());
    }
    out.retain(|s| s.split_whitespace().count() >= 2);
    out
}

/// Puts the citation before the closing punctuation: `Built it [1].`
fn cite(sentence: &str, number: usize) -> String {
    match sentence.char_indices().last() {
        Some((i, c)) if matches!(c, '.' | '!' | '?') => format!("{} [{number}]{c}", &sentence[..i]),
        _ => format!("{sentence} [{number}]."),
    }
}

impl ExtractiveAnswerer {
    /// An answerer quoting up to `max_sentences` sentences (at least 1).
    #[must_use]
    pub fn new(max_sentences: usize) -> Self {
        Self {
            max_sentences: max_sentences.max(1),
        }
    }

    /// Answers `question` from `passages` (in rank order).
    #[must_use]
    pub fn answer(&self, question: &str, passages: &[Passage]) -> ExtractiveAnswer {
        let question_terms: BTreeSet<String> = index_terms(question).collect();
        let headings: Vec<BTreeSet<String>> = passages
            .iter()
            .map(|p| {
                let heading_text = format!("{} {}", p.title, p.heading_path.join(" "));
                index_terms(&heading_text)
                    .filter(|t| question_terms.contains(t))
                    .collect()
            })
            .collect();
        let mut candidates = Vec::new();
        for (order, passage) in passages.iter().enumerate() {
            for (position, sentence) in sentences(&passage.text).into_iter().enumerate() {
                let terms = index_terms(&sentence)
                    .filter(|t| question_terms.contains(t))
                    .collect();
                candidates.push(Candidate {
                    passage_order: order,
                    position,
                    number: passage.number,
                    sentence,
                    terms,
                    heading_terms: &headings[order],
                });
            }
        }
        // Rarer terms say more: weight each by inverse sentence frequency.
        let mut frequency: BTreeMap<&str, usize> = BTreeMap::new();
        for candidate in &candidates {
            for term in &candidate.terms {
                *frequency.entry(term.as_str()).or_default() += 1;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let total = candidates.len().max(1) as f64;
        #[allow(clippy::cast_precision_loss)]
        let idf =
            |term: &str| (1.0 + total / frequency.get(term).copied().unwrap_or(1) as f64).ln();
        let mut scored: Vec<(f64, &Candidate<'_>)> = candidates
            .iter()
            .filter(|c| !c.terms.is_empty())
            .map(|c| {
                let body: f64 = c.terms.iter().map(|t| idf(t)).sum();
                let heading: f64 = c
                    .heading_terms
                    .iter()
                    .filter(|t| !c.terms.contains(*t))
                    .map(|t| idf(t))
                    .sum();
                (body + HEADING_MATCH_WEIGHT * heading, c)
            })
            .collect();
        scored.sort_by(|(sa, a), (sb, b)| {
            sb.total_cmp(sa)
                .then(a.passage_order.cmp(&b.passage_order))
                .then(a.position.cmp(&b.position))
        });
        let best = scored.first().map_or(0.0, |(s, _)| *s);
        let mut chosen: Vec<&Candidate<'_>> = Vec::new();
        for (score, candidate) in scored {
            if chosen.len() == self.max_sentences || score < best * MIN_RELATIVE_SCORE {
                break;
            }
            if !chosen.iter().any(|c| c.sentence == candidate.sentence) {
                chosen.push(candidate);
            }
        }
        if chosen.is_empty() {
            return ExtractiveAnswer {
                text: NO_ANSWER.to_owned(),
                cited: Vec::new(),
            };
        }
        chosen.sort_by_key(|c| (c.passage_order, c.position));
        let text = chosen
            .iter()
            .map(|c| cite(&c.sentence, c.number))
            .collect::<Vec<_>>()
            .join(" ");
        let cited: BTreeSet<usize> = chosen.iter().map(|c| c.number).collect();
        ExtractiveAnswer {
            text,
            cited: cited.into_iter().collect(),
        }
    }
}

/// Splits an answer into word-sized deltas (each keeps its trailing space), for streaming.
#[must_use]
pub fn answer_deltas(text: &str) -> Vec<&str> {
    text.split_inclusive(' ').collect()
}

impl ChatModel for ExtractiveAnswerer {
    fn model(&self) -> &str {
        MODEL
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        let grounding = req.grounding.as_ref().ok_or(ProviderError::Unsupported {
            provider: PROVIDER,
            what: "answer a request without passages",
        })?;
        let answer = self.answer(&grounding.question, &grounding.passages);
        Ok(ChatCompletion {
            text: answer.text,
            model: MODEL.to_owned(),
        })
    }

    async fn stream(
        &self,
        req: &ChatRequest,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<ChatCompletion, ProviderError> {
        let completion = self.complete(req).await?;
        for delta in answer_deltas(&completion.text) {
            on_delta(delta);
        }
        Ok(completion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatMessage;

    fn passage(number: usize, title: &str, text: &str) -> Passage {
        Passage {
            number,
            title: title.into(),
            heading_path: vec![],
            text: text.into(),
        }
    }

    fn corpus() -> Vec<Passage> {
        vec![
            passage(1, "Acme", "# Acme\nAcme builds payment terminals. The billing platform was rewritten in Rust in 2022. Staff enjoy the canteen."),
            passage(2, "Globex", "- Globex runs Kubernetes clusters.\n- Its billing platform handles invoices for 40 countries.\n```\nbilling platform code\n```"),
            passage(3, "Initech", "Initech makes TPS reports. Nobody likes them."),
        ]
    }

    #[test]
    fn picks_matching_sentences_with_citations() {
        let answer = ExtractiveAnswerer::default()
            .answer("Which billing platform was rewritten in Rust?", &corpus());
        assert_eq!(
            answer.text,
            "The billing platform was rewritten in Rust in 2022 [1]. Its billing platform handles invoices for 40 countries [2]."
        );
        assert_eq!(answer.cited, [1, 2]);
        assert!(!answer.text.contains("code"), "code fences are not quoted");
    }

    #[test]
    fn sentences_span_wrapped_lines_and_tables_become_rows() {
        let text = "## Stack\n\nOrders are stored in\nPostgreSQL 15, by month. Events go\nto Kafka.\n\n\
                    - one item\n  continued here\n- two items\n\n| System | Store |\n| --- | :---: |\n| Orders | PostgreSQL |\n\n\
                    ```\nlet code = 1;\n```";
        assert_eq!(
            sentences(text),
            vec![
                "Orders are stored in PostgreSQL 15, by month.",
                "Events go to Kafka.",
                "one item continued here",
                "two items",
                "System; Store",
                "Orders; PostgreSQL",
            ]
        );
    }

    #[test]
    fn says_so_when_nothing_matches() {
        let answer =
            ExtractiveAnswerer::default().answer("What is the weather on Mars?", &corpus());
        assert_eq!(answer.text, NO_ANSWER);
        assert!(answer.cited.is_empty());
        assert_eq!(
            ExtractiveAnswerer::default().answer("billing?", &[]).text,
            NO_ANSWER
        );
    }

    #[test]
    fn respects_max_sentences_and_is_deterministic() {
        let one = ExtractiveAnswerer::new(1);
        let a = one.answer("billing platform", &corpus());
        assert_eq!(a.cited.len(), 1);
        assert_eq!(a, one.answer("billing platform", &corpus()));
        assert_eq!(a.cited, [1], "ties go to the higher-ranked passage");
    }

    #[test]
    fn title_match_lifts_sentences_of_that_document() {
        let answer = ExtractiveAnswerer::new(1).answer("What does Initech make?", &corpus());
        assert_eq!(answer.text, "Initech makes TPS reports [3].");
    }

    #[test]
    fn streams_the_same_text_in_deltas() {
        let req = ChatRequest::for_answer("Who runs Kubernetes clusters?", corpus(), &[]);
        let mut streamed = String::new();
        let mut count = 0;
        let done = pollster::block_on(ExtractiveAnswerer::default().stream(&req, &mut |d| {
            streamed.push_str(d);
            count += 1;
        }))
        .unwrap();
        assert_eq!(streamed, done.text);
        assert!(count > 3);
        assert!(done.text.contains("[2]"));
        let no_grounding = ChatRequest::new(vec![ChatMessage::user("hi")]);
        let err =
            pollster::block_on(ExtractiveAnswerer::default().complete(&no_grounding)).unwrap_err();
        assert!(matches!(err, ProviderError::Unsupported { .. }));
    }
}

//! Prompt texts sent to language models, and the functions that render them.
//!
//! Owns every word a model sees; each prompt carries a version constant that is logged with
//! the call, and the texts are pinned by hash tests so a change without a version bump fails.
//! Must never call a model or parse its output (that is `providers` and `tags`).

use std::fmt::Write as _;

/// Version of the answer prompt (system text and user-message layout); log it with each answer.
pub const ANSWER_PROMPT_VERSION: &str = "answer-v1";

/// Version of the tag-extraction prompt (system text and user-message layout).
pub const TAG_PROMPT_VERSION: &str = "tags-v1";

/// System prompt for answering from numbered context passages with `[n]` citations.
pub const ANSWER_SYSTEM_PROMPT: &str = include_str!("../../prompts/answer_system.txt");

/// System prompt asking for one JSON array of lowercase topic tags per numbered chunk.
pub const TAG_SYSTEM_PROMPT: &str = include_str!("../../prompts/tags_system.txt");

/// Number of earlier chat turns kept in the answer prompt; older turns are dropped first.
pub const MAX_HISTORY_TURNS: usize = 6;

/// One numbered context passage as shown to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextPassage<'a> {
    /// Citation number the model uses, e.g. `1` for `[1]`.
    pub number: usize,
    /// Title of the document the passage comes from.
    pub title: &'a str,
    /// Headings above the passage, outermost first.
    pub heading_path: &'a [String],
    /// Passage text.
    pub text: &'a str,
}

/// Who said an earlier chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRole {
    /// The person asking.
    User,
    /// The service's earlier answer.
    Assistant,
}

/// One earlier turn of the conversation, included for follow-up questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryTurn<'a> {
    /// Who said it.
    pub role: HistoryRole,
    /// What was said.
    pub content: &'a str,
}

/// Renders the user message for the answer prompt: history, numbered passages, then the question.
#[must_use]
pub fn render_answer_user_message(
    question: &str,
    passages: &[ContextPassage<'_>],
    history: &[HistoryTurn<'_>],
) -> String {
    let mut out = String::new();
    let recent = &history[history.len().saturating_sub(MAX_HISTORY_TURNS)..];
    if !recent.is_empty() {
        out.push_str("Conversation so far:\n");
        for turn in recent {
            let who = match turn.role {
                HistoryRole::User => "User",
                HistoryRole::Assistant => "Assistant",
            };
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{who}: {}", turn.content.trim());
        }
        out.push('\n');
    }
    out.push_str("Context passages:\n");
    if passages.is_empty() {
        out.push_str("(no passages were found)\n");
    }
    for passage in passages {
        let _ = writeln!(out, "\n[{}] {}", passage.number, passage.title.trim());
        if !passage.heading_path.is_empty() {
            let _ = writeln!(out, "Section: {}", passage.heading_path.join(" > "));
        }
        let _ = writeln!(out, "{}", passage.text.trim());
    }
    let _ = write!(out, "\nQuestion: {}", question.trim());
    out
}

/// Renders the user message for tag extraction: each chunk under its 1-based number.
#[must_use]
pub fn render_tag_user_message(chunks: &[&str]) -> String {
    let mut out = String::from("Chunks:\n");
    for (i, chunk) in chunks.iter().enumerate() {
        let _ = write!(out, "\nChunk {}:\n{}\n", i + 1, chunk.trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn sha256_hex(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// Pins a prompt: if this fails, bump the version constant and re-record the hash.
    fn assert_pinned(version: &str, text: &str, recorded: (&str, &str)) {
        assert_eq!(
            (version, sha256_hex(text).as_str()),
            recorded,
            "prompt text changed: bump its version constant and record the new hash"
        );
    }

    fn sample_answer_message() -> String {
        let headings = vec!["Experience".to_owned(), "Acme Corp".to_owned()];
        render_answer_user_message(
            "What did she build at Acme?",
            &[
                ContextPassage {
                    number: 1,
                    title: "Acme",
                    heading_path: &headings,
                    text: "Built the billing platform.",
                },
                ContextPassage {
                    number: 2,
                    title: "Notes",
                    heading_path: &[],
                    text: "Likes Rust.",
                },
            ],
            &[
                HistoryTurn {
                    role: HistoryRole::User,
                    content: "Who is she?",
                },
                HistoryTurn {
                    role: HistoryRole::Assistant,
                    content: "An engineer [1].",
                },
            ],
        )
    }

    #[test]
    fn answer_system_prompt_is_pinned_to_its_version() {
        assert_pinned(
            ANSWER_PROMPT_VERSION,
            ANSWER_SYSTEM_PROMPT,
            (
                "answer-v1",
                "64552503210783b9a394238937ab2af8bd0468b40c4187b970dc9bf6333c8885",
            ),
        );
    }

    #[test]
    fn answer_user_layout_is_pinned_to_its_version() {
        assert_pinned(
            ANSWER_PROMPT_VERSION,
            &sample_answer_message(),
            (
                "answer-v1",
                "0035ac383cc1664b69f1bf90ba503768e67261b8eae45049acf9a73455d8580c",
            ),
        );
    }

    #[test]
    fn tag_prompt_is_pinned_to_its_version() {
        assert_pinned(
            TAG_PROMPT_VERSION,
            TAG_SYSTEM_PROMPT,
            (
                "tags-v1",
                "99352f214804230e1de07c6e04501e6e02e782df0259f583cf57a2c3b9ccdb90",
            ),
        );
        assert_pinned(
            TAG_PROMPT_VERSION,
            &render_tag_user_message(&["First chunk.", "Second chunk."]),
            (
                "tags-v1",
                "3f7f0d4fdce886942b294f4f18cd8d8c24e774e0e3131d104f9bc527853c226c",
            ),
        );
    }

    #[test]
    fn answer_message_shows_titles_headings_numbers_and_history() {
        let msg = sample_answer_message();
        assert!(
            msg.contains("[1] Acme\nSection: Experience > Acme Corp\nBuilt the billing platform.")
        );
        assert!(msg.contains("[2] Notes\nLikes Rust."));
        assert!(msg.contains("User: Who is she?\nAssistant: An engineer [1]."));
        assert!(msg.ends_with("Question: What did she build at Acme?"));
        // History comes before the passages, the question last.
        assert!(msg.find("Conversation").unwrap() < msg.find("Context passages").unwrap());
    }

    #[test]
    fn answer_message_keeps_only_recent_history_and_flags_empty_context() {
        let contents: Vec<String> = (0..10).map(|i| format!("turn {i}")).collect();
        let history: Vec<HistoryTurn<'_>> = contents
            .iter()
            .map(|c| HistoryTurn {
                role: HistoryRole::User,
                content: c,
            })
            .collect();
        let msg = render_answer_user_message("q?", &[], &history);
        assert!(!msg.contains("turn 3\n"));
        assert!(msg.contains("turn 4\n") && msg.contains("turn 9\n"));
        assert!(msg.contains("(no passages were found)"));
    }

    #[test]
    fn system_prompts_state_the_rules_that_matter() {
        assert!(ANSWER_SYSTEM_PROMPT.contains("[1]"));
        assert!(ANSWER_SYSTEM_PROMPT.contains("does not contain"));
        assert!(TAG_SYSTEM_PROMPT.contains("lowercase"));
        assert!(TAG_SYSTEM_PROMPT.contains("JSON"));
        let rendered = render_tag_user_message(&["a", "b"]);
        assert!(rendered.contains("Chunk 1:\na\n") && rendered.contains("Chunk 2:\nb\n"));
    }
}

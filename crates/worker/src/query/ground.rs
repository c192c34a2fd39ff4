//! What every chat front door (`/api/chat`, the AI SDK stream, OpenAI's
//! completions, MCP's `ask_question`) does before generating: retrieval for
//! the validated chat, and the prompt quoting the passages, numbered as the
//! sources are.

use super::search::retrieve;
use crate::config::ServiceConfig;
use crate::error::ApiError;
use crate::providers::MeteredChat;
use crate::root::Root;
use portfolio_core::providers::{ChatMessage, ChatRequest};
use portfolio_core::query::{cite, ChatPlan, RetrievalTimings, Source};

/// A chat ready to generate: the retrieval's sources and the prompt that
/// quotes them, numbered alike. Shared by every chat front door (`/api/chat`,
/// the AI SDK stream, OpenAI's completions, MCP's `ask_question`).
pub struct Grounded {
    /// The configured chat provider, metered.
    pub chat: MeteredChat,
    /// The prompt: passages, history and question.
    pub request: ChatRequest,
    /// What the answer's `[n]` citations refer to.
    pub sources: Vec<Source>,
    /// How long the retrieval took.
    pub retrieval_timings: RetrievalTimings,
}

/// Retrieves the passages for a validated chat and builds its prompt.
pub async fn ground(
    plan: &ChatPlan,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Grounded, ApiError> {
    let chat = root
        .chat(config)
        .map_err(|e| ApiError::Platform(worker::Error::RustError(format!("chat provider: {e}"))))?;
    let retrieval = retrieve(root, config, &plan.search).await?;
    let history: Vec<ChatMessage> = plan
        .history
        .iter()
        .map(|t| match t.role.as_str() {
            "assistant" => ChatMessage::assistant(t.content.clone()),
            _ => ChatMessage::user(t.content.clone()),
        })
        .collect();
    let (sources, passages) = cite(&retrieval.results);
    let request = ChatRequest::for_answer(&plan.search.query, passages, &history);
    Ok(Grounded {
        chat,
        request,
        sources,
        retrieval_timings: retrieval.timings,
    })
}

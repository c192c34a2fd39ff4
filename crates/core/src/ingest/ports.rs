//! The ingest processor's front door: [`IngestPorts`], the one trait naming the stores and
//! providers a [`Processor`] works with (implemented by the Worker over its adapters and by
//! the native fakes), the choices of tagger and gated steps, and the step outcomes the drive
//! loop (`processor`) and the steps (`steps`) share.
//!
//! Owns those choices; never performs I/O itself and never decides what runs next (the
//! pipeline's state machine does).

use super::gate::{GateSettings, ProviderGate};
use super::settings::IngestSettings;
use super::store::{DocumentStore, ProcessorStorage};
use crate::index::VectorIndex;
use crate::ingest::pipeline::PipelineConfig;
use crate::operations::metrics::MetricsSink;
use crate::providers::ProviderKind;
use crate::providers::{ChatModel, Embedder};
use crate::shared::storage::{Clock, EventLog, ObjectHead, ObjectStore};

/// What one processor works with: its own storage, D1, R2, the vector index, the providers,
/// time, logs, metrics and the provider gate. One value per invocation; each accessor hands
/// out a borrow, so the driver never owns a platform service.
pub trait IngestPorts {
    /// The processor's own storage (the Durable Object's SQL).
    type Storage: ProcessorStorage;
    /// The D1 side.
    type Documents: DocumentStore;
    /// The bucket.
    type Objects: ObjectStore;
    /// The configured vector index.
    type Index: VectorIndex;
    /// The embedding provider.
    type Embedder: Embedder;
    /// The chat provider (tags come from it unless it is the offline one).
    type Chat: ChatModel;
    /// Time.
    type Clock: Clock;
    /// Log lines.
    type Log: EventLog;
    /// Data points: one per step attempt and one per finished run.
    type Metrics: MetricsSink;
    /// The provider gate shared by every document (used only for [`Gating`]'s steps).
    type Gate: ProviderGate;

    /// The processor's own storage.
    fn storage(&self) -> &Self::Storage;
    /// The D1 side.
    fn documents(&self) -> &Self::Documents;
    /// The bucket.
    fn objects(&self) -> &Self::Objects;
    /// The vector index.
    fn index(&self) -> &Self::Index;
    /// The embedder, or why it cannot be built.
    fn embedder(&self) -> Result<&Self::Embedder, &str>;
    /// Where tags come from (see [`Tagger::for_provider`]).
    fn tagger(&self) -> Tagger<'_, Self::Chat>;
    /// Time.
    fn clock(&self) -> &Self::Clock;
    /// Log lines.
    fn log(&self) -> &Self::Log;
    /// Data points.
    fn metrics(&self) -> &Self::Metrics;
    /// The provider gate.
    fn gate(&self) -> &Self::Gate;
}

/// One document's processor: the ports it works with and the settings it runs by.
#[derive(Debug)]
pub struct Processor<P> {
    /// The stores and providers.
    pub ports: P,
    /// Retries, backoff and step time limits.
    pub pipeline: PipelineConfig,
    /// Batch sizes and chunking.
    pub settings: IngestSettings,
    /// Which steps take a lease from the provider gate (`None`: no gate configured).
    pub gating: Option<Gating>,
}

/// Where tags come from.
#[derive(Debug)]
pub enum Tagger<'a, C> {
    /// Keyword tags from headings and text (the offline default).
    Keywords,
    /// The configured chat model.
    Model(&'a C),
    /// A chat model is configured but cannot be built (the reason).
    Unavailable(&'a str),
}

impl<'a, C> Tagger<'a, C> {
    /// The tagger for the configured chat provider: the offline answerer cannot tag, so it
    /// means keyword tags; any other provider tags with its model, or fails the tag step
    /// permanently when it could not be built.
    #[must_use]
    pub fn for_provider(kind: ProviderKind, chat: Result<&'a C, &'a str>) -> Self {
        match (kind, chat) {
            (ProviderKind::Offline, _) => Self::Keywords,
            (_, Ok(chat)) => Self::Model(chat),
            (_, Err(why)) => Self::Unavailable(why),
        }
    }
}

/// Which provider steps pass through the provider gate: those that call a provider over the
/// network (the offline embedder and keyword tags need no gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gating {
    /// Embedding batches take a lease.
    pub embed: bool,
    /// Tagging batches take a lease.
    pub tag: bool,
}

impl Gating {
    /// The gated steps when the gate is configured (`gate`), else `None`: a step is gated when
    /// its provider is reached over the network.
    #[must_use]
    pub fn for_providers(
        gate: Option<GateSettings>,
        embedding: ProviderKind,
        chat: ProviderKind,
    ) -> Option<Self> {
        gate.map(|_| Self {
            embed: embedding != ProviderKind::Offline,
            tag: chat != ProviderKind::Offline,
        })
    }
}

/// The outcome of a step that reads the object.
#[derive(Debug)]
pub(super) enum StepResult<T> {
    /// The step did its work.
    Done(T),
    /// The run's version is no longer in R2; this is what is there now.
    Moved(Option<ObjectHead>),
}

/// What the commit step did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Commit {
    /// The generation is live.
    Done,
    /// Its vectors are not all visible in the index yet; nothing was written.
    VectorsPending {
        /// Vectors visible now.
        visible: u32,
        /// Vectors written (one per chunk).
        expected: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATE: GateSettings = GateSettings {
        limit: 4,
        lease_ms: 60_000,
    };

    #[test]
    fn the_offline_chat_provider_means_keyword_tags() {
        let chat = "model";
        assert!(matches!(
            Tagger::for_provider(ProviderKind::Offline, Ok(&chat)),
            Tagger::Keywords
        ));
        assert!(matches!(
            Tagger::<&str>::for_provider(ProviderKind::Offline, Err("no key")),
            Tagger::Keywords
        ));
    }

    #[test]
    fn a_network_chat_provider_tags_with_its_model_or_fails_with_the_reason() {
        let chat = "model";
        for kind in [ProviderKind::OpenAi, ProviderKind::WorkersAi] {
            assert!(matches!(
                Tagger::for_provider(kind, Ok(&chat)),
                Tagger::Model(c) if *c == "model"
            ));
            assert!(matches!(
                Tagger::<&str>::for_provider(kind, Err("OPENAI_API_KEY is not set")),
                Tagger::Unavailable("OPENAI_API_KEY is not set")
            ));
        }
    }

    #[test]
    fn without_a_gate_nothing_is_gated() {
        assert_eq!(
            Gating::for_providers(None, ProviderKind::OpenAi, ProviderKind::OpenAi),
            None
        );
    }

    #[test]
    fn only_providers_reached_over_the_network_are_gated() {
        use ProviderKind::{Offline, OpenAi, WorkersAi};
        let cases = [
            (Offline, Offline, false, false),
            (OpenAi, Offline, true, false),
            (Offline, WorkersAi, false, true),
            (WorkersAi, OpenAi, true, true),
        ];
        for (embedding, chat, embed, tag) in cases {
            assert_eq!(
                Gating::for_providers(Some(GATE), embedding, chat),
                Some(Gating { embed, tag }),
                "{embedding:?} / {chat:?}"
            );
        }
    }
}

//! The processor's ports over the fakes ([`FakeIngestPorts`]), and [`NoGate`] for a processor
//! that gates no step. Test support only: never used outside `#[cfg(test)]`.

use super::{FakeBucket, FakeDatabase, FakeIndex, FakeProcessorStorage, Lines, ManualClock};
use crate::ingest::gate::{Admission, ProviderGate};
use crate::ingest::ports::{IngestPorts, Tagger};
use crate::operations::metrics::MetricsBuffer;
use crate::providers::extractive::ExtractiveAnswerer;
use crate::providers::Embedder;
use crate::shared::storage::StoreError;

/// The processor's ports over the fakes: one processor's storage, the shared D1, bucket,
/// index, clock, log and metrics, any embedder and any gate. Tags are keyword tags.
#[derive(Debug)]
pub struct FakeIngestPorts<'a, 'f, E, G> {
    pub storage: &'a FakeProcessorStorage<'f>,
    pub documents: &'a FakeDatabase<'f>,
    pub objects: &'a FakeBucket<'f>,
    pub index: &'a FakeIndex<'f>,
    pub embedder: &'a E,
    pub clock: &'a ManualClock,
    pub log: &'a Lines,
    pub metrics: &'a MetricsBuffer,
    pub gate: &'a G,
}

impl<'f, E: Embedder, G: ProviderGate> IngestPorts for FakeIngestPorts<'_, 'f, E, G> {
    type Storage = FakeProcessorStorage<'f>;
    type Documents = FakeDatabase<'f>;
    type Objects = FakeBucket<'f>;
    type Index = FakeIndex<'f>;
    type Embedder = E;
    type Chat = ExtractiveAnswerer;
    type Clock = ManualClock;
    type Log = Lines;
    type Metrics = MetricsBuffer;
    type Gate = G;

    fn storage(&self) -> &Self::Storage {
        self.storage
    }
    fn documents(&self) -> &Self::Documents {
        self.documents
    }
    fn objects(&self) -> &Self::Objects {
        self.objects
    }
    fn index(&self) -> &Self::Index {
        self.index
    }
    fn embedder(&self) -> Result<&Self::Embedder, &str> {
        Ok(self.embedder)
    }
    fn tagger(&self) -> Tagger<'_, Self::Chat> {
        Tagger::Keywords
    }
    fn clock(&self) -> &Self::Clock {
        self.clock
    }
    fn log(&self) -> &Self::Log {
        self.log
    }
    fn metrics(&self) -> &Self::Metrics {
        self.metrics
    }
    fn gate(&self) -> &Self::Gate {
        self.gate
    }
}

/// The gate of a processor that gates no step: never asked.
#[derive(Debug, Default)]
pub struct NoGate;

impl ProviderGate for NoGate {
    async fn acquire(&self, _holder: &str, _wait_ms: u64) -> Result<Admission, StoreError> {
        Err(StoreError::permanent(
            "provider gate",
            "no gate is configured",
        ))
    }

    async fn release(&self, _holder: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

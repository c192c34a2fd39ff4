//! Reads the ingestion flow's vars (`EMBED_BATCH_SIZE`, `TAG_BATCH_SIZE`,
//! `INGEST_*`, `RECONCILE_*`) into its settings types, with the ranges each
//! var accepts.
//!
//! Owns the ranges; the settings types and their defaults are the flows'.

use super::vars::Vars;
use crate::ingest::gate::{GateSettings, DEFAULT_GATE_LIMIT};
use crate::ingest::pipeline::{OverloadWait, PipelineConfig, RetryPolicy};
use crate::ingest::settings::IngestSettings;
use crate::ingest::watchdog::{WatchdogSettings, DEFAULT_WATCHDOG_AFTER_MINUTES};
use crate::reconcile::{ReconcileSettings, R2_LIST_MAX};

/// Most inputs in one embedding request (OpenAI's `/v1/embeddings` limit).
pub const MAX_EMBED_BATCH: u32 = 2_048;

/// Most chunks in one tagging prompt: beyond it the answer gets unreliable.
pub const MAX_TAG_BATCH: u32 = 100;

/// Largest `INGEST_PROVIDER_CONCURRENCY`.
pub const MAX_PROVIDER_CONCURRENCY: u32 = 256;

/// What the ingestion vars set.
pub(super) struct IngestVars {
    pub ingest: IngestSettings,
    pub pipeline: PipelineConfig,
    pub provider_gate: Option<GateSettings>,
    pub watchdog: WatchdogSettings,
}

/// `EMBED_BATCH_SIZE`, `TAG_BATCH_SIZE`, `INGEST_RETRY_BASE_MS`,
/// `INGEST_OVERLOAD_*`, `INGEST_PROVIDER_CONCURRENCY`, `INGEST_WATCHDOG_AFTER_MINUTES`.
pub(super) fn read_ingest<F: Fn(&str) -> Option<String>>(vars: &mut Vars<F>) -> IngestVars {
    let defaults = IngestSettings::default();
    let ingest = defaults
        .with_embed_batch(vars.number("EMBED_BATCH_SIZE", defaults.embed_batch, 1, MAX_EMBED_BATCH))
        .with_tag_batch(vars.number("TAG_BATCH_SIZE", defaults.tag_batch, 1, MAX_TAG_BATCH));
    let default_retry = RetryPolicy::new();
    let pipeline = vars.read(
        "INGEST_RETRY_BASE_MS",
        PipelineConfig::new(),
        "a positive whole number of ms, at most the step backoff's cap",
        |v| {
            let ms = v.parse::<u64>().ok()?;
            let retry = default_retry.with_base_delay_ms(ms).ok()?;
            Some(PipelineConfig::new().with_retry(retry))
        },
    );
    let overload_defaults = OverloadWait::default();
    let overload_base_ms = vars.number(
        "INGEST_OVERLOAD_BASE_MS",
        overload_defaults.base_ms,
        1,
        overload_defaults.max_ms,
    );
    let overload_give_up_ms = vars.number(
        "INGEST_OVERLOAD_GIVE_UP_MS",
        overload_defaults.give_up_ms,
        overload_base_ms,
        30 * 24 * 60 * 60 * 1_000,
    );
    let overload = OverloadWait {
        base_ms: overload_base_ms,
        max_ms: overload_defaults.max_ms.min(overload_give_up_ms),
        give_up_ms: overload_give_up_ms,
    };
    let pipeline = pipeline.with_overload_wait(overload).unwrap_or(pipeline);
    let gate_limit = vars.number(
        "INGEST_PROVIDER_CONCURRENCY",
        DEFAULT_GATE_LIMIT,
        0,
        MAX_PROVIDER_CONCURRENCY,
    );
    let provider_gate = (gate_limit > 0).then(|| GateSettings {
        limit: gate_limit,
        ..GateSettings::default()
    });
    let watchdog_defaults = WatchdogSettings::default();
    let watchdog = WatchdogSettings {
        after_ms: u64::from(vars.number(
            "INGEST_WATCHDOG_AFTER_MINUTES",
            DEFAULT_WATCHDOG_AFTER_MINUTES,
            1,
            24 * 60,
        )) * 60_000,
        ..watchdog_defaults
    };
    IngestVars {
        ingest,
        pipeline,
        provider_gate,
        watchdog,
    }
}

/// `RECONCILE_PAGE_SIZE`, `RECONCILE_STUCK_AFTER_HOURS`, `RECONCILE_MAX_RETRIES`.
pub(super) fn read_reconcile<F: Fn(&str) -> Option<String>>(
    vars: &mut Vars<F>,
) -> ReconcileSettings {
    let reconcile_defaults = ReconcileSettings::default();
    let hour_ms = 60 * 60 * 1_000;
    ReconcileSettings {
        page_size: vars.number(
            "RECONCILE_PAGE_SIZE",
            reconcile_defaults.page_size,
            1,
            R2_LIST_MAX,
        ),
        stuck_after_ms: u64::from(vars.number(
            "RECONCILE_STUCK_AFTER_HOURS",
            u32::try_from(reconcile_defaults.stuck_after_ms / hour_ms).unwrap_or(24),
            1,
            24 * 30,
        )) * hour_ms,
        max_failed_runs: vars.number(
            "RECONCILE_MAX_RETRIES",
            reconcile_defaults.max_failed_runs,
            0,
            100,
        ),
        ..reconcile_defaults
    }
}

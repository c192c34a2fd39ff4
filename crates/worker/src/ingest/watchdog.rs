//! The watchdog's entry point (every cron trigger): lists documents whose row
//! has not moved for `INGEST_WATCHDOG_AFTER_MINUTES` and sends each one's
//! processor a wake (`POST /wake`); `portfolio_core::ingest::watchdog` decides.
//!
//! Never fails its caller: problems are logged, the next run tries again.

use crate::bindings;
use crate::config::ServiceConfig;
use crate::ingest::post_to_processor;
use crate::store::d1_watchdog::stalled_documents;
use crate::store::{ConsoleLog, WorkerClock};
use portfolio_core::ingest::watchdog::{
    run_watchdog, WakeOutcome, WakeRequest, WatchdogPorts, WatchdogSummary,
};
use portfolio_core::shared::storage::{Clock, StoreError};
use worker::Env;

/// The stalled rows in D1 and the processors' stubs.
struct Ports<'a> {
    env: &'a Env,
}

impl WatchdogPorts for Ports<'_> {
    async fn stalled_documents(
        &self,
        before_ms: u64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let db = self
            .env
            .d1(bindings::DB)
            .map_err(|e| StoreError::permanent("D1 stalled documents", e))?;
        stalled_documents(&db, before_ms, limit).await
    }

    async fn wake(&self, key: &str) -> Result<WakeOutcome, StoreError> {
        let wake = WakeRequest {
            key: key.to_owned(),
        };
        let mut response =
            post_to_processor(self.env, key, "/wake", &wake, "processor wake").await?;
        if response.status_code() != 200 {
            let text = response.text().await.unwrap_or_default();
            return Err(StoreError::transient(
                "processor wake",
                format!("processor answered {}: {text}", response.status_code()),
            ));
        }
        response
            .json::<WakeOutcome>()
            .await
            .map_err(|e| StoreError::transient("processor wake", e))
    }
}

/// One watchdog run now.
pub async fn run(env: &Env, config: &ServiceConfig) -> WatchdogSummary {
    run_watchdog(
        &Ports { env },
        &ConsoleLog,
        &config.watchdog,
        WorkerClock.now_ms(),
    )
    .await
}

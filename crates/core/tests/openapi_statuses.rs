//! The status values `openapi.yaml` writes down (and the runbooks are checked
//! against, in tests/local/runbooks.test.mjs) are the ones the core's types
//! write: a renamed or added status fails here until the spec says so too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use portfolio_core::ingest::pipeline::PublicStatus;
use portfolio_core::reconcile::RunStatus;

fn spec_enum(schema: &str) -> Vec<String> {
    let spec: serde_norway::Value =
        serde_norway::from_str(include_str!("../../../openapi.yaml")).unwrap();
    spec["components"]["schemas"][schema]["enum"]
        .as_sequence()
        .unwrap_or_else(|| panic!("openapi.yaml has no enum for {schema}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn document_statuses_are_the_public_statuses() {
    let core: Vec<&str> = PublicStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(spec_enum("DocumentStatus"), core);
}

#[test]
fn reconcile_run_statuses_are_the_run_statuses() {
    let core: Vec<&str> = [RunStatus::Running, RunStatus::Done, RunStatus::Failed]
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(spec_enum("ReconcileRunStatus"), core);
    for status in &core {
        assert_eq!(
            RunStatus::parse(status).map(RunStatus::as_str),
            Some(*status)
        );
    }
}

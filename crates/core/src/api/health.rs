//! The `GET /api/health` verdict: from the facts the Worker gathered (which
//! bindings it sees, whether the admin token is usable, the configuration,
//! whether D1 answered, how many vectors the D1 index holds) to the report,
//! its problems and its status. Never probes anything itself.

use super::{BindingStatus, HealthReport, ProviderStatus};
use crate::admin::MIN_ADMIN_TOKEN_CHARS;
use crate::config::{ConfigError, ServiceConfig};
use crate::index::IndexKind;
use crate::index::VectorIndexError;
use crate::operations::deployment::WorkerVersion;

/// A binding the service expects: name, kind, and whether its absence
/// makes the service `degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedBinding {
    /// Binding name (`wrangler.jsonc`).
    pub name: &'static str,
    /// Its kind as reported (`d1`, `r2`, …).
    pub kind: &'static str,
    /// Whether the service is degraded without it.
    pub required: bool,
}

/// What the Worker found out, without judging it.
#[derive(Debug)]
pub struct HealthFacts<'a> {
    /// The parsed configuration or why it is invalid.
    pub config: Result<&'a ServiceConfig, &'a ConfigError>,
    /// The `ENVIRONMENT` var as set (reported while the configuration is invalid).
    pub environment_var: Option<String>,
    /// The crate version.
    pub service_version: &'a str,
    /// The Worker version answering.
    pub worker_version: WorkerVersion,
    /// Whether the configured admin token is usable.
    pub admin_token_usable: bool,
    /// Whether D1 answered a probe query.
    pub d1_answers: bool,
    /// Vectors in the D1 index, when [`counts_d1_vectors`] asked for them
    /// and the count could be read.
    pub d1_vectors: Option<u64>,
}

/// Whether the verdict needs the D1 index's vector count (it is over its
/// budget: searches lose their vector source).
#[must_use]
pub fn counts_d1_vectors(config: Result<&ServiceConfig, &ConfigError>) -> bool {
    config.is_ok_and(|c| c.vector_index == IndexKind::D1)
}

/// The report and its HTTP status (`503` while anything is wrong).
/// `present` says whether the Worker sees a binding.
#[must_use]
pub fn assess(
    facts: HealthFacts<'_>,
    expected: &[ExpectedBinding],
    present: impl Fn(&str) -> bool,
) -> (HealthReport, u16) {
    let bindings = expected
        .iter()
        .filter(|b| b.required || present(b.name))
        .map(|b| BindingStatus {
            name: b.name.to_owned(),
            kind: b.kind.to_owned(),
            present: present(b.name),
        })
        .collect();
    let mut problems = Vec::new();
    if !facts.admin_token_usable {
        problems.push(format!(
            "ADMIN_TOKEN is missing or shorter than {MIN_ADMIN_TOKEN_CHARS} characters: the admin API refuses every request"
        ));
    }
    if let Ok(config) = facts.config {
        for need in config.requirements() {
            if !present(need.name) {
                problems.push(format!(
                    "{} is missing: {} needs it",
                    need.name, need.needed_by
                ));
            }
        }
    }
    let mut report = match facts.config {
        Ok(config) => HealthReport::new(
            config.environment.clone(),
            facts.service_version,
            bindings,
            Some(ProviderStatus {
                embedding: config.embedding_provider.as_str().to_owned(),
                chat: config.chat_provider.as_str().to_owned(),
                vector_index: config.vector_index.as_str().to_owned(),
                dimensions: config.dimensions,
            }),
            problems,
        ),
        Err(error) => HealthReport::new(
            facts.environment_var.unwrap_or_default(),
            facts.service_version,
            bindings,
            None,
            error
                .problems
                .iter()
                .map(ToString::to_string)
                .chain(problems)
                .collect(),
        ),
    }
    .with_worker_version(facts.worker_version);
    if !facts.d1_answers {
        report
            .unavailable
            .push("D1 did not answer a probe query".into());
        report.status = "degraded".into();
    } else if let Some(config) = facts
        .config
        .ok()
        .filter(|c| c.vector_index == IndexKind::D1)
    {
        if let Some(vectors) = facts
            .d1_vectors
            .filter(|v| *v > config.d1_index_max_vectors)
        {
            report.unavailable.push(
                VectorIndexError::OverBudget {
                    vectors,
                    budget: config.d1_index_max_vectors,
                }
                .to_string(),
            );
            report.status = "degraded".into();
        }
    }
    let status = if report.configuration_errors.is_empty() && report.unavailable.is_empty() {
        200
    } else {
        503
    };
    (report, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: [ExpectedBinding; 2] = [
        ExpectedBinding {
            name: "DB",
            kind: "d1",
            required: true,
        },
        ExpectedBinding {
            name: "VECTORIZE",
            kind: "vectorize",
            required: false,
        },
    ];

    fn config(vars: &[(&str, &str)]) -> Result<ServiceConfig, ConfigError> {
        ServiceConfig::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn facts(config: &Result<ServiceConfig, ConfigError>) -> HealthFacts<'_> {
        HealthFacts {
            config: config.as_ref(),
            environment_var: Some("test".into()),
            service_version: "1.2.3",
            worker_version: WorkerVersion::default(),
            admin_token_usable: true,
            d1_answers: true,
            d1_vectors: None,
        }
    }

    #[test]
    fn all_present_and_answering_is_ok() {
        let config = config(&[]);
        let (report, status) = assess(facts(&config), &EXPECTED, |_| true);
        assert_eq!((report.status.as_str(), status), ("ok", 200));
        assert_eq!(report.bindings.len(), 2);
        assert!(report.configuration_errors.is_empty() && report.unavailable.is_empty());
    }

    #[test]
    fn an_absent_optional_binding_is_left_out_and_a_required_one_degrades() {
        let config = config(&[]);
        let (report, status) = assess(facts(&config), &EXPECTED, |_| false);
        assert_eq!(report.bindings.len(), 1);
        assert_eq!(report.status, "degraded");
        // A missing binding is degraded but still answers 200: it is reported, not fatal.
        assert_eq!(status, 200);
    }

    #[test]
    fn a_weak_token_and_a_silent_d1_are_problems() {
        let config = config(&[]);
        let mut f = facts(&config);
        f.admin_token_usable = false;
        f.d1_answers = false;
        let (report, status) = assess(f, &EXPECTED, |_| true);
        assert_eq!(status, 503);
        assert!(report.configuration_errors[0].starts_with("ADMIN_TOKEN is missing"));
        assert_eq!(report.unavailable, ["D1 did not answer a probe query"]);
    }

    #[test]
    fn an_invalid_configuration_names_its_problems_and_the_environment_var() {
        let config = config(&[("VECTOR_INDEX", "nope")]);
        assert!(config.is_err());
        let (report, status) = assess(facts(&config), &EXPECTED, |_| true);
        assert_eq!((report.status.as_str(), status), ("degraded", 503));
        assert_eq!(report.environment, "test");
        assert!(report.providers.is_none());
        assert!(!counts_d1_vectors(config.as_ref()));
    }

    #[test]
    fn a_d1_index_over_its_budget_degrades() {
        let config = config(&[("VECTOR_INDEX", "d1")]);
        assert!(counts_d1_vectors(config.as_ref()));
        let budget = config.as_ref().unwrap().d1_index_max_vectors;
        let mut f = facts(&config);
        f.d1_vectors = Some(budget);
        assert_eq!(assess(f, &EXPECTED, |_| true).1, 200);
        let mut f = facts(&config);
        f.d1_vectors = Some(budget + 1);
        let (report, status) = assess(f, &EXPECTED, |_| true);
        assert_eq!((report.status.as_str(), status), ("degraded", 503));
        assert_eq!(report.unavailable.len(), 1);
    }
}

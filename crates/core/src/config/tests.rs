//! The configuration's parsing: defaults, every var's refusals, and the
//! requirements each setting brings.

use super::*;
use crate::ingest::pipeline::OverloadWait;
use crate::operations::metrics::{CostPer1k, MetricsSinkKind};
use crate::query::rerank::RerankPolicy;
use crate::query::settings::{
    default_fusion, DEFAULT_FUSION_HASHING, DEFAULT_FUSION_SEMANTIC, DEFAULT_HTTP_RERANK_MODEL,
};
use std::collections::HashMap;

fn parse(pairs: &[(&str, &str)]) -> Result<ServiceConfig, ConfigError> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ServiceConfig::from_vars(|name| vars.get(name).cloned())
}

#[test]
fn unset_vars_take_the_documented_defaults() {
    let config = parse(&[]).expect("defaults");
    assert_eq!(config.environment, "local");
    assert_eq!(config.embedding_provider, ProviderKind::Offline);
    assert_eq!(config.chat_provider, ProviderKind::Offline);
    assert_eq!(config.vector_index, IndexKind::D1);
    assert_eq!(config.dimensions, 1_536);
    assert_eq!(config.dlq_name, "portfolio-ingest-dlq");
    assert_eq!(config.provider_timeout_ms, 30_000);
    assert_eq!(config.provider_retry_base_ms, 500);
    assert_eq!(config.ingest, IngestSettings::default());
    assert_eq!(config.pipeline, PipelineConfig::new());
    assert_eq!(
        config.pipeline.overload_wait(),
        &OverloadWait {
            base_ms: 5_000,
            max_ms: 300_000,
            give_up_ms: 86_400_000
        }
    );
    assert_eq!(
        config.provider_gate,
        Some(crate::ingest::gate::GateSettings {
            limit: 8,
            lease_ms: 180_000
        })
    );
    assert_eq!(config.reconcile, ReconcileSettings::default());
    assert_eq!(
        config.watchdog,
        crate::ingest::watchdog::WatchdogSettings {
            after_ms: 15 * 60_000,
            max_wakes: 25
        }
    );
    assert!(config.chat_page);
    assert_eq!(config.metrics, MetricsSettings::default());
    assert_eq!(config.alerts, AlertSettings::default());
    assert_eq!(config.metrics.sink, MetricsSinkKind::D1);
    assert_eq!(
        (config.metrics.retention_days, config.metrics.max_rows),
        (8, 200_000)
    );
    assert_eq!(config.fusion, default_fusion(ProviderKind::Offline));
    assert_eq!(config.rerank.kind, RerankerKind::None);
    assert_eq!(config.rerank.policy, RerankPolicy::default());
    assert_eq!(config.d1_index_max_vectors, 24_160);
}

#[test]
fn the_d1_index_budget_may_only_shrink() {
    let config = parse(&[("D1_INDEX_MAX_VECTORS", "500")]).unwrap();
    assert_eq!(config.d1_index_max_vectors, 500);
    let small = parse(&[("EMBEDDING_DIMENSIONS", "384")]).unwrap();
    assert_eq!(small.d1_index_max_vectors, 71_820);
    for bad in ["0", "24161", "many"] {
        let err = parse(&[("D1_INDEX_MAX_VECTORS", bad)]).unwrap_err();
        assert_eq!(err.problems[0].var, "D1_INDEX_MAX_VECTORS", "{bad}");
    }
}

#[test]
fn reranker_vars_name_the_reranker_its_candidates_and_the_default_mode() {
    let config = parse(&[
        ("RERANKER", "http"),
        ("RERANK_URL", "http://127.0.0.1:8791"),
        ("RERANK_CANDIDATES", "30"),
        ("SEARCH_MODE", "fused_reranked"),
    ])
    .unwrap();
    assert_eq!(config.rerank.kind, RerankerKind::Http);
    assert_eq!(config.rerank.model, DEFAULT_HTTP_RERANK_MODEL);
    assert_eq!(config.rerank.url.as_deref(), Some("http://127.0.0.1:8791"));
    assert_eq!(
        config.rerank.policy,
        RerankPolicy {
            candidates: 30,
            by_default: true
        }
    );
    let workers_ai = parse(&[("RERANKER", "workers-ai")]).unwrap();
    assert_eq!(workers_ai.rerank.model, "@cf/baai/bge-reranker-base");
    assert!(workers_ai
        .requirements()
        .iter()
        .any(|r| r.name == "AI" && r.needed_by == "RERANKER"));
    for (pairs, var) in [
        (vec![("RERANKER", "cohere")], "RERANKER"),
        (vec![("RERANKER", "http")], "RERANK_URL"),
        (
            vec![("RERANKER", "http"), ("RERANK_URL", "ftp://x")],
            "RERANK_URL",
        ),
        (
            vec![("RERANKER", "workers-ai"), ("RERANK_MODEL", "bge")],
            "RERANK_MODEL",
        ),
        (vec![("RERANK_CANDIDATES", "1")], "RERANK_CANDIDATES"),
        (vec![("RERANK_CANDIDATES", "51")], "RERANK_CANDIDATES"),
        (vec![("SEARCH_MODE", "fused_reranked")], "SEARCH_MODE"),
        (vec![("SEARCH_MODE", "vector")], "SEARCH_MODE"),
    ] {
        let err = parse(&pairs).unwrap_err();
        assert!(
            err.problems.iter().any(|p| p.var == var),
            "{pairs:?}: {err}"
        );
    }
}

#[test]
fn search_fusion_applies_over_the_embedder_kinds_default() {
    use crate::query::fusion::RetrievalSource;
    let hashing = FusionConfig::new()
        .with_spec(DEFAULT_FUSION_HASHING)
        .unwrap();
    let semantic = FusionConfig::new()
        .with_spec(DEFAULT_FUSION_SEMANTIC)
        .unwrap();
    assert_eq!(default_fusion(ProviderKind::Offline), hashing);
    assert_eq!(default_fusion(ProviderKind::WorkersAi), semantic);
    assert_eq!(default_fusion(ProviderKind::OpenAi), semantic);
    let config = parse(&[("SEARCH_FUSION", "keyword=0.25, k=30")]).unwrap();
    assert_eq!(config.fusion.weight(RetrievalSource::Keyword), 0.25);
    assert_eq!(config.fusion.k(), 30.0);
    assert_eq!(
        config.fusion.weight(RetrievalSource::Vector),
        hashing.weight(RetrievalSource::Vector)
    );
    let convex = parse(&[("SEARCH_FUSION", "method=convex-tmm,tag=0")]).unwrap();
    assert_eq!(
        convex.fusion.method(),
        crate::query::fusion::FusionMethod::Convex(
            crate::query::fusion::Normalisation::TheoreticalMinMax
        )
    );
    assert!(!convex.fusion.uses(RetrievalSource::Tag));
    for bad in [
        "keyword",
        "bm25=1",
        "vector=0,keyword=0,tag=0",
        "k=-1",
        " ",
        "method=borda",
    ] {
        let err = parse(&[("SEARCH_FUSION", bad)]).unwrap_err().to_string();
        assert!(err.contains("SEARCH_FUSION"), "{bad}: {err}");
    }
}

#[test]
fn alert_vars_set_the_thresholds() {
    let config = parse(&[
        ("ALERT_WINDOW_MINUTES", "10"),
        ("ALERT_ERROR_RATE_PERCENT", "2"),
        ("ALERT_MIN_REQUESTS", "5"),
        ("ALERT_P95_MS", "300"),
        ("ALERT_STUCK_MINUTES", "15"),
        ("ALERT_DEAD_LETTERS", "3"),
        ("ALERT_RECONCILE_ENQUEUED", "2"),
        ("SLO_AVAILABILITY_PERCENT", "99.5"),
    ])
    .expect("valid");
    assert_eq!(
        config.alerts,
        AlertSettings {
            window_ms: 600_000,
            error_rate_percent: 2,
            min_requests: 5,
            p95_ms: 300,
            stuck_after_ms: 900_000,
            dead_letters: 3,
            reconcile_enqueued: 2,
            availability: crate::operations::availability::Objective::new(99.5).unwrap(),
        }
    );
    for (var, value) in [
        ("ALERT_WINDOW_MINUTES", "0"),
        ("ALERT_ERROR_RATE_PERCENT", "101"),
        ("ALERT_P95_MS", "5s"),
        ("SLO_AVAILABILITY_PERCENT", "100"),
        ("SLO_AVAILABILITY_PERCENT", "99.9%"),
    ] {
        assert_eq!(parse(&[(var, value)]).unwrap_err().problems[0].var, var);
    }
}

#[test]
fn metrics_vars_choose_the_sink_retention_and_prices() {
    let config = parse(&[
        ("METRICS_SINK", "both"),
        ("METRICS_RETENTION_DAYS", "3"),
        ("METRICS_MAX_ROWS", "5000"),
        ("OPENAI_COST_PER_1K_TOKENS", "0.002"),
    ])
    .expect("valid");
    assert_eq!(config.metrics.sink, MetricsSinkKind::Both);
    assert!(config.metrics.sink.writes_d1() && config.metrics.sink.writes_analytics_engine());
    assert_eq!(config.metrics.retention_days, 3);
    assert_eq!(config.metrics.max_rows, 5_000);
    assert!((config.metrics.cost_of(ProviderKind::OpenAi).usd(1_000) - 0.002).abs() < 1e-12);
    assert_eq!(
        config.metrics.cost_of(ProviderKind::Offline),
        CostPer1k::FREE
    );
    // Unset, Workers AI costs its default chat model's input price, not nothing.
    let workers_ai = config.metrics.cost_of(ProviderKind::WorkersAi);
    assert!((workers_ai.usd(1_000_000) - 0.045).abs() < 1e-9);
    let names: Vec<_> = config.requirements().iter().map(|r| r.name).collect();
    assert_eq!(names, ["METRICS"]);
    for (var, value) in [
        ("METRICS_SINK", "clickhouse"),
        ("METRICS_RETENTION_DAYS", "0"),
        ("OPENAI_COST_PER_1K_TOKENS", "-1"),
    ] {
        assert_eq!(parse(&[(var, value)]).unwrap_err().problems[0].var, var);
    }
}

#[test]
fn reading_metrics_from_analytics_engine_needs_the_sql_api_settings() {
    let config = parse(&[("METRICS_SINK", "analytics-engine")]).expect("valid");
    assert!(config.metrics.sink.reads_analytics_engine());
    assert!(
        !config.metrics.sink.writes_d1(),
        "no D1 write on any request"
    );
    let names: Vec<_> = config.requirements().iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        [
            "METRICS",
            "ANALYTICS_ENGINE_API_TOKEN",
            "ANALYTICS_ENGINE_ACCOUNT_ID",
            "METRICS_DATASET"
        ]
    );
    assert_eq!(config.metrics.analytics_sql.account_id, None);
    assert_eq!(
        config.metrics.analytics_sql.base_url,
        "https://api.cloudflare.com/client/v4"
    );
    let set = parse(&[
        ("METRICS_SINK", "analytics-engine"),
        (
            "ANALYTICS_ENGINE_ACCOUNT_ID",
            "0123456789ABCDEF0123456789abcdef",
        ),
        ("METRICS_DATASET", "portfolio_metrics_production"),
        (
            "ANALYTICS_ENGINE_SQL_URL",
            "http://127.0.0.1:8788/client/v4",
        ),
    ])
    .expect("valid");
    assert_eq!(
        set.metrics.analytics_sql.account_id.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        set.metrics.analytics_sql.dataset.as_deref(),
        Some("portfolio_metrics_production")
    );
    // wrangler.jsonc's placeholder is no account: health names it as missing.
    let placeholder = parse(&[
        ("METRICS_SINK", "analytics-engine"),
        (
            "ANALYTICS_ENGINE_ACCOUNT_ID",
            "00000000000000000000000000000000",
        ),
    ])
    .expect("valid");
    assert_eq!(placeholder.metrics.analytics_sql.account_id, None);
    let none = parse(&[("METRICS_SINK", "none")])
        .expect("valid")
        .metrics
        .sink;
    assert!(!none.writes_d1() && !none.writes_analytics_engine() && !none.reads_analytics_engine());
    // `both` writes both and still reads the local table.
    let both = parse(&[("METRICS_SINK", "both")]).expect("valid");
    assert!(!both.metrics.sink.reads_analytics_engine());
    for (var, value) in [
        ("ANALYTICS_ENGINE_ACCOUNT_ID", "not-an-account"),
        (
            "ANALYTICS_ENGINE_ACCOUNT_ID",
            "0123456789abcdef0123456789abcdeg",
        ),
        ("METRICS_DATASET", "metrics; DROP TABLE x"),
        ("METRICS_DATASET", "portfolio-metrics"),
        ("METRICS_DATASET", "1metrics"),
        ("ANALYTICS_ENGINE_SQL_URL", "ftp://example.com"),
        (
            "ANALYTICS_ENGINE_SQL_URL",
            "https://api.cloudflare.com/client/v4/",
        ),
        ("METRICS_BUFFER_POINTS", "0"),
        ("METRICS_BUFFER_SECONDS", "301"),
    ] {
        assert_eq!(
            parse(&[(var, value)]).unwrap_err().problems[0].var,
            var,
            "{var}={value}"
        );
    }
}

#[test]
fn the_local_buffer_takes_its_size_and_age() {
    let defaults = parse(&[]).expect("valid").metrics.buffer;
    assert_eq!((defaults.max_points, defaults.max_age_ms), (100, 10_000));
    let set = parse(&[
        ("METRICS_BUFFER_POINTS", "1"),
        ("METRICS_BUFFER_SECONDS", "2"),
    ])
    .expect("valid")
    .metrics
    .buffer;
    assert_eq!((set.max_points, set.max_age_ms), (1, 2_000));
}

#[test]
fn rollout_vars_set_the_ceiling_and_the_old_endpoint() {
    let unset = parse(&[]).expect("valid");
    assert_eq!(unset.rollout.ceiling_percent, 100);
    assert_eq!(unset.rollout.legacy_url, None);
    assert_eq!(unset.rollout.first_byte_timeout_ms, 2_000);
    let config = parse(&[
        ("ROLLOUT_PERCENT", "0"),
        ("LEGACY_CHAT_URL", " https://old.example/api/chat "),
        ("LEGACY_FIRST_BYTE_TIMEOUT_MS", "750"),
    ])
    .expect("valid");
    assert_eq!(config.rollout.ceiling_percent, 0);
    assert_eq!(
        config.rollout.legacy_url.as_deref(),
        Some("https://old.example/api/chat")
    );
    assert_eq!(config.rollout.first_byte_timeout_ms, 750);
    for (var, value) in [
        ("ROLLOUT_PERCENT", "101"),
        ("ROLLOUT_PERCENT", "ten"),
        ("LEGACY_CHAT_URL", "old.example/api/chat"),
        ("LEGACY_CHAT_URL", "ftp://old.example"),
        ("LEGACY_FIRST_BYTE_TIMEOUT_MS", "99"),
        ("LEGACY_FIRST_BYTE_TIMEOUT_MS", "60001"),
        ("LEGACY_FIRST_BYTE_TIMEOUT_MS", "2s"),
        ("LEGACY_FIRST_BYTE_TIMEOUT_MS", " "),
    ] {
        assert_eq!(parse(&[(var, value)]).unwrap_err().problems[0].var, var);
    }
}

#[test]
fn set_vars_are_parsed_into_typed_values() {
    let config = parse(&[
        ("ENVIRONMENT", " staging "),
        ("EMBEDDING_PROVIDER", "workers-ai"),
        ("CHAT_PROVIDER", "openai"),
        ("VECTOR_INDEX", "vectorize"),
        ("EMBEDDING_DIMENSIONS", "768"),
        ("EMBED_BATCH_SIZE", "16"),
        ("TAG_BATCH_SIZE", "5"),
        ("INGEST_RETRY_BASE_MS", "200"),
        ("INGEST_OVERLOAD_BASE_MS", "100"),
        ("INGEST_OVERLOAD_GIVE_UP_MS", "4000"),
        ("INGEST_PROVIDER_CONCURRENCY", "0"),
        ("RECONCILE_PAGE_SIZE", "50"),
        ("RECONCILE_STUCK_AFTER_HOURS", "2"),
        ("RECONCILE_MAX_RETRIES", "0"),
        ("INGEST_WATCHDOG_AFTER_MINUTES", "1"),
        ("CHAT_PAGE", "off"),
    ])
    .expect("valid");
    assert_eq!(config.environment, "staging");
    assert_eq!(config.embedding_provider, ProviderKind::WorkersAi);
    assert_eq!(config.chat_provider, ProviderKind::OpenAi);
    assert_eq!(config.vector_index, IndexKind::Vectorize);
    assert_eq!(config.dimensions, 768);
    assert_eq!(
        (config.ingest.embed_batch, config.ingest.tag_batch),
        (16, 5)
    );
    assert_eq!(config.pipeline.retry().delay_after(2), 400);
    // The cap of the overload wait never exceeds the give-up time.
    assert_eq!(
        config.pipeline.overload_wait(),
        &OverloadWait {
            base_ms: 100,
            max_ms: 4_000,
            give_up_ms: 4_000
        }
    );
    assert_eq!(config.provider_gate, None);
    assert_eq!(config.reconcile.page_size, 50);
    assert_eq!(config.reconcile.stuck_after_ms, 2 * 60 * 60 * 1_000);
    assert_eq!(config.reconcile.max_failed_runs, 0);
    assert_eq!(config.watchdog.after_ms, 60_000);
    assert!(!config.chat_page);
}

#[test]
fn each_provider_and_index_names_what_it_needs() {
    let names = |pairs: &[(&str, &str)]| -> Vec<&'static str> {
        parse(pairs)
            .expect("valid")
            .requirements()
            .iter()
            .map(|r| r.name)
            .collect()
    };
    assert!(names(&[]).is_empty(), "the offline defaults need nothing");
    assert_eq!(
        names(&[
            ("EMBEDDING_PROVIDER", "openai"),
            ("CHAT_PROVIDER", "openai")
        ]),
        ["OPENAI_API_KEY"]
    );
    assert_eq!(
        names(&[
            ("CHAT_PROVIDER", "workers-ai"),
            ("VECTOR_INDEX", "vectorize")
        ]),
        ["AI", "VECTORIZE"]
    );
}

#[test]
fn blank_or_invalid_values_are_errors_naming_every_var() {
    let cases: &[(&str, &str)] = &[
        ("EMBEDDING_PROVIDER", "OpenAI"),
        ("CHAT_PROVIDER", " "),
        ("VECTOR_INDEX", "pinecone"),
        ("EMBEDDING_DIMENSIONS", "0"),
        ("PROVIDER_TIMEOUT_MS", "30s"),
        ("EMBED_BATCH_SIZE", "5000"),
        ("INGEST_RETRY_BASE_MS", "0"),
        ("INGEST_OVERLOAD_BASE_MS", "600000"),
        ("INGEST_PROVIDER_CONCURRENCY", "-1"),
        ("RECONCILE_PAGE_SIZE", "1001"),
        ("INGEST_WATCHDOG_AFTER_MINUTES", "0"),
        ("CHAT_PAGE", "no"),
        ("ENVIRONMENT", ""),
        ("WORKERS_AI_EMBEDDING_MODEL", "@cf/some/unknown-embedder"),
        ("WORKERS_AI_CHAT_MODEL", "gpt-4o"),
    ];
    for (var, value) in cases {
        let error = parse(&[(var, value)]).expect_err(var);
        assert_eq!(error.problems.len(), 1, "{var}");
        assert_eq!(error.problems[0].var, *var);
        assert!(error.to_string().contains(var), "{error}");
    }
    let all = parse(cases).expect_err("all");
    assert_eq!(all.problems.len(), cases.len());
    assert!(all
        .to_string()
        .contains("CHAT_PROVIDER is blank; expected offline, openai or workers-ai"));
    assert!(all
        .to_string()
        .contains("VECTOR_INDEX is \"pinecone\"; expected d1 or vectorize"));
}

#[test]
fn workers_ai_models_default_and_their_dimensions_must_match_the_index() {
    let config = parse(&[
        ("EMBEDDING_PROVIDER", "workers-ai"),
        ("EMBEDDING_DIMENSIONS", "768"),
    ])
    .expect("bge-base is 768");
    assert_eq!(
        config.workers_ai.embedding_model,
        "@cf/baai/bge-base-en-v1.5"
    );
    assert_eq!(
        config.workers_ai.chat_model,
        "@cf/meta/llama-3.1-8b-instruct-fp8-fast"
    );
    // The default 1,536 dimensions are OpenAI's, not bge-base's.
    let error = parse(&[("EMBEDDING_PROVIDER", "workers-ai")]).expect_err("1536 ≠ 768");
    assert_eq!(error.problems.len(), 1);
    assert_eq!(
        error.problems[0].to_string(),
        "EMBEDDING_DIMENSIONS is \"1536\"; expected 768, the dimensions of @cf/baai/bge-base-en-v1.5 (EMBEDDING_PROVIDER=workers-ai)"
    );
    let m3 = parse(&[
        ("EMBEDDING_PROVIDER", "workers-ai"),
        ("WORKERS_AI_EMBEDDING_MODEL", "@cf/baai/bge-m3"),
        ("EMBEDDING_DIMENSIONS", "1024"),
    ])
    .expect("bge-m3 is 1024");
    assert_eq!(m3.workers_ai.embedding_model, "@cf/baai/bge-m3");
    // Other providers do not care which Workers AI model is named.
    assert!(parse(&[("EMBEDDING_DIMENSIONS", "1536")]).is_ok());
}

use super::*;

#[test]
fn modes_fusion_and_candidates_are_request_options() {
    let keyword = plan_search(br#"{"query":"x","mode":"keyword","candidates":20}"#).unwrap();
    assert_eq!(
        keyword.mode,
        Some(SearchMode::Only(RetrievalSource::Keyword))
    );
    assert_eq!(keyword.candidates(), 20);
    let service = FusionConfig::new().with_spec("tag=0.5").unwrap();
    assert_eq!(
        keyword.fusion_config(&service),
        FusionConfig::only(RetrievalSource::Keyword)
    );
    let fused = plan_search(br#"{"query":"x","mode":"fused","fusion":{"keyword":0.2}}"#).unwrap();
    assert_eq!(fused.mode, Some(SearchMode::Fused));
    let reranked = plan_search(br#"{"query":"x","mode":"fused_reranked"}"#).unwrap();
    assert_eq!(reranked.mode, Some(SearchMode::FusedReranked));
    assert!(reranked.reranks(false));
    let unnamed = plan_search(br#"{"query":"x"}"#).unwrap();
    assert_eq!(unnamed.mode, None);
    assert!(unnamed.reranks(true) && !unnamed.reranks(false));
    assert!(
        !fused.reranks(true),
        "an explicit fused search is never reranked"
    );
    assert_eq!(fused.candidates(), 32);
    let config = fused.fusion_config(&service);
    assert_eq!(config.weight(RetrievalSource::Keyword), 0.2);
    assert_eq!(config.weight(RetrievalSource::Tag), 0.5);
    assert_eq!(
        plan_search(br#"{"query":"x"}"#)
            .unwrap()
            .fusion_config(&service),
        service
    );
    // A spec that would leave every weight 0 over this service's keeps the service's.
    let off = plan_search(br#"{"query":"x","fusion":{"vector":0,"keyword":0,"tag":0}}"#).unwrap();
    assert_eq!(off.fusion_config(&service), service);
}

#[test]
fn a_request_chooses_the_fusion_method_and_normalisation() {
    use crate::query::fusion::{FusionMethod, Normalisation};
    let rrf = FusionConfig::new().with_spec("keyword=8,k=5").unwrap();
    let convex = plan_search(br#"{"query":"x","fusion":{"method":"convex","keyword":0.5}}"#)
        .unwrap()
        .fusion_config(&rrf);
    assert_eq!(convex.method(), FusionMethod::Convex(Normalisation::MinMax));
    assert_eq!(convex.weight(RetrievalSource::Keyword), 0.5);
    let tmm = plan_search(br#"{"query":"x","fusion":{"method":"convex-tmm"}}"#)
        .unwrap()
        .fusion_config(&rrf);
    assert_eq!(
        tmm.method(),
        FusionMethod::Convex(Normalisation::TheoreticalMinMax)
    );
    // Back to ranks over a convex service.
    let back = plan_search(br#"{"query":"x","fusion":{"method":"rrf","k":60}}"#)
        .unwrap()
        .fusion_config(&tmm);
    assert_eq!(back.method(), FusionMethod::Rrf);
    assert_eq!(back.k(), 60.0);
    let err = plan_search(br#"{"query":"x","fusion":{"method":"borda"}}"#).unwrap_err();
    assert_eq!(err.code(), "bad_fusion");
    assert!(
        err.to_string().contains("rrf, convex or convex-tmm"),
        "{err}"
    );
    let err = plan_search(br#"{"query":"x","fusion":{"norm":"tmm"}}"#).unwrap_err();
    assert_eq!(err.code(), "bad_json", "unknown fields are refused");
    let exact = plan_search(br#"{"query":"x","exact_vectors":true}"#).unwrap();
    assert!(exact.exact_vectors);
    assert!(!plan_search(br#"{"query":"x"}"#).unwrap().exact_vectors);
}

#[test]
fn search_bodies_are_validated() {
    let ok =
        plan_search(br#"{"query":"  forklifts ","company":"acme","tags":["Robotics"],"top_k":5}"#)
            .unwrap();
    assert_eq!(
        ok,
        SearchPlan {
            query: "forklifts".into(),
            company: Some("acme".into()),
            tags: vec!["robotics".into()],
            top_k: 5,
            mode: None,
            fusion: None,
            candidates: None,
            exact_vectors: false,
        }
    );
    assert_eq!(
        plan_search(br#"{"query":"x"}"#).unwrap().top_k,
        DEFAULT_TOP_K
    );
    let long = format!(r#"{{"query":"{}"}}"#, "a".repeat(MAX_QUERY_CHARS + 1));
    let cases: Vec<(&[u8], &str)> = vec![
        (b"{", "bad_json"),
        (br#"{"query":"x","extra":1}"#, "bad_json"),
        (br#"{"query":5}"#, "bad_json"),
        (br#"{"query":"   "}"#, "empty_query"),
        (long.as_bytes(), "query_too_long"),
        (br#"{"query":"x","top_k":0}"#, "bad_top_k"),
        (br#"{"query":"x","top_k":51}"#, "bad_top_k"),
        (br#"{"query":"x","top_k":1.5}"#, "bad_top_k"),
        (br#"{"query":"x","top_k":-1}"#, "bad_top_k"),
        (br#"{"query":"x","top_k":1e300}"#, "bad_top_k"),
        (br#"{"query":"x","mode":"bm25"}"#, "bad_mode"),
        (br#"{"query":"x","mode":"Vector"}"#, "bad_mode"),
        (br#"{"query":"x","fusion":{"vector":-1}}"#, "bad_fusion"),
        (br#"{"query":"x","fusion":{"k":0}}"#, "bad_fusion"),
        (br#"{"query":"x","fusion":{"bm25":1}}"#, "bad_json"),
        (br#"{"query":"x","fusion":"vector=1"}"#, "bad_json"),
        (br#"{"query":"x","fusion":[null,null]}"#, "bad_json"),
        (br#"{"query":"x","fusion":[1]}"#, "bad_json"),
        (br#"{"query":"x","fusion":{"k":"5"}}"#, "bad_json"),
        (br#"{"query":"x","candidates":0}"#, "bad_candidates"),
        (br#"{"query":"x","candidates":51}"#, "bad_candidates"),
        (
            br#"{"query":"x","top_k":18446744073709551616}"#,
            "bad_top_k",
        ),
        (br#"{"query":"x","top_k":"5"}"#, "bad_json"),
        (
            br#"{"query":"x","company":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
            "bad_company",
        ),
        // 129 characters as sent: the schema's maxLength counts the tab too.
        (
            br#"{"query":"x","company":"\taaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
            "bad_company",
        ),
        (
            br#"{"query":"x","tags":["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}"#,
            "bad_tags",
        ),
        (
            br#"{"query":"x","tags":["a","b","c","d","e","f","g","h","i","j","k"]}"#,
            "bad_tags",
        ),
    ];
    // Any company name and any tag up to the lengths the schema states are
    // accepted; an entry without a letter or digit filters nothing.
    let lenient = plan_search(
        br#"{"query":"x","company":" soci\u00e9t\u00e9 g ","tags":["!!!","R\u00e9seau"]}"#,
    )
    .unwrap();
    assert_eq!(lenient.company.as_deref(), Some("société g"));
    assert_eq!(lenient.tags, ["réseau"]);
    // A whole number written as a float is an integer in JSON Schema
    // (found by schemathesis against openapi.yaml).
    assert_eq!(
        plan_search(br#"{"query":"x","top_k":27.0}"#).unwrap().top_k,
        27
    );
    for (body, code) in cases {
        assert_eq!(
            plan_search(body).unwrap_err().code(),
            code,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn chat_bodies_are_validated() {
    let plan = plan_chat(
        br#"{"question":"What?","history":[{"role":"user","content":"hi"}]}"#,
        true,
    )
    .unwrap();
    assert!(plan.stream);
    assert_eq!(plan.search.top_k, CHAT_PASSAGES);
    assert!(
        !plan_chat(br#"{"question":"What?","stream":false}"#, true)
            .unwrap()
            .stream
    );
    let many: Vec<String> = (0..21)
        .map(|_| r#"{"role":"user","content":"x"}"#.to_owned())
        .collect();
    let too_many = format!(r#"{{"question":"q","history":[{}]}}"#, many.join(","));
    assert_eq!(
        plan_chat(too_many.as_bytes(), false).unwrap_err().code(),
        "bad_history"
    );
    assert_eq!(
        plan_chat(
            br#"{"question":"q","history":[{"role":"system","content":"x"}]}"#,
            false
        )
        .unwrap_err()
        .code(),
        "bad_history"
    );
    assert_eq!(
        plan_chat(br#"{"question":""}"#, false).unwrap_err().code(),
        "empty_query"
    );
    assert_eq!(
        plan_chat(br#"{"query":"q"}"#, false).unwrap_err().code(),
        "bad_json"
    );
}

#[test]
fn a_tag_filter_asks_the_tag_source_the_fusion_left_out() {
    use crate::query::settings::TAG_FILTER_WEIGHT;
    let service = FusionConfig::new()
        .with_spec("method=convex,vector=1,keyword=1,tag=0")
        .unwrap();
    let unfiltered = plan_search(br#"{"query":"x"}"#).unwrap();
    assert!(!unfiltered
        .fusion_config(&service)
        .uses(RetrievalSource::Tag));
    let filtered = plan_search(br#"{"query":"x","tags":["robotics"]}"#).unwrap();
    let config = filtered.fusion_config(&service);
    assert_eq!(config.weight(RetrievalSource::Tag), TAG_FILTER_WEIGHT);
    assert_eq!(config.method(), service.method(), "nothing else changes");
    assert_eq!(config.weight(RetrievalSource::Keyword), 1.0);
    // A request that sets the tag weight itself keeps it, and so does a single-source mode.
    let asked_off =
        plan_search(br#"{"query":"x","tags":["robotics"],"fusion":{"tag":0}}"#).unwrap();
    assert!(!asked_off.fusion_config(&service).uses(RetrievalSource::Tag));
    let vector_only = plan_search(br#"{"query":"x","tags":["robotics"],"mode":"vector"}"#).unwrap();
    assert_eq!(
        vector_only.fusion_config(&service),
        FusionConfig::only(RetrievalSource::Vector)
    );
    // A service weight above 0 is the request's.
    let weighted = FusionConfig::new().with_spec("tag=0.5").unwrap();
    assert_eq!(filtered.fusion_config(&weighted), weighted);
}

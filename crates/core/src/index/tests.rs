use super::*;
use proptest::prelude::*;

fn meta(document_id: i64, company_id: Option<i64>) -> VectorMetadata {
    VectorMetadata {
        document_id,
        company_id,
        version: 1,
    }
}

fn record(id: &str, values: Vec<f32>, company: Option<i64>) -> VectorRecord {
    VectorRecord {
        id: id.into(),
        values,
        metadata: meta(1, company),
    }
}

fn query(vector: Vec<f32>, top_k: usize) -> VectorQuery {
    VectorQuery {
        vector,
        top_k,
        filter: None,
        return_metadata: false,
        approximate: false,
    }
}

#[test]
fn blob_round_trips_and_rejects_bad_lengths() {
    let values = vec![1.5_f32, -0.25, 0.0, f32::MIN_POSITIVE];
    let bytes = encode_f32_le(&values);
    assert_eq!(bytes.len(), 16);
    assert_eq!(&bytes[..4], &1.5_f32.to_le_bytes());
    assert_eq!(decode_f32_le("a", &bytes, 4).unwrap(), values);
    let err = decode_f32_le("a", &bytes[..15], 4).unwrap_err();
    assert_eq!(
        err,
        VectorIndexError::CorruptStoredVector {
            id: "a".into(),
            bytes: 15,
            expected_bytes: 16
        }
    );
    assert!(decode_f32_le("a", &bytes, 3).is_err());
    assert!(!err.is_retryable() && !err.is_caller_error());
}

#[test]
fn hex_decoding_matches_the_blob_and_rejects_bad_text() {
    let values = vec![1.5_f32, -0.25, 3.0e-7];
    let hex: String = encode_f32_le(&values)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(decode_f32_le_hex("a", &hex, 3).unwrap(), values);
    assert_eq!(
        decode_f32_le_hex("a", &hex.to_lowercase(), 3).unwrap(),
        values
    );
    assert!(decode_f32_le_hex("a", &hex[..hex.len() - 2], 3).is_err());
    let mut bad = hex.clone();
    bad.replace_range(0..1, "G");
    assert_eq!(
        decode_f32_le_hex("a", &bad, 3).unwrap_err().code(),
        "corrupt_stored_vector"
    );
}

#[test]
fn cosine_is_scale_free_and_zero_for_degenerate_vectors() {
    let a = [1.0, 2.0, 3.0];
    let b = [2.0, 4.0, 6.0];
    assert!((cosine_similarity(&a, &b) - 1.0).abs() < 1e-6);
    assert!((cosine_similarity(&[1.0, 0.0], &[0.0, 1.0])).abs() < 1e-6);
    assert!((cosine_similarity(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-6);
    assert_eq!(cosine_similarity(&[1.0, 0.0], &[0.0, 0.0]), 0.0);
}

#[test]
fn top_k_orders_by_score_then_id() {
    let records = vec![
        record("c", vec![1.0, 0.0], None),
        record("a", vec![1.0, 0.0], None),
        record("b", vec![0.0, 1.0], None),
        record("d", vec![1.0, 1.0], None),
    ];
    let got = exact_top_k(&query(vec![1.0, 0.0], 3), &records);
    let ids: Vec<_> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "c", "d"]);
    assert!(got.iter().all(|m| m.metadata.is_none()));
    assert!(exact_top_k(&query(vec![1.0, 0.0], 0), &records).is_empty());
}

#[test]
fn filters_restrict_matches_and_metadata_is_returned_on_request() {
    let records = vec![
        record("x", vec![1.0, 0.0], Some(7)),
        record("y", vec![1.0, 0.1], Some(8)),
        record("z", vec![1.0, 0.2], None),
    ];
    let mut q = query(vec![1.0, 0.0], 10);
    q.filter = Some(MetadataFilter::company(8));
    q.return_metadata = true;
    let got = exact_top_k(&q, &records);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, "y");
    assert_eq!(got[0].metadata.as_ref().unwrap().company_id, Some(8));

    q.filter = Some(MetadataFilter {
        company_id: Some(FieldMatch::In(vec![7, 8])),
        ..MetadataFilter::default()
    });
    let ids: Vec<_> = exact_top_k(&q, &records)
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["x", "y"]);
}

#[test]
fn filter_evaluation_table() {
    let m = VectorMetadata {
        document_id: 5,
        company_id: Some(2),
        version: 3,
    };
    let cases: [(MetadataFilter, bool); 7] = [
        (MetadataFilter::default(), true),
        (MetadataFilter::company(2), true),
        (MetadataFilter::company(3), false),
        (
            MetadataFilter {
                document_id: Some(FieldMatch::In(vec![4, 5])),
                version: Some(FieldMatch::Eq(3)),
                ..MetadataFilter::default()
            },
            true,
        ),
        (
            MetadataFilter {
                document_id: Some(FieldMatch::Eq(5)),
                version: Some(FieldMatch::Eq(4)),
                ..MetadataFilter::default()
            },
            false,
        ),
        (
            MetadataFilter {
                version: Some(FieldMatch::In(vec![1, 2])),
                ..MetadataFilter::default()
            },
            false,
        ),
        (
            MetadataFilter {
                company_id: Some(FieldMatch::Eq(2)),
                document_id: Some(FieldMatch::Eq(5)),
                version: Some(FieldMatch::Eq(3)),
            },
            true,
        ),
    ];
    for (filter, want) in cases {
        assert_eq!(filter.matches(&m), want, "{filter:?}");
    }
    let no_company = VectorMetadata {
        company_id: None,
        ..m
    };
    assert!(!MetadataFilter::company(2).matches(&no_company));
}

#[test]
fn filter_json_is_vectorize_shaped_and_bare_numbers_mean_equality() {
    let f = MetadataFilter {
        company_id: Some(FieldMatch::Eq(3)),
        document_id: Some(FieldMatch::In(vec![1, 2])),
        version: None,
    };
    assert_eq!(
        serde_json::to_value(&f).unwrap(),
        serde_json::json!({"company_id": {"$eq": 3}, "document_id": {"$in": [1, 2]}})
    );
    let bare: MetadataFilter = serde_json::from_str(r#"{"company_id": 3}"#).unwrap();
    assert_eq!(bare, MetadataFilter::company(3));
    let back: MetadataFilter = serde_json::from_value(serde_json::to_value(&f).unwrap()).unwrap();
    assert_eq!(back, f);
    assert!(serde_json::from_str::<MetadataFilter>(r#"{"company_id": {"$in": []}}"#).is_err());
    assert!(serde_json::from_str::<MetadataFilter>(r#"{"tags": "x"}"#).is_err());
    assert!(serde_json::from_str::<MetadataFilter>(r#"{"company_id": {"$gt": 1}}"#).is_err());
}

#[test]
fn metadata_json_omits_unknown_company() {
    let json = serde_json::to_value(meta(4, None)).unwrap();
    assert_eq!(json, serde_json::json!({"document_id": 4, "version": 1}));
    // Vectors written by older builds carry `tags`; reading them ignores it.
    let old: VectorMetadata =
        serde_json::from_str(r#"{"document_id": 4, "company_id": 2, "version": 1, "tags": []}"#)
            .unwrap();
    assert_eq!(old, meta(4, Some(2)));
}

#[test]
fn query_validation_enforces_platform_limits() {
    let mut q = query(vec![1.0; 4], 100);
    assert!(validate_query(&q, 4).is_ok());
    q.return_metadata = true;
    assert_eq!(
        validate_query(&q, 4).unwrap_err(),
        VectorIndexError::TopKOutOfRange {
            top_k: 100,
            max: 20,
            with_metadata: true
        }
    );
    q.top_k = 21;
    assert!(validate_query(&q, 4).is_err());
    q.top_k = 20;
    assert!(validate_query(&q, 4).is_ok());
    q.top_k = 0;
    assert!(validate_query(&q, 4).is_err());
    q.return_metadata = false;
    q.top_k = 101;
    assert!(validate_query(&q, 4).unwrap_err().is_caller_error());

    let err = validate_query(&query(vec![1.0; 3], 1), 4).unwrap_err();
    assert_eq!(err.code(), "dimension_mismatch");
    assert!(err.to_string().contains("3 dimensions; the index has 4"));
    assert_eq!(
        validate_query(&query(vec![0.0; 4], 1), 4)
            .unwrap_err()
            .code(),
        "invalid_vector"
    );
    assert_eq!(
        validate_query(&query(vec![1.0, f32::NAN, 0.0, 0.0], 1), 4)
            .unwrap_err()
            .code(),
        "invalid_vector"
    );
    let mut big = query(vec![1.0; 4], 1);
    big.filter = Some(MetadataFilter {
        document_id: Some(FieldMatch::In((0..1000).collect())),
        ..MetadataFilter::default()
    });
    assert_eq!(
        validate_query(&big, 4).unwrap_err().code(),
        "invalid_filter"
    );
}

#[test]
fn record_validation_checks_id_dimensions_and_metadata_size() {
    let ok = record("1:1:0", vec![0.5; 4], Some(1));
    assert!(validate_record(&ok, 4).is_ok());
    let long_id = record(&"x".repeat(65), vec![0.5; 4], None);
    assert_eq!(
        validate_record(&long_id, 4).unwrap_err().code(),
        "invalid_vector_id"
    );
    assert!(validate_record(&record(&"x".repeat(64), vec![0.5; 4], None), 4).is_ok());
    assert_eq!(
        validate_record(&record("", vec![0.5; 4], None), 4)
            .unwrap_err()
            .code(),
        "invalid_vector_id"
    );
    assert_eq!(
        validate_record(&ok, 5).unwrap_err(),
        VectorIndexError::DimensionMismatch {
            id: Some("1:1:0".into()),
            expected: 5,
            actual: 4
        }
    );
    // Three numbers never come near Vectorize's 10 KiB; the check guards future fields.
    let mut widest = ok.clone();
    widest.metadata = VectorMetadata {
        document_id: i64::MIN,
        company_id: Some(i64::MIN),
        version: u64::MAX,
    };
    assert!(serde_json::to_vec(&widest.metadata).unwrap().len() < 128);
    assert!(validate_record(&widest, 4).is_ok());
}

#[test]
fn upsert_batches_respect_the_limit() {
    assert!(plan_upsert_batches(0, 1000).is_empty());
    assert_eq!(plan_upsert_batches(1000, 1000), vec![0..1000]);
    assert_eq!(plan_upsert_batches(1001, 1000), vec![0..1000, 1000..1001]);
    assert_eq!(plan_upsert_batches(2500, 1000).len(), 3);
    assert_eq!(plan_upsert_batches(3, 0), vec![0..1, 1..2, 2..3]);
}

#[test]
fn d1_statements_respect_params_and_bytes() {
    // 1536-dim vectors: 6 KiB each, 7 parameters per row → bytes bind first (14 rows fit 100 params).
    let rows = vec![6144 + 200; 40];
    let plan = plan_d1_statements(&rows, 7, |n| 120 + 20 * n).unwrap();
    assert!(plan.iter().all(|r| r.len() * 7 <= D1_MAX_BOUND_PARAMS));
    assert!(plan
        .iter()
        .all(|r| r.len() * (6144 + 200) + 120 + 20 * r.len() <= D1_MAX_STATEMENT_BYTES));
    assert_eq!(plan.iter().map(ExactSizeIterator::len).sum::<usize>(), 40);
    assert_eq!(plan[0], 0..14);
    // Small rows: the parameter bound decides.
    let plan = plan_d1_statements(&[10; 250], 1, |_| 50).unwrap();
    assert_eq!(plan, vec![0..100, 100..200, 200..250]);
    // A row that can never fit is an error, not an endless loop.
    assert!(plan_d1_statements(&[10, 200_000], 1, |_| 50).is_err());
    assert!(plan_d1_statements(&[200_000], 1, |_| 50).is_err());
}

#[test]
fn vectorize_failures_are_classified_by_code() {
    let permanent = classify_vectorize_failure(
        "query",
        "VECTOR_QUERY_ERROR (code = 40006): invalid topK".into(),
    );
    assert!(!permanent.is_retryable());
    assert_eq!(permanent.code(), "vector_index_rejected");
    let transient = classify_vectorize_failure(
        "upsert",
        "VECTOR_UPSERT_ERROR (code = 50001): internal".into(),
    );
    assert!(transient.is_retryable());
    assert!(classify_vectorize_failure("describe", "network lost".into()).is_retryable());
}

#[test]
fn too_many_ids_is_retryable_never_permanent() {
    // The real binding's answer to 173 ids (field reports, 2026), and the getByIds analogue.
    for (operation, message) in [
        (
            "deleteByIds",
            "VECTOR_DELETE_ERROR (code = 40007): too many ids in payload; max id count is 100, got 173",
        ),
        (
            "getByIds",
            "VECTOR_GET_ERROR (code = 40007): too many ids in payload; max id count is 100, got 250",
        ),
    ] {
        let error = classify_vectorize_failure(operation, message.into());
        assert_eq!(
            error,
            VectorIndexError::BatchTooLarge {
                backend: "vectorize",
                operation,
                max: Some(VECTORIZE_MAX_IDS_PER_CALL),
                message: message.into(),
            }
        );
        assert!(error.is_retryable(), "{error}");
        assert!(!error.is_caller_error());
        assert_eq!(error.code(), "vector_index_batch_too_large");
        assert!(error.to_string().contains("the limit is 100"), "{error}");
    }
    // Without the number it is still a batch-size error, not a rejection.
    let bare = classify_vectorize_failure("deleteByIds", "Too many IDs in payload".into());
    assert!(matches!(
        bare,
        VectorIndexError::BatchTooLarge { max: None, .. }
    ));
    assert!(bare.is_retryable());
}

proptest! {
    #[test]
    fn top_k_is_the_brute_force_best_sorted(
        vectors in prop::collection::vec(prop::collection::vec(-4i8..=4, 3), 0..60),
        q in prop::collection::vec(-4i8..=4, 3),
        k in 0usize..20,
    ) {
        // Small integer coordinates make exact score ties frequent, exercising the tie-break.
        let records: Vec<VectorRecord> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| record(&format!("v{i:03}"), v.iter().map(|x| f32::from(*x)).collect(), None))
            .collect();
        let qv: Vec<f32> = q.iter().map(|x| f32::from(*x)).collect();
        let got = exact_top_k(&query(qv.clone(), k), &records);

        let mut all: Vec<(String, f32)> = records
            .iter()
            .map(|r| (r.id.clone(), cosine_similarity(&qv, &r.values)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(k);
        let got_pairs: Vec<(String, f32)> = got.into_iter().map(|m| (m.id, m.score)).collect();
        prop_assert_eq!(got_pairs, all);
    }
}

//! Whether the index can answer the metadata filters the service sends. Vectorize filters only
//! on properties that have a metadata index, and only for vectors written after that index was
//! created; a filter on anything else silently matches nothing. The Workers binding cannot list
//! metadata indexes (it has `query`, `queryById`, `insert`, `upsert`, `getByIds`,
//! `deleteByIds`, `describe`), so the check probes the effect instead: a filtered query for a
//! vector known to be in the index, on that vector's own values.
//!
//! Owns the list of filtered properties and the verdict; never repairs anything, never picks
//! the sample (the caller hands candidate ids, newest first).

use serde::Serialize;

use super::{
    FieldMatch, MetadataFilter, VectorIndex, VectorIndexError, VectorQuery, VectorRecord,
    VECTORIZE_MAX_TOP_K,
};

/// A metadata property the service filters on, and the Vectorize metadata index it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FilteredProperty {
    /// The metadata field (`VectorMetadata`).
    pub property: &'static str,
    /// `--type` of `wrangler vectorize create-metadata-index`: the values are JSON numbers.
    pub index_type: &'static str,
    /// Who sends a filter on it.
    pub filtered_by: &'static str,
}

/// Every property a filter of the service may name ([`MetadataFilter`]'s fields). Each needs a
/// metadata index on Vectorize, created before the first vector is written (docs/going-live.md).
pub const FILTERED_PROPERTIES: [FilteredProperty; 3] = [
    FilteredProperty {
        property: "company_id",
        index_type: "number",
        filtered_by: "search and chat restricted to a company (vector source)",
    },
    FilteredProperty {
        property: "document_id",
        index_type: "number",
        filtered_by: "POST /admin/index/query filters",
    },
    FilteredProperty {
        property: "version",
        index_type: "number",
        filtered_by: "POST /admin/index/query filters",
    },
];

/// What a filter on one property did for the sample vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterStatus {
    /// The filter on the sample's own value finds the sample.
    Filterable,
    /// It finds other vectors but not the sample: the sample was written before the metadata
    /// index existed (so are, likely, other vectors of its time). Re-ingest them.
    SampleNotIndexed,
    /// It finds nothing although the sample holds the value: no metadata index on the property
    /// (or one of another type), or every vector with that value predates it.
    NotFilterable,
    /// The sample has no value for the property (a document without a company).
    NotApplicable,
}

/// The check of one property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyCheck {
    /// The property and its index.
    #[serde(flatten)]
    pub property: FilteredProperty,
    /// What the probe found.
    pub status: FilterStatus,
    /// Matches of the filtered probe query.
    pub matches: usize,
    /// What to do, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every applicable property is filterable.
    Ok,
    /// At least one property is not (see its `fix`).
    Broken,
    /// No vector to probe with: nothing committed yet, or not visible yet.
    Unknown,
}

/// The report of [`check_metadata_filters`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterCheck {
    /// `d1` or `vectorize`.
    pub implementation: &'static str,
    /// The overall answer.
    pub verdict: Verdict,
    /// The vector probed with.
    pub sample: Option<String>,
    /// One entry per [`FILTERED_PROPERTIES`] (empty when there was no sample).
    pub properties: Vec<PropertyCheck>,
}

fn value_of(sample: &VectorRecord, property: &str) -> Option<i64> {
    let metadata = &sample.metadata;
    match property {
        "company_id" => metadata.company_id,
        "document_id" => Some(metadata.document_id),
        "version" => i64::try_from(metadata.version).ok(),
        _ => None,
    }
}

fn filter_on(property: &str, value: i64) -> MetadataFilter {
    let condition = Some(FieldMatch::Eq(value));
    match property {
        "company_id" => MetadataFilter {
            company_id: condition,
            ..MetadataFilter::default()
        },
        "document_id" => MetadataFilter {
            document_id: condition,
            ..MetadataFilter::default()
        },
        _ => MetadataFilter {
            version: condition,
            ..MetadataFilter::default()
        },
    }
}

fn fix_for(property: &FilteredProperty, status: FilterStatus) -> Option<String> {
    let recreate = "then re-ingest the documents written before it (POST /admin/documents/{key}/process with {\"force\": true}): \
         vectors written before a metadata index are never filterable on it";
    match status {
        FilterStatus::NotFilterable => Some(format!(
            "npx wrangler vectorize create-metadata-index <index> --property-name={} --type={}, {recreate}",
            property.property, property.index_type
        )),
        FilterStatus::SampleNotIndexed => Some(format!(
            "the metadata index on {} exists but this vector predates it: {recreate}",
            property.property
        )),
        FilterStatus::Filterable | FilterStatus::NotApplicable => None,
    }
}

/// Probes every [`FILTERED_PROPERTIES`] entry with the first of `candidates` the index holds:
/// one `get_by_ids`, then one filtered query per property on the sample's own values
/// (`top_k` 100, no metadata), which must return the sample.
///
/// # Errors
/// When the index fails; a missing sample is a [`Verdict::Unknown`] report, not an error.
pub async fn check_metadata_filters<V: VectorIndex>(
    index: &V,
    candidates: &[String],
) -> Result<FilterCheck, VectorIndexError> {
    let found = if candidates.is_empty() {
        Vec::new()
    } else {
        index.get_by_ids(candidates).await?
    };
    let sample = candidates
        .iter()
        .find_map(|id| found.iter().find(|r| &r.id == id));
    let Some(sample) = sample else {
        return Ok(FilterCheck {
            implementation: index.implementation(),
            verdict: Verdict::Unknown,
            sample: None,
            properties: Vec::new(),
        });
    };
    let mut properties = Vec::with_capacity(FILTERED_PROPERTIES.len());
    for property in FILTERED_PROPERTIES {
        let (status, matches) = match value_of(sample, property.property) {
            None => (FilterStatus::NotApplicable, 0),
            Some(value) => {
                let matches = index
                    .query(&VectorQuery {
                        vector: sample.values.clone(),
                        top_k: VECTORIZE_MAX_TOP_K,
                        filter: Some(filter_on(property.property, value)),
                        return_metadata: false,
                        approximate: false,
                    })
                    .await?;
                let status = if matches.iter().any(|m| m.id == sample.id) {
                    FilterStatus::Filterable
                } else if matches.is_empty() {
                    FilterStatus::NotFilterable
                } else {
                    FilterStatus::SampleNotIndexed
                };
                (status, matches.len())
            }
        };
        properties.push(PropertyCheck {
            property,
            status,
            matches,
            fix: fix_for(&property, status),
        });
    }
    let broken = properties.iter().any(|p| {
        matches!(
            p.status,
            FilterStatus::NotFilterable | FilterStatus::SampleNotIndexed
        )
    });
    Ok(FilterCheck {
        implementation: index.implementation(),
        verdict: if broken { Verdict::Broken } else { Verdict::Ok },
        sample: Some(sample.id.clone()),
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{
        exact_top_k, IndexInfo, MutationReceipt, VectorMatch, VectorMetadata, VectorRecord,
    };
    use pollster::block_on;
    use std::collections::BTreeSet;

    /// An index that filters like Vectorize: only on `indexed` properties, and only for the
    /// vectors listed as written after the index (`indexed_vectors`).
    struct PartialIndex {
        vectors: Vec<VectorRecord>,
        indexed: BTreeSet<&'static str>,
        indexed_vectors: BTreeSet<String>,
    }

    impl VectorIndex for PartialIndex {
        fn implementation(&self) -> &'static str {
            "vectorize"
        }
        async fn upsert(&self, _: &[VectorRecord]) -> Result<MutationReceipt, VectorIndexError> {
            unreachable!("the check never writes")
        }
        async fn query(&self, query: &VectorQuery) -> Result<Vec<VectorMatch>, VectorIndexError> {
            let filter = query.filter.clone().unwrap_or_default();
            let named: Vec<&str> = [
                ("company_id", filter.company_id.is_some()),
                ("document_id", filter.document_id.is_some()),
                ("version", filter.version.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            if named.iter().any(|n| !self.indexed.contains(n)) {
                return Ok(Vec::new());
            }
            let visible = self
                .vectors
                .iter()
                .filter(|v| named.is_empty() || self.indexed_vectors.contains(&v.id));
            Ok(exact_top_k(query, visible))
        }
        async fn get_by_ids(&self, ids: &[String]) -> Result<Vec<VectorRecord>, VectorIndexError> {
            Ok(self
                .vectors
                .iter()
                .filter(|v| ids.contains(&v.id))
                .cloned()
                .collect())
        }
        async fn delete_by_ids(&self, _: &[String]) -> Result<MutationReceipt, VectorIndexError> {
            unreachable!("the check never writes")
        }
        async fn describe(&self) -> Result<IndexInfo, VectorIndexError> {
            unreachable!("the check never describes")
        }
    }

    fn vector(id: &str, document_id: i64, company_id: Option<i64>, axis: usize) -> VectorRecord {
        let mut values = vec![0.1; 8];
        values[axis] = 1.0;
        VectorRecord {
            id: id.into(),
            values,
            metadata: VectorMetadata {
                document_id,
                company_id,
                version: 2,
            },
        }
    }

    fn index(indexed: &[&'static str], indexed_vectors: &[&str]) -> PartialIndex {
        PartialIndex {
            vectors: vec![
                vector("7:2:0", 7, Some(3), 0),
                vector("8:2:0", 8, Some(3), 1),
                vector("9:2:0", 9, None, 2),
            ],
            indexed: indexed.iter().copied().collect(),
            indexed_vectors: indexed_vectors.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn statuses(check: &FilterCheck) -> Vec<(&'static str, FilterStatus)> {
        check
            .properties
            .iter()
            .map(|p| (p.property.property, p.status))
            .collect()
    }

    const ALL: [&str; 3] = ["company_id", "document_id", "version"];

    #[test]
    fn every_property_indexed_is_ok() {
        let idx = index(&ALL, &["7:2:0", "8:2:0", "9:2:0"]);
        let check = block_on(check_metadata_filters(&idx, &["7:2:0".into()])).unwrap();
        assert_eq!(check.verdict, Verdict::Ok);
        assert_eq!(check.sample.as_deref(), Some("7:2:0"));
        assert!(check
            .properties
            .iter()
            .all(|p| p.status == FilterStatus::Filterable && p.fix.is_none()));
    }

    #[test]
    fn a_missing_metadata_index_is_broken_with_the_command_to_fix_it() {
        let idx = index(&["document_id", "version"], &["7:2:0", "8:2:0"]);
        let check = block_on(check_metadata_filters(&idx, &["7:2:0".into()])).unwrap();
        assert_eq!(check.verdict, Verdict::Broken);
        assert_eq!(
            statuses(&check),
            [
                ("company_id", FilterStatus::NotFilterable),
                ("document_id", FilterStatus::Filterable),
                ("version", FilterStatus::Filterable),
            ]
        );
        let fix = check.properties[0].fix.as_deref().unwrap();
        assert!(
            fix.contains("--property-name=company_id --type=number"),
            "{fix}"
        );
    }

    #[test]
    fn a_vector_written_before_the_index_is_reported() {
        // 8:2:0 was re-upserted after the index; 7:2:0 (the sample) was not.
        let idx = index(&ALL, &["8:2:0"]);
        let check = block_on(check_metadata_filters(&idx, &["7:2:0".into()])).unwrap();
        assert_eq!(check.verdict, Verdict::Broken);
        assert_eq!(check.properties[0].status, FilterStatus::SampleNotIndexed);
        assert_eq!(check.properties[0].matches, 1);
        // Its own document has no re-upserted vector: nothing at all.
        assert_eq!(check.properties[1].status, FilterStatus::NotFilterable);
    }

    #[test]
    fn the_first_candidate_the_index_holds_is_the_sample() {
        let idx = index(&ALL, &["7:2:0", "8:2:0", "9:2:0"]);
        let candidates = ["1:1:0".to_owned(), "9:2:0".to_owned(), "7:2:0".to_owned()];
        let check = block_on(check_metadata_filters(&idx, &candidates)).unwrap();
        assert_eq!(check.sample.as_deref(), Some("9:2:0"));
        // Without a company, company_id cannot be probed.
        assert_eq!(check.properties[0].status, FilterStatus::NotApplicable);
        assert_eq!(check.verdict, Verdict::Ok);
    }

    #[test]
    fn no_sample_is_unknown_not_ok() {
        let idx = index(&ALL, &[]);
        for candidates in [vec![], vec!["1:1:0".to_owned()]] {
            let check = block_on(check_metadata_filters(&idx, &candidates)).unwrap();
            assert_eq!(check.verdict, Verdict::Unknown);
            assert!(check.properties.is_empty());
        }
    }

    #[test]
    fn the_properties_are_the_filter_fields() {
        let names: Vec<&str> = FILTERED_PROPERTIES.iter().map(|p| p.property).collect();
        for name in &names {
            let filter = filter_on(name, 1);
            let json = serde_json::to_value(&filter).unwrap();
            assert_eq!(json.as_object().unwrap().keys().collect::<Vec<_>>(), [name]);
        }
        assert_eq!(names, ["company_id", "document_id", "version"]);
    }
}

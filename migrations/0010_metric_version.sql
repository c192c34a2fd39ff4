-- Canary analysis (issue 25): every data point names the Worker version that
-- recorded it (the `version_metadata` binding's id; '' when unknown), so
-- GET /admin/metrics/versions can compare two versions serving side by side
-- during a gradual deployment. Additive with a default: a version that does
-- not know the column keeps inserting (its rows read as ''), so two versions
-- can share the schema during a split. Apply before uploading the version
-- that writes it.
ALTER TABLE metric_points ADD COLUMN version TEXT NOT NULL DEFAULT '';

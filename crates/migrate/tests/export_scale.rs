//! Scale: `export` of a generated 10,000-document source, timed, with the
//! exporter's peak memory (it streams pages, so memory must not grow with
//! the corpus). Ignored by default (a minute or so); run with
//! `cargo test -p migrate --test export_scale -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use std::time::Instant;

use support::postgres::cluster;
use support::*;

const DOCUMENTS: u32 = 10_000;

#[test]
#[ignore = "scale measurement; run explicitly"]
fn export_of_10000_documents_streams() {
    let pg = cluster();
    let db = pg.create_database("scale");
    let schema =
        include_str!("fixtures/supabase_schema.sql").replace("CREATE ROLE migrator LOGIN;", "");
    pg.psql(&db, &schema);
    pg.psql(
        &db,
        &format!(
            "INSERT INTO companies (id, slug, name) SELECT md5('c' || i)::uuid, 'company-' || i, 'Company ' || i \
             FROM generate_series(1, 100) i;
             INSERT INTO documents (id, company_id, path, title, content, tags)
             SELECT md5('d' || i)::uuid, md5('c' || (1 + i % 100))::uuid,
                    'companies/company-' || (1 + i % 100) || '/doc-' || i || '.md', 'Doc ' || i,
                    '# Doc ' || i || E'\\n\\n' || repeat('Some words about topic ' || i || '. ', 40)
                      || E'\\n\\n## Part two\\n\\n' || repeat('More text ' || i || '. ', 60)
                      || E'\\n\\n## Part three\\n\\n' || repeat('End ' || i || '. ', 40),
                    ARRAY['Tag ' || (i % 7), 'tag']
             FROM generate_series(1, {DOCUMENTS}) i;
             INSERT INTO chunks (document_id, chunk_index, content, tags)
             SELECT d.id, p.n - 1, p.part, d.tags FROM documents d,
                    LATERAL regexp_split_to_table(d.content, E'\\n(?=## )') WITH ORDINALITY AS p(part, n);"
        ),
    );
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("export");
    let time = std::path::Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = std::process::Command::new(time);
        c.args(["-f", "peak_rss_kb=%M"])
            .arg(env!("CARGO_BIN_EXE_migrate"));
        c
    } else {
        bin()
    };
    cmd.env_remove("DATABASE_URL")
        .args([
            "export",
            "--json",
            "--database-url",
            &pg.url("migrator", &db),
            "--out",
        ])
        .arg(&dir);
    let started = Instant::now();
    let run = run(cmd);
    let elapsed = started.elapsed();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["exported"]["documents"], DOCUMENTS);
    let bytes = std::fs::metadata(dir.join("documents.jsonl"))
        .unwrap()
        .len();
    eprintln!(
        "[scale] export of {DOCUMENTS} documents ({} chunks, documents.jsonl {} MB) took {elapsed:?}; {}",
        report["exported"]["chunks"],
        bytes / 1_000_000,
        run.stderr.lines().find(|l| l.starts_with("peak_rss_kb")).unwrap_or("peak RSS not measured")
    );
}

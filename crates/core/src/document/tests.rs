use super::*;
use serde_json::json;

fn key(raw: &str) -> DocumentKey {
    DocumentKey::parse(raw).unwrap()
}

fn parse(raw_key: &str, text: &str) -> ParsedDocument<'static> {
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    parse_document(&key(raw_key), leaked.as_bytes()).unwrap()
}

#[test]
fn front_matter_fields_are_read() {
    let doc = parse(
        "companies/acme/overview.md",
        "---\ntitle: Acme overview\ncompany: Acme Corp\ntags: [search, rust, search]\nyear: 2024\nowner:\n  name: Ada\n---\n# Heading\n\nBody.\n",
    );
    assert_eq!(doc.title, "Acme overview");
    assert_eq!(doc.company.as_deref(), Some("Acme Corp"));
    assert_eq!(doc.tags, ["search", "rust"]);
    assert_eq!(
        Value::Object(doc.metadata.clone()),
        json!({"year": 2024, "owner": {"name": "Ada"}})
    );
    assert_eq!(doc.body, "# Heading\n\nBody.\n");
    assert_eq!(doc.body_line, 9);
    assert_eq!(&doc.source[doc.body_offset..], doc.body);
}

#[test]
fn documents_parse_table() {
    /// Key, text, then the expected title, company, tags, body and body line.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a [&'a str],
        &'a str,
        usize,
    );
    let cases: &[Case<'_>] = &[
        ("a.md", "", "a", None, &[], "", 1),
        (
            "notes/a.md",
            "plain text",
            "a",
            Some("notes"),
            &[],
            "plain text",
            1,
        ),
        (
            "companies/acme/x.md",
            "# Acme\nhi",
            "Acme",
            Some("acme"),
            &[],
            "# Acme\nhi",
            1,
        ),
        ("companies/x.md", "text", "x", None, &[], "text", 1),
        ("companies/acme/sub/x.md", "", "x", Some("acme"), &[], "", 1),
        // Setext heading, inline markup flattened; empty heading skipped.
        (
            "a.md",
            "#\n\nThe *Big* `Idea`\n===\n",
            "The Big Idea",
            None,
            &[],
            "#\n\nThe *Big* `Idea`\n===\n",
            1,
        ),
        // CRLF front matter, comma-separated tags, closing `...`.
        (
            "a.md",
            "---\r\ntags: a, b ,,c\r\n...\r\nbody\r\n",
            "a",
            None,
            &["a", "b", "c"],
            "body\r\n",
            4,
        ),
        // BOM before the front matter; the offset counts it.
        (
            "x/a.md",
            "\u{feff}---\ntitle: T\n---\nb",
            "T",
            Some("x"),
            &[],
            "b",
            4,
        ),
        // BOM, no front matter.
        ("a.md", "\u{feff}# Hi", "Hi", None, &[], "# Hi", 1),
        // Front matter only, empty front matter, null values.
        ("a.md", "---\ntitle: Only\n---\n", "Only", None, &[], "", 4),
        ("a.md", "---\n---\n# H", "H", None, &[], "# H", 3),
        (
            "a.md",
            "---\ntitle:\ncompany: ''\ntags:\n---\n",
            "a",
            None,
            &[],
            "",
            6,
        ),
        // An empty or null company says "none": the key is not read.
        (
            "companies/acme/x.md",
            "---\ncompany: null\n---\n",
            "x",
            None,
            &[],
            "",
            4,
        ),
        (
            "notes/a.md",
            "---\ncompany:\n---\nb",
            "a",
            None,
            &[],
            "b",
            4,
        ),
        (
            "notes/a.md",
            "---\ncompany: ''\n---\n",
            "a",
            None,
            &[],
            "",
            4,
        ),
        (
            "notes/a.md",
            "---\ntitle: T\n---\n",
            "T",
            Some("notes"),
            &[],
            "",
            4,
        ),
        // Numbers as text; front matter company beats the key.
        (
            "companies/acme/a.md",
            "---\ntitle: 1999\ncompany: Initech\n---\n",
            "1999",
            Some("Initech"),
            &[],
            "",
            5,
        ),
        // `----` or an indented `---` is markdown, not front matter.
        (
            "a.md",
            "----\ntitle: x\n---\n",
            "title: x",
            None,
            &[],
            "----\ntitle: x\n---\n",
            1,
        ),
        (
            "a.md",
            " ---\nx\n---\n",
            "x",
            None,
            &[],
            " ---\nx\n---\n",
            1,
        ),
    ];
    for &(raw_key, text, title, company, tags, body, body_line) in cases {
        let doc = parse(raw_key, text);
        assert_eq!(doc.title, title, "{text:?}");
        assert_eq!(doc.company.as_deref(), company, "{text:?}");
        assert_eq!(doc.tags, tags, "{text:?}");
        assert_eq!(doc.body, body, "{text:?}");
        assert_eq!(doc.body_line, body_line, "{text:?}");
        assert_eq!(&doc.source[doc.body_offset..], body, "{text:?}");
        assert_eq!(doc.source, text);
    }
}

#[test]
fn bad_documents_are_typed_errors() {
    let cases: Vec<(&[u8], DocumentError)> = vec![
        (b"abc\0def", DocumentError::Binary { offset: 3 }),
        (b"ok \xff\xfe", DocumentError::InvalidUtf8 { offset: 3 }),
        (b"caf\xc3", DocumentError::InvalidUtf8 { offset: 3 }),
        (
            b"---\ntitle: x\n",
            DocumentError::UnclosedFrontMatter { line: 1 },
        ),
        (
            b"---\n- a\n- b\n---\n",
            DocumentError::FrontMatterNotMapping {
                line: 1,
                found: "a sequence",
            },
        ),
        (
            b"---\na: 1\ntags: {x: 1}\n---\n",
            DocumentError::FrontMatterField {
                field: "tags",
                line: 3,
                expected: "a list of words or a comma-separated string",
            },
        ),
        (
            b"---\ntitle: [a, b]\n---\n",
            DocumentError::FrontMatterField {
                field: "title",
                line: 2,
                expected: "text",
            },
        ),
        (
            b"---\ntags: [[nested]]\n---\n",
            DocumentError::FrontMatterField {
                field: "tags",
                line: 2,
                expected: "a list of words or a comma-separated string",
            },
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            parse_document(&key("a.md"), bytes),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn yaml_syntax_errors_name_the_document_line() {
    let cases: &[(&str, usize)] = &[
        ("---\ntitle: ok\nbad: [unclosed\n---\n", 4),
        ("---\ntitle: a\n  b: c\n---\n", 3),
        // A duplicate key is reported where its mapping starts.
        ("\u{feff}---\r\nx: 1\r\nx: 2\r\n---\r\n", 2),
    ];
    for &(text, line) in cases {
        match parse_document(&key("a.md"), text.as_bytes()) {
            Err(DocumentError::FrontMatterSyntax { line: got, message }) => {
                assert_eq!(got, line, "{text:?}: {message}");
                let positioned = !message.starts_with("duplicate");
                assert!(
                    !positioned || message.contains(&format!("line {line}")),
                    "{message}"
                );
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn metadata_converts_awkward_yaml() {
    let doc = parse(
        "a.md",
        "---\n1: one\nbig: 18446744073709551615\ninf: .inf\nt: !custom {a: 1}\nwhen: 2024-01-02\n---\n",
    );
    assert_eq!(
        Value::Object(doc.metadata),
        json!({
            "1": "one",
            "big": 18_446_744_073_709_551_615_u64,
            "inf": ".inf",
            "t": {"a": 1},
            "when": "2024-01-02",
        })
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut yaml = String::from("---\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        yaml.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    yaml.push_str("---\n");
    assert!(matches!(
        parse_document(&key("a.md"), yaml.as_bytes()),
        Err(DocumentError::FrontMatterSyntax { .. })
    ));
}

#[test]
fn company_rule_table() {
    let cases = [
        ("companies/acme/overview.md", Some("acme")),
        ("companies/acme/deep/er/x.md", Some("acme")),
        ("companies/acme.md", None),
        ("acme/overview.md", Some("acme")),
        ("acme/projects/x.md", Some("acme")),
        ("overview.md", None),
    ];
    for (raw, want) in cases {
        assert_eq!(company_from_key(&key(raw)).as_deref(), want, "{raw}");
    }
}

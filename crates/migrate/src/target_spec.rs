//! What a `--target` names: a URL, `local` (the `wrangler dev` that
//! `scripts/dev.sh` starts), or an environment declared in `wrangler.jsonc`
//! whose URL comes from `MIGRATE_TARGET_URL_<ENV>`. Pure: environment
//! variables are passed in as a lookup; never contacts the service.

use thiserror::Error;

/// The name of the local service.
pub const LOCAL: &str = "local";
/// Where `scripts/dev.sh` serves it: `wrangler dev`'s default port 8787, on
/// `localhost` (wrangler's default listen address outside Windows).
pub const LOCAL_URL: &str = "http://localhost:8787";
/// Prefix of the variable holding a deployed environment's URL: wrangler.jsonc
/// declares routes per account, not URLs, so the URL is the operator's to give.
pub const URL_VARIABLE_PREFIX: &str = "MIGRATE_TARGET_URL_";

/// The repository's wrangler configuration, as built into the binary: the
/// environments a target may name are exactly the ones deployed from it.
const WRANGLER_CONFIG: &str = include_str!("../../../wrangler.jsonc");

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetSpecError {
    #[error("--target {spec}: {reason}")]
    BadUrl { spec: String, reason: String },
    #[error(
        "the target `{environment}` needs its URL: set {variable} \
         (e.g. {variable}=https://{worker}.<your-subdomain>.workers.dev)"
    )]
    MissingUrl {
        environment: String,
        variable: String,
        worker: String,
    },
    #[error("{variable} (the URL of `{environment}`): {reason}")]
    BadVariable {
        environment: String,
        variable: String,
        reason: String,
    },
    #[error(
        "unknown target `{spec}`: give an http(s) URL, `local` ({LOCAL_URL}), or an environment \
         of wrangler.jsonc ({})", names.join(", ")
    )]
    Unknown { spec: String, names: Vec<String> },
    #[error("the wrangler.jsonc built into migrate cannot be read: {0}")]
    Config(String),
}

/// An environment of wrangler.jsonc's `env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// Its Worker's `name` (the default workers.dev subdomain's first label).
    pub worker: String,
}

/// The variable holding an environment's URL: `MIGRATE_TARGET_URL_STAGING`.
#[must_use]
pub fn url_variable(environment: &str) -> String {
    let suffix: String = environment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{URL_VARIABLE_PREFIX}{suffix}")
}

/// The environments of the wrangler.jsonc built into this binary.
pub fn wrangler_environments() -> Result<Vec<Environment>, TargetSpecError> {
    environments_of(WRANGLER_CONFIG).map_err(TargetSpecError::Config)
}

/// The environments a JSONC wrangler configuration declares under `env`.
fn environments_of(jsonc: &str) -> Result<Vec<Environment>, String> {
    let config: serde_json::Value =
        serde_json::from_str(&strip_comments(jsonc)).map_err(|e| e.to_string())?;
    let top_name = config["name"].as_str().unwrap_or_default();
    let Some(envs) = config["env"].as_object() else {
        return Ok(Vec::new());
    };
    let mut environments: Vec<Environment> = envs
        .iter()
        .map(|(name, env)| Environment {
            name: name.clone(),
            // wrangler names an environment's Worker `<name>-<env>` unless it sets one.
            worker: env["name"]
                .as_str()
                .map_or_else(|| format!("{top_name}-{name}"), str::to_owned),
        })
        .collect();
    environments.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(environments)
}

/// JSONC without its `//` and `/* */` comments (string contents untouched).
fn strip_comments(jsonc: &str) -> String {
    let mut out = String::with_capacity(jsonc.len());
    let mut chars = jsonc.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// An http(s) URL with a host, without a trailing `/`.
fn http_url(value: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(value).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("not an http:// or https:// URL".to_owned());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// The base URL a `--target` names. `variable` reads an environment variable.
pub fn resolve_target(
    spec: &str,
    environments: &[Environment],
    variable: impl Fn(&str) -> Option<String>,
) -> Result<String, TargetSpecError> {
    let spec = spec.trim();
    if spec.contains("://") {
        return http_url(spec).map_err(|reason| TargetSpecError::BadUrl {
            spec: spec.to_owned(),
            reason,
        });
    }
    if spec == LOCAL {
        return Ok(LOCAL_URL.to_owned());
    }
    let Some(environment) = environments.iter().find(|e| e.name == spec) else {
        return Err(TargetSpecError::Unknown {
            spec: spec.to_owned(),
            names: environments.iter().map(|e| e.name.clone()).collect(),
        });
    };
    let name = url_variable(&environment.name);
    match variable(&name).filter(|v| !v.trim().is_empty()) {
        None => Err(TargetSpecError::MissingUrl {
            environment: environment.name.clone(),
            variable: name,
            worker: environment.worker.clone(),
        }),
        Some(value) => http_url(value.trim()).map_err(|reason| TargetSpecError::BadVariable {
            environment: environment.name.clone(),
            variable: name,
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs() -> Vec<Environment> {
        ["dev", "staging", "production"]
            .iter()
            .map(|n| Environment {
                name: (*n).to_owned(),
                worker: format!("portfolio-docs-{n}"),
            })
            .collect()
    }

    fn vars(name: &str) -> Option<String> {
        match name {
            "MIGRATE_TARGET_URL_STAGING" => Some("https://staging.example.com/".to_owned()),
            "MIGRATE_TARGET_URL_DEV" => Some("  ".to_owned()),
            "MIGRATE_TARGET_URL_PRODUCTION" => Some("ftp://prod.example.com".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn targets_resolve_to_base_urls() {
        let cases = [
            ("http://127.0.0.1:8787", "http://127.0.0.1:8787"),
            ("https://docs.example.com/", "https://docs.example.com"),
            (" http://localhost:9000 ", "http://localhost:9000"),
            ("local", "http://localhost:8787"),
            ("staging", "https://staging.example.com"),
        ];
        for (spec, url) in cases {
            assert_eq!(
                resolve_target(spec, &envs(), vars).as_deref(),
                Ok(url),
                "{spec}"
            );
        }
    }

    #[test]
    fn an_environment_without_its_url_names_the_variable_to_set() {
        // Blank is the same as unset: nothing to connect to.
        let message = resolve_target("dev", &envs(), vars)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("set MIGRATE_TARGET_URL_DEV")
                && message.contains("https://portfolio-docs-dev."),
            "{message}"
        );
        let err = resolve_target("staging", &envs(), |_| None).unwrap_err();
        assert!(
            matches!(err, TargetSpecError::MissingUrl { ref variable, .. }
            if variable == "MIGRATE_TARGET_URL_STAGING")
        );
        let err = resolve_target("production", &envs(), vars).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("MIGRATE_TARGET_URL_PRODUCTION (the URL of `production`)"),
            "{err}"
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        for spec in ["Staging", "prod", "", "localhost:8787"] {
            let err = resolve_target(spec, &envs(), vars).unwrap_err();
            assert!(
                err.to_string()
                    .ends_with("`local` (http://localhost:8787), or an environment of wrangler.jsonc (dev, staging, production)"),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn urls_must_be_http() {
        for spec in ["ftp://h/", "http://", "postgres://h/db"] {
            assert!(
                matches!(
                    resolve_target(spec, &envs(), vars),
                    Err(TargetSpecError::BadUrl { .. })
                ),
                "{spec}"
            );
        }
    }

    #[test]
    fn variable_names_follow_the_environment() {
        assert_eq!(url_variable("staging"), "MIGRATE_TARGET_URL_STAGING");
        assert_eq!(url_variable("eu-west"), "MIGRATE_TARGET_URL_EU_WEST");
    }

    #[test]
    fn the_built_in_wrangler_config_declares_dev_staging_and_production() {
        let envs = wrangler_environments().unwrap();
        let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["dev", "production", "staging"]);
        assert!(!names.contains(&LOCAL), "`local` would hide an environment");
        let staging = envs.iter().find(|e| e.name == "staging").unwrap();
        assert_eq!(staging.worker, "portfolio-docs-staging");
    }

    #[test]
    fn comments_go_and_strings_stay() {
        let jsonc = "{\n // a comment\n \"name\": \"w\", /* block\n */ \"env\": {\"a\": {\"vars\": {\"U\": \"http://x//y /* no */\"}}, \"b\": {\"name\": \"bee\"}}\n}";
        let envs = environments_of(jsonc).unwrap();
        assert_eq!(
            envs,
            [
                Environment {
                    name: "a".into(),
                    worker: "w-a".into()
                },
                Environment {
                    name: "b".into(),
                    worker: "bee".into()
                }
            ]
        );
        assert!(strip_comments(jsonc).contains("http://x//y /* no */"));
    }
}

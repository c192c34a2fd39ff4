//! `--target` names at the command line: a wrangler.jsonc environment reads
//! its URL from `MIGRATE_TARGET_URL_<ENV>`, a missing variable or an unknown
//! name is a usage error that says what to do. (Resolution itself, `local`
//! included, is unit-tested in `target_spec`; `worker_e2e` imports through
//! `--target dev`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use migrate::target_spec::{url_variable, wrangler_environments};
use support::*;

fn rollback_export(target: &str, vars: &[(&str, &str)]) -> Run {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    for env in wrangler_environments().unwrap() {
        cmd.env_remove(url_variable(&env.name));
    }
    cmd.env("ADMIN_TOKEN", "not-a-secret")
        .args(["rollback-export", "--json", "--target", target, "--out"])
        .arg(out.path().join("back"))
        .envs(vars.iter().copied());
    run(cmd)
}

#[test]
fn an_environment_without_its_url_variable_says_which_to_set() {
    let run = rollback_export("staging", &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("the target `staging` needs its URL: set MIGRATE_TARGET_URL_STAGING"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unknown_target_lists_the_valid_ones() {
    let run = rollback_export("stage", &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("unknown target `stage`: give an http(s) URL, `local` (http://localhost:8787), or an environment of wrangler.jsonc (dev, production, staging)"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_environment_goes_to_the_url_in_its_variable() {
    // Nothing listens there: the failure names the URL it tried.
    let url = format!("http://127.0.0.1:{}", free_port());
    let failed = rollback_export("production", &[("MIGRATE_TARGET_URL_PRODUCTION", &url)]);
    assert_eq!(failed.code, 1, "{}\n{}", failed.stdout, failed.stderr);
    let report = failed.json();
    assert_eq!(report["error"]["stage"], "target");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains(&url), "{message}");
    // MIGRATE_TARGET may hold a name too.
    let out = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.env("MIGRATE_TARGET", "dev")
        .env_remove("MIGRATE_TARGET_URL_DEV")
        .env("ADMIN_TOKEN", "not-a-secret")
        .args(["rollback-export", "--out"])
        .arg(out.path().join("back"));
    let run = run(cmd);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("MIGRATE_TARGET_URL_DEV"),
        "{}",
        run.stderr
    );
}

#[test]
fn help_names_every_environment_of_wrangler_jsonc() {
    for command in ["import", "verify", "rollback-export"] {
        let mut cmd = bin();
        cmd.args([command, "--help"]);
        let help = run(cmd)
            .stdout
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            help.contains("`local` (http://localhost:8787")
                && help.contains("MIGRATE_TARGET_URL_<ENV>"),
            "{command}: {help}"
        );
        // The names listed after "environment of wrangler.jsonc (…)".
        let listed = help
            .split_once("environment of wrangler.jsonc (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(list, _)| list.split(", ").map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut declared: Vec<String> = wrangler_environments()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        let mut listed_sorted = listed.clone();
        listed_sorted.sort();
        declared.sort();
        assert_eq!(listed_sorted, declared, "{command}: {help}");
    }
}

//! Reading a libpq connection string — a `postgres://` URL or `key=value`
//! pairs — into tokio-postgres' configuration plus the settings it does not
//! read itself (`sslmode=verify-ca|verify-full`, `sslrootcert`, and the
//! `pgbouncer` flag some Supabase strings carry). Parses; decides nothing.

use std::str::FromStr;

use percent_encoding::percent_decode_str;
use tokio_postgres::Config;

use super::{pg_message, ConnectError};

/// The settings of a connection string that tokio-postgres does not read
/// (it refuses `verify-ca`, `verify-full` and unknown keys), as written.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct OwnSettings {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    /// Prisma's flag for a transaction pooler, in Supabase's strings for one.
    pub pgbouncer: Option<String>,
}

/// A connection string without [`OwnSettings`], and those settings.
#[derive(Debug, PartialEq, Eq)]
struct SplitUrl {
    rest: String,
    own: OwnSettings,
}

fn is_own_key(key: &str) -> bool {
    matches!(key, "sslmode" | "sslrootcert" | "pgbouncer")
}

/// Takes `sslmode`, `sslrootcert` and `pgbouncer` out of a `postgres://`
/// URL (query parameters, percent-encoded) or a `key=value` connection
/// string (values optionally single-quoted, `\` escaping), the two forms
/// libpq accepts.
fn split_own_settings(url: &str) -> Result<SplitUrl, ConnectError> {
    let mut own = OwnSettings::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => own.sslmode = Some(value),
        "sslrootcert" => own.sslrootcert = Some(value),
        _ => own.pgbouncer = Some(value),
    };
    let is_url = ["postgres://", "postgresql://"]
        .iter()
        .any(|p| url.starts_with(p));
    let rest = if is_url {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if is_own_key(key) {
                        let value = percent_decode_str(value)
                            .decode_utf8()
                            .map_err(|e| ConnectError::BadUrl(format!("{key}: {e}")))?;
                        take(key, value.into_owned());
                    } else {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (key, value) in key_value_pairs(url)? {
            if is_own_key(&key) {
                take(&key, value);
            } else {
                let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                kept.push(format!("{key}='{quoted}'"));
            }
        }
        kept.join(" ")
    };
    Ok(SplitUrl { rest, own })
}

/// The pairs of a libpq `key=value` connection string.
fn key_value_pairs(s: &str) -> Result<Vec<(String, String)>, ConnectError> {
    let bad = |m: &str| ConnectError::BadUrl(m.to_owned());
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            if chars.peek().is_some() {
                return Err(bad("a connection parameter has no name"));
            }
            return Ok(pairs);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(&format!("connection parameter {key} has no `=`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.peek().copied() {
                None if quoted => {
                    return Err(bad(&format!("the value of {key} has no closing quote")))
                }
                None => break,
                Some('\'') if quoted => {
                    chars.next();
                    break;
                }
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => {
                    chars.next();
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                }
                Some(c) => {
                    chars.next();
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// The parsed URL: tokio-postgres' configuration and the settings it does
/// not read.
pub(super) fn parse_url(url: &str) -> Result<(Config, OwnSettings), ConnectError> {
    let split = split_own_settings(url)?;
    let config = Config::from_str(&split.rest).map_err(|e| ConnectError::BadUrl(pg_message(&e)))?;
    Ok((config, split.own))
}

/// `host:port/database` of a configuration: what may be logged.
pub(super) fn redacted(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    type Own<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn split(url: &str) -> (String, OwnSettings) {
        let s = split_own_settings(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        (s.rest, s.own)
    }

    fn own((sslmode, sslrootcert, pgbouncer): Own<'_>) -> OwnSettings {
        OwnSettings {
            sslmode: sslmode.map(str::to_owned),
            sslrootcert: sslrootcert.map(str::to_owned),
            pgbouncer: pgbouncer.map(str::to_owned),
        }
    }

    #[test]
    fn own_settings_leave_urls_and_key_value_strings() {
        // (connection string, what tokio-postgres reads, (sslmode, sslrootcert, pgbouncer))
        let cases: &[(&str, &str, Own<'_>)] = &[
            ("postgres://u@h/db", "postgres://u@h/db", (None, None, None)),
            (
                "postgres://u:p@h:6543/db?sslmode=verify-full",
                "postgres://u:p@h:6543/db",
                (Some("verify-full"), None, None),
            ),
            (
                "postgresql://u@h/db?application_name=m&sslmode=require&sslrootcert=%2Ftmp%2Fca%20file.crt&connect_timeout=5",
                "postgresql://u@h/db?application_name=m&connect_timeout=5",
                (Some("require"), Some("/tmp/ca file.crt"), None),
            ),
            (
                "postgres://u@h:6543/db?pgbouncer=true&sslrootcert=system",
                "postgres://u@h:6543/db",
                (None, Some("system"), Some("true")),
            ),
            (
                "host=h dbname=db sslmode=verify-ca sslrootcert='/a b/c\\'s.crt' pgbouncer=true",
                "host='h' dbname='db'",
                (Some("verify-ca"), Some("/a b/c's.crt"), Some("true")),
            ),
            (
                "host = h  password='it\\'s'",
                "host='h' password='it\\'s'",
                (None, None, None),
            ),
            ("", "", (None, None, None)),
        ];
        for (url, rest, settings) in cases {
            assert_eq!(split(url), ((*rest).to_owned(), own(*settings)), "{url}");
        }
    }

    #[test]
    fn what_remains_is_what_tokio_postgres_reads() {
        let (config, settings) =
            parse_url("host=h port=6543 user=u password='it\\'s' dbname=db sslmode=verify-full")
                .unwrap();
        assert_eq!(config.get_password(), Some(&b"it's"[..]));
        assert_eq!(redacted(&config), "h:6543/db");
        assert_eq!(settings, own((Some("verify-full"), None, None)));
    }

    #[test]
    fn malformed_key_value_strings_are_refused() {
        for bad in ["host", "host=h ='x'", "password='open"] {
            assert!(
                matches!(split_own_settings(bad), Err(ConnectError::BadUrl(_))),
                "{bad}"
            );
        }
    }
}

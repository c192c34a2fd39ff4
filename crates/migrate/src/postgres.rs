//! Connecting to a Postgres — the Supabase source of `export` and of
//! `verify`'s answer parity, and the database `restore` writes into — with
//! the TLS its URL asks for (`sslmode`, `sslrootcert`, read as libpq reads
//! them), refusing a transaction-mode pooler. Owns the one connect
//! function; never logs the URL, only `host:port/database`.

mod pooler;
mod tls;
mod url;

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio_postgres::{Client, Config};

use pooler::transaction_pooler;
pub use tls::{TrustedRoots, Verification};
use url::{parse_url, redacted};

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("the database URL is not valid: {0}")]
    BadUrl(String),
    #[error("the CA certificate {}: {message}", path.display())]
    CaCert { path: PathBuf, message: String },
    #[error("sslrootcert=system: {0} (install the system's CA certificates, or name a CA file with SSL_CERT_FILE)")]
    SystemRoots(String),
    #[error(
        "{database}: {reason}. A transaction-mode pooler does not support the prepared \
         statements migrate's queries use: connect through the session pooler (port 5432 on \
         the pooler host) or directly (db.<project-ref>.supabase.co, port 5432) instead"
    )]
    TransactionPooler { database: String, reason: String },
    #[error("connecting to {database}: {message}")]
    Connect { database: String, message: String },
}

impl ConnectError {
    /// A mistake in the command line, URL or trust store (exit 2), not a
    /// failed connection.
    pub fn is_usage(&self) -> bool {
        !matches!(self, Self::Connect { .. })
    }
}

/// How a connection uses TLS: libpq's `sslmode` values (but `allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain text when it does not; the
    /// certificate is not checked. The default, as in libpq.
    Prefer,
    /// TLS or no connection. The certificate is not checked — unless a CA
    /// certificate is given, then its chain is (libpq does the same when
    /// its root certificate file exists).
    Require,
    /// TLS, the certificate's chain checked against the trusted CAs; any host name.
    VerifyCa,
    /// TLS, the chain checked, and the certificate must be for the host
    /// connected to.
    VerifyFull,
}

impl SslMode {
    const ALL: [Self; 5] = [
        Self::Disable,
        Self::Prefer,
        Self::Require,
        Self::VerifyCa,
        Self::VerifyFull,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// The mode an `sslmode` value names; `allow` and anything else
    /// unknown is refused with the valid values.
    fn parse(value: &str) -> Result<Self, ConnectError> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == value)
            .ok_or_else(|| {
                let valid: Vec<_> = Self::ALL.iter().map(|m| m.as_str()).collect();
                ConnectError::BadUrl(format!(
                    "sslmode={value} is not supported; use one of {}",
                    valid.join(", ")
                ))
            })
    }
}

/// What a connection will do about TLS, decided from the URL and `--ca-cert`
/// before any byte is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPlan {
    pub mode: SslMode,
    pub verification: Verification,
    /// The roots a checked certificate may lead to, besides `ca_files`.
    pub roots: TrustedRoots,
    /// CA certificate files trusted besides `roots`.
    pub ca_files: Vec<PathBuf>,
}

/// libpq's `sslrootcert` value naming the system's trusted CAs.
const SSLROOTCERT_SYSTEM: &str = "system";

/// The `sslmode` values weaker than `verify-full`, which libpq refuses
/// alongside `sslrootcert=system`.
const WEAKER_THAN_VERIFY_FULL: [&str; 5] = ["disable", "allow", "prefer", "require", "verify-ca"];

/// Decides the TLS of a connection from the URL's `sslmode` and
/// `sslrootcert` (as written) and `--ca-cert`. A CA certificate
/// (`--ca-cert` or `sslrootcert=FILE`) is refused where nothing would check
/// it (`disable`, `prefer`), rather than silently ignored as libpq does:
/// whoever passes one expects the server to be checked against it.
pub fn plan_tls(
    sslmode: Option<&str>,
    ca_cert: Option<&Path>,
    sslrootcert: Option<&str>,
) -> Result<TlsPlan, ConnectError> {
    let system = sslrootcert == Some(SSLROOTCERT_SYSTEM);
    // As libpq 16+ does: `sslrootcert=system` makes verify-full the default
    // and refuses any weaker mode, since a chain to one of the many public
    // CAs proves nothing unless the certificate is also for the host asked
    // for (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-SSLROOTCERT).
    // The message is libpq's own.
    let mode = match sslmode {
        Some(weak) if system && WEAKER_THAN_VERIFY_FULL.contains(&weak) => {
            return Err(ConnectError::BadUrl(format!(
                "weak sslmode \"{weak}\" may not be used with sslrootcert=system (use \"verify-full\")"
            )));
        }
        Some(value) => SslMode::parse(value)?,
        None if system => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    let mut ca_files: Vec<PathBuf> = ca_cert.map(Path::to_path_buf).into_iter().collect();
    let roots = if system {
        TrustedRoots::System
    } else {
        if let Some(file) = sslrootcert {
            ca_files.push(PathBuf::from(file));
        }
        TrustedRoots::MozillaAndSystem
    };
    let verification = match mode {
        SslMode::Disable | SslMode::Prefer => {
            if !ca_files.is_empty() {
                return Err(ConnectError::BadUrl(format!(
                    "a CA certificate is given but sslmode={} checks no certificate: \
                     add sslmode=verify-full (or verify-ca, require) to the URL",
                    mode.as_str()
                )));
            }
            Verification::None
        }
        SslMode::Require if ca_files.is_empty() => Verification::None,
        SslMode::Require | SslMode::VerifyCa => Verification::Chain,
        SslMode::VerifyFull => Verification::ChainAndName,
    };
    Ok(TlsPlan {
        mode,
        verification,
        roots,
        ca_files,
    })
}

/// A Postgres to connect to: its URL (a `postgres://` URL or a `key=value`
/// string; never logged nor printed by `Debug`) and a CA certificate file
/// to trust (`--ca-cert`).
#[derive(Clone)]
pub struct Database {
    url: String,
    ca_cert: Option<PathBuf>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.name().unwrap_or_default())
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

impl Database {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_cert: None,
        }
    }

    /// Trusts the CA certificate(s) in this PEM file too.
    #[must_use]
    pub fn with_ca_cert(mut self, file: Option<PathBuf>) -> Self {
        self.ca_cert = file;
        self
    }

    /// `host:port/database`: what may be logged.
    pub fn name(&self) -> Result<String, ConnectError> {
        Ok(redacted(&parse_url(&self.url)?.0))
    }

    /// What [`Self::connect`] decides before sending a byte: the URL read,
    /// a transaction pooler refused, the TLS planned.
    fn prepare(&self) -> Result<(Config, TlsPlan), ConnectError> {
        let (config, own) = parse_url(&self.url)?;
        if let Some(reason) = transaction_pooler(&config, own.pgbouncer.as_deref()) {
            return Err(ConnectError::TransactionPooler {
                database: redacted(&config),
                reason,
            });
        }
        let plan = plan_tls(
            own.sslmode.as_deref(),
            self.ca_cert.as_deref(),
            own.sslrootcert.as_deref(),
        )?;
        Ok((config, plan))
    }

    /// Refuses, without connecting, what `connect` would refuse before
    /// sending a byte (a bad URL or CA option, a transaction pooler), so a
    /// command can stop before its other work; returns the TLS plan.
    pub fn check(&self) -> Result<TlsPlan, ConnectError> {
        Ok(self.prepare()?.1)
    }

    /// Connects; the connection's task runs on the Tokio runtime until the
    /// client is dropped.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let (mut config, plan) = self.prepare()?;
        let database = redacted(&config);
        config.ssl_mode(match plan.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let connector = tls::connector(&plan)?;
        let (client, connection) =
            config
                .connect(connector)
                .await
                .map_err(|e| ConnectError::Connect {
                    database,
                    message: tls::explain(&e, &plan),
                })?;
        tokio::spawn(async move {
            // Errors surface on the client's next call as well.
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// The server's own message when there is one, else the error with its
/// causes: tokio-postgres' `Display` names only the kind ("db error",
/// "error connecting to server").
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut message = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        next = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode: &str, ca_cert: bool, root: &str) -> Result<TlsPlan, ConnectError> {
        plan_tls(
            (!mode.is_empty()).then_some(mode),
            ca_cert.then_some(Path::new("ca.crt")),
            (!root.is_empty()).then_some(root),
        )
    }

    #[test]
    fn each_sslmode_plans_its_verification() {
        use SslMode::{Disable, Prefer, Require, VerifyCa, VerifyFull};
        use TrustedRoots::{MozillaAndSystem as Both, System};
        use Verification::{Chain, ChainAndName, None as Unchecked};
        // (sslmode, --ca-cert given, sslrootcert, mode, verification, roots, CA files)
        let cases = [
            ("", false, "", Prefer, Unchecked, Both, 0),
            ("disable", false, "", Disable, Unchecked, Both, 0),
            ("prefer", false, "", Prefer, Unchecked, Both, 0),
            ("require", false, "", Require, Unchecked, Both, 0),
            ("require", true, "", Require, Chain, Both, 1),
            ("require", false, "root.crt", Require, Chain, Both, 1),
            ("verify-ca", false, "", VerifyCa, Chain, Both, 0),
            ("verify-full", false, "", VerifyFull, ChainAndName, Both, 0),
            (
                "verify-full",
                true,
                "root.crt",
                VerifyFull,
                ChainAndName,
                Both,
                2,
            ),
            // sslrootcert=system: verify-full by default, the system's roots only.
            ("", false, "system", VerifyFull, ChainAndName, System, 0),
            (
                "verify-full",
                false,
                "system",
                VerifyFull,
                ChainAndName,
                System,
                0,
            ),
            ("", true, "system", VerifyFull, ChainAndName, System, 1),
        ];
        for (sslmode, ca_cert, root, mode, verification, roots, files) in cases {
            let case = format!("{sslmode} {ca_cert} {root}");
            let plan = plan(sslmode, ca_cert, root).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(plan.mode, mode, "{case}");
            assert_eq!(plan.verification, verification, "{case}");
            assert_eq!(plan.roots, roots, "{case}");
            assert_eq!(plan.ca_files.len(), files, "{case}");
        }
    }

    #[test]
    fn sslrootcert_system_refuses_every_weaker_sslmode_as_libpq_does() {
        for (mode, ca_cert) in [
            ("disable", false),
            ("allow", false),
            ("prefer", false),
            ("require", false),
            ("require", true),
            ("verify-ca", false),
        ] {
            let err = plan(mode, ca_cert, "system").unwrap_err();
            assert!(err.is_usage(), "{mode}");
            assert!(
                err.to_string().ends_with(&format!(
                    "weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \"verify-full\")"
                )),
                "{mode}: {err}"
            );
        }
        // A value libpq does not know either is refused as unknown.
        let err = plan("verify_full", false, "system").unwrap_err();
        assert!(err.to_string().contains("is not supported"), "{err}");
    }

    #[test]
    fn a_ca_certificate_nothing_would_check_is_refused() {
        for mode in ["", "prefer", "disable"] {
            let err = plan(mode, true, "").unwrap_err();
            assert!(err.is_usage());
            assert!(err.to_string().contains("verify-full"), "{err}");
            assert!(plan(mode, false, "root.crt").is_err());
        }
    }

    #[test]
    fn unknown_sslmodes_are_refused_with_the_valid_ones() {
        for mode in ["allow", "VERIFY-FULL", "on"] {
            let err = plan(mode, false, "").unwrap_err();
            let message = err.to_string();
            assert!(err.is_usage());
            assert!(
                message.contains(&format!("sslmode={mode}"))
                    && message.contains("disable, prefer, require, verify-ca, verify-full"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_transaction_pooler_is_refused_before_connecting_naming_the_fix() {
        for url in [
            "postgres://postgres.ref:secret@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
            "postgres://postgres.ref:secret@aws-0-eu-central-1.pooler.supabase.com:6543/postgres?pgbouncer=true&sslmode=require",
            "host=db.ref.supabase.co port=6543 user=postgres password=secret dbname=postgres",
            "postgres://u:secret@127.0.0.1:6432/db?pgbouncer=true",
        ] {
            let err = Database::new(url).check().unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, ConnectError::TransactionPooler { .. }) && err.is_usage(),
                "{url}: {message}"
            );
            assert!(
                message.contains("session pooler (port 5432")
                    && message.contains("prepared statements")
                    && !message.contains("secret"),
                "{url}: {message}"
            );
        }
        // The session pooler and the direct connection pass.
        for url in [
            "postgres://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres?sslrootcert=system",
            "postgres://postgres:pw@db.ref.supabase.co:5432/postgres?sslmode=verify-full",
        ] {
            assert!(Database::new(url).check().is_ok(), "{url}");
        }
    }

    #[test]
    fn debug_never_prints_the_url() {
        let db = Database::new("postgres://user:secret@h:5433/db?sslmode=require");
        let printed = format!("{db:?}");
        assert!(
            printed.contains("h:5433/db") && !printed.contains("secret"),
            "{printed}"
        );
    }
}

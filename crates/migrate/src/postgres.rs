//! Connecting to a Postgres — the Supabase source of `export` and of
//! `verify`'s answer parity, and the database `restore` writes into — with
//! the TLS its URL asks for (`sslmode`, `sslrootcert`, read as libpq reads
//! them). Owns the one connect function; never logs the URL, only
//! `host:port/database`.

mod tls;
mod url;

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio_postgres::Client;

pub use tls::Verification;
use url::{parse_url, redacted};

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("the database URL is not valid: {0}")]
    BadUrl(String),
    #[error("the CA certificate {}: {message}", path.display())]
    CaCert { path: PathBuf, message: String },
    #[error("connecting to {database}: {message}")]
    Connect { database: String, message: String },
}

impl ConnectError {
    /// A mistake in the command line or URL (exit 2), not a failed connection.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::BadUrl(_) | Self::CaCert { .. })
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
    /// CA certificate files trusted besides the system's and Mozilla's roots.
    pub ca_files: Vec<PathBuf>,
}

/// Decides the TLS of a connection. A CA certificate (`--ca-cert` or
/// `sslrootcert=`) is refused where nothing would check it (`disable`,
/// `prefer`), rather than silently ignored as libpq does: whoever passes one
/// expects the server to be checked against it.
pub fn plan_tls(
    mode: Option<SslMode>,
    ca_cert: Option<&Path>,
    sslrootcert: Option<&str>,
) -> Result<TlsPlan, ConnectError> {
    let mode = mode.unwrap_or(SslMode::Prefer);
    let mut ca_files: Vec<PathBuf> = ca_cert.map(Path::to_path_buf).into_iter().collect();
    // libpq's `sslrootcert=system` names the system's roots, trusted anyway.
    if let Some(file) = sslrootcert.filter(|f| *f != "system") {
        ca_files.push(PathBuf::from(file));
    }
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

    /// What the connection will do about TLS.
    pub fn tls_plan(&self) -> Result<TlsPlan, ConnectError> {
        let (_, mode, sslrootcert) = parse_url(&self.url)?;
        plan_tls(mode, self.ca_cert.as_deref(), sslrootcert.as_deref())
    }

    /// Connects; the connection's task runs on the Tokio runtime until the
    /// client is dropped.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let (mut config, mode, sslrootcert) = parse_url(&self.url)?;
        let plan = plan_tls(mode, self.ca_cert.as_deref(), sslrootcert.as_deref())?;
        let database = redacted(&config);
        config.ssl_mode(match plan.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let connector = tls::connector(plan.verification, &plan.ca_files)?;
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

    #[test]
    fn each_sslmode_plans_its_verification() {
        use Verification::{Chain, ChainAndName, None as Unchecked};
        // (sslmode, --ca-cert given, sslrootcert, verification, CA files)
        let cases = [
            ("", false, "", Unchecked, 0),
            ("disable", false, "", Unchecked, 0),
            ("prefer", false, "", Unchecked, 0),
            ("require", false, "", Unchecked, 0),
            ("require", true, "", Chain, 1),
            ("require", false, "root.crt", Chain, 1),
            ("require", false, "system", Unchecked, 0),
            ("verify-ca", false, "", Chain, 0),
            ("verify-full", false, "", ChainAndName, 0),
            ("verify-full", true, "root.crt", ChainAndName, 2),
            ("verify-full", false, "system", ChainAndName, 0),
        ];
        for (mode, ca_cert, root, verification, files) in cases {
            let parsed = (!mode.is_empty()).then(|| SslMode::parse(mode).unwrap());
            let plan = plan_tls(
                parsed,
                ca_cert.then_some(Path::new("ca.crt")),
                (!root.is_empty()).then_some(root),
            )
            .unwrap();
            let case = format!("{mode} {ca_cert} {root}");
            assert_eq!(plan.verification, verification, "{case}");
            assert_eq!(plan.ca_files.len(), files, "{case}");
            assert_eq!(plan.mode, parsed.unwrap_or(SslMode::Prefer), "{case}");
        }
    }

    #[test]
    fn a_ca_certificate_nothing_would_check_is_refused() {
        for mode in [Option::None, Some(SslMode::Prefer), Some(SslMode::Disable)] {
            let err = plan_tls(mode, Some(Path::new("ca.crt")), Option::None).unwrap_err();
            assert!(err.is_usage());
            assert!(err.to_string().contains("verify-full"), "{err}");
            assert!(plan_tls(mode, Option::None, Some("root.crt")).is_err());
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

//! The rustls side of a Postgres connection: the client configuration an
//! `sslmode` asks for, the roots it trusts, and what a failed handshake
//! means for whoever runs the command. Certificates go unchecked only where
//! the mode says so (`prefer`, `require` without a CA), never for `verify-*`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{pg_message, ConnectError, TlsPlan};

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Not at all: the connection is encrypted, the server not authenticated.
    None,
    /// Its chain must lead to a trusted CA; the host name is not compared.
    Chain,
    /// The chain, and the certificate must be for the host connected to.
    ChainAndName,
}

/// Which CA roots a checked certificate may lead to, besides the CA files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedRoots {
    /// Mozilla's roots and the system's.
    MozillaAndSystem,
    /// The system's only, as libpq reads `sslrootcert=system` (OpenSSL's
    /// default store, which `SSL_CERT_FILE` and `SSL_CERT_DIR` replace).
    System,
}

/// The crypto provider reqwest already builds rustls with (aws-lc-rs), so
/// the binary carries one C crypto library, not two.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn ca_error(path: &std::path::Path, message: impl Into<String>) -> ConnectError {
    ConnectError::CaCert {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The roots `trusted` names — Mozilla's (always there, even in a bare
/// container) and the system's, or the system's only — and every
/// certificate of the given PEM files.
fn trusted_roots(
    trusted: TrustedRoots,
    ca_files: &[PathBuf],
) -> Result<RootCertStore, ConnectError> {
    let mut roots = RootCertStore::empty();
    if trusted == TrustedRoots::MozillaAndSystem {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    // A system store that cannot be read leaves the other roots: the check
    // stays as strict, it only trusts fewer CAs.
    let system = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(system.certs);
    if trusted == TrustedRoots::System && added == 0 && ca_files.is_empty() {
        // With nothing else trusted, every certificate would be refused as
        // from an unknown CA; say why instead.
        let why: Vec<String> = system.errors.iter().map(ToString::to_string).collect();
        return Err(ConnectError::SystemRoots(if why.is_empty() {
            "the system's trust store holds no CA certificate".to_owned()
        } else {
            format!(
                "the system's trust store cannot be read: {}",
                why.join("; ")
            )
        }));
    }
    for path in ca_files {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(path, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(path, e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error(
                path,
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ca_error(path, format!("not a usable CA certificate: {e}")))?;
        }
    }
    Ok(roots)
}

/// The connector for a plan's verification. `ChainAndName` is rustls'
/// own WebPKI verifier, which checks the chain and that the certificate is
/// for the server name tokio-postgres-rustls passes: the URL's host (a DNS
/// name or an IP address).
pub(super) fn connector(plan: &TlsPlan) -> Result<MakeRustlsConnect, ConnectError> {
    let provider = provider();
    let roots = || trusted_roots(plan.roots, &plan.ca_files).map(Arc::new);
    let verifier: Arc<dyn ServerCertVerifier> = match plan.verification {
        Verification::None => Arc::new(Unchecked(provider.clone())),
        Verification::Chain => Arc::new(ChainOnly {
            roots: roots()?,
            provider: provider.clone(),
        }),
        Verification::ChainAndName => {
            WebPkiServerVerifier::builder_with_provider(roots()?, provider.clone())
                .build()
                .map_err(|e| ConnectError::BadUrl(format!("no usable trusted roots: {e}")))?
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::BadUrl(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer`, and `require` without a CA: encrypted, any certificate. The
/// handshake's signatures are still checked, so the server must hold the
/// key of the certificate it shows.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (and `require` with a CA): the chain must lead to a trusted
/// root; the host name is not compared.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls error inside a failed connection, if the handshake failed.
/// tokio-rustls hands it over wrapped in an `io::Error`, whose `source()`
/// skips it, so each level is also unwrapped by hand.
fn rustls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// tokio-postgres says that the server answered "no" to the TLS request only
/// in the text of the error's cause; `tests/tls.rs` pins the wording.
fn server_refused_tls(e: &tokio_postgres::Error) -> bool {
    std::error::Error::source(e)
        .is_some_and(|cause| cause.to_string() == "server does not support TLS")
}

/// What a failed connection means, and what to do about it.
pub(super) fn explain(e: &tokio_postgres::Error, plan: &TlsPlan) -> String {
    let mode = plan.mode.as_str();
    if server_refused_tls(e) {
        return format!(
            "the server does not accept TLS connections, and sslmode={mode} requires TLS \
             (turn `ssl` on in the server, or use sslmode=prefer or disable only on a network you trust)"
        );
    }
    let Some(tls) = rustls_error(e) else {
        return pg_message(e);
    };
    let hint = match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            if plan.roots == TrustedRoots::System =>
        {
            "the server's certificate is not signed by a trusted CA: sslrootcert=system trusts \
             the system's CAs only; pass the CA certificate that signed it with --ca-cert FILE, \
             or sslrootcert=FILE in the URL instead of system"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not signed by a trusted CA (sslmode={mode}): pass the \
             CA certificate that signed it with --ca-cert FILE (or sslrootcert=FILE in the URL)"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate is not valid for the host name in the URL (sslmode={mode}): \
             connect by a name the certificate lists, or check the CA only with sslmode=verify-ca"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => format!("the server's certificate is outside its validity period (sslmode={mode})"),
        _ => format!("the TLS handshake failed (sslmode={mode})"),
    };
    format!("{hint}: {tls}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mozillas_roots_are_trusted_unless_the_system_is_named() {
        // Even where the system has no store at all (a bare container).
        let roots = trusted_roots(TrustedRoots::MozillaAndSystem, &[]).unwrap();
        assert!(roots.len() >= webpki_roots::TLS_SERVER_ROOTS.len());
        // `sslrootcert=system` trusts what the system trusts, or says why
        // nothing (`tests/tls.rs` empties the store through SSL_CERT_FILE).
        match trusted_roots(TrustedRoots::System, &[]) {
            Ok(system) => assert_eq!(
                system.len() + webpki_roots::TLS_SERVER_ROOTS.len(),
                roots.len()
            ),
            Err(e) => assert!(matches!(e, ConnectError::SystemRoots(_)), "{e}"),
        }
    }
}

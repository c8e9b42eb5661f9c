//! TLS for `https://` engines (both runtimes) and for databases: the one
//! place that decides what is trusted and words what failed.
//!
//! Trust is the system store as Go reads it on Linux (`SSL_CERT_FILE`,
//! `SSL_CERT_DIR`, else the distribution's bundle) plus `--ca-file`, read
//! once, at the first connection that needs it. Verification is always on
//! for engines; resumption is off, so every connection checks the
//! certificate as it is now. `--tls-client-cert` is shown to engines only.
//! Databases check what [`ServerVerification`] says (PostgreSQL's
//! `sslmode`; Redis always in full). Every failure text starts with
//! `TLS_ERROR_PREFIX`, which is how a journal's text is classed
//! [`ProbeClass::Tls`] again.
//!
//! [`ProbeClass::Tls`]: healthprobe_core::tick::ProbeClass::Tls

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WantsClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ConfigBuilder, DigitallySignedStruct,
    RootCertStore, SignatureScheme, WantsVerifier,
};

/// The start of every TLS failure's text.
pub(crate) const TLS_ERROR_PREFIX: &str = "tls: ";

/// Where trust and the client certificate come from (`--ca-file`,
/// `--tls-client-cert`, `--tls-client-key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct TlsOptions {
    /// PEM certificates to trust besides the system store (which honours
    /// SSL_CERT_FILE and SSL_CERT_DIR), a private CA: for https:// engines,
    /// PostgreSQL with sslmode=verify-ca or verify-full, and rediss://.
    #[cfg_attr(
        feature = "cli",
        arg(long = "ca-file", env = "HEALTHPROBE_CA_FILE", value_name = "PEM")
    )]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to https:// engines that ask for one
    /// (mTLS; never to PostgreSQL or Redis); with --tls-client-key.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "tls-client-cert",
            env = "HEALTHPROBE_TLS_CLIENT_CERT",
            value_name = "PEM",
            requires = "client_key"
        )
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert (PKCS#8, PKCS#1 or SEC1).
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "tls-client-key",
            env = "HEALTHPROBE_TLS_CLIENT_KEY",
            value_name = "PEM",
            requires = "client_cert"
        )
    )]
    pub client_key: Option<PathBuf>,
}

/// A TLS setting that cannot be used, naming the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// Which setting (`--ca-file`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file held no usable PEM certificate or key.
    #[error("{what} {}: {why}", path.display())]
    Invalid {
        /// Which setting (`--ca-file`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Only one of `--tls-client-cert` and `--tls-client-key` was given.
    #[error("--tls-client-cert and --tls-client-key go together: give both or neither")]
    ClientCertWithoutKey,
}

/// The TLS client of a run: its trust settings, its client certificate,
/// and the rustls configurations built from them. Cheap to clone (shared).
#[derive(Clone)]
pub struct TlsClient {
    inner: Arc<Inner>,
}

type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

struct Inner {
    ca_file: Option<PathBuf>,
    extra_roots: Vec<CertificateDer<'static>>,
    client_auth: Option<ClientAuth>,
    /// The store of trusted roots, and the certificates it accepted (for
    /// [`TlsClient::trusted_roots_pem`]), read at first use.
    trust: OnceLock<(Arc<RootCertStore>, Vec<CertificateDer<'static>>)>,
    probe_config: OnceLock<Arc<ClientConfig>>,
}

/// What a database connection checks of the server's certificate. The
/// handshake's signatures are checked in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerVerification {
    /// Any certificate (`sslmode=prefer` and `require`, as libpq without a
    /// root certificate file): safe against a passive eavesdropper only.
    EncryptOnly,
    /// The chain up to a trusted root, not the host name: `sslmode=verify-ca`.
    Chain,
    /// The chain and the host name (or IP address): `sslmode=verify-full`, `rediss://`.
    Full,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("ca_file", &self.inner.ca_file)
            .field("extra_roots", &self.inner.extra_roots.len())
            .field("client_cert", &self.inner.client_auth.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for TlsClient {
    fn default() -> Self {
        Self::system()
    }
}

impl TlsClient {
    /// Trust the system store only, no client certificate.
    pub fn system() -> Self {
        Self::new(&TlsOptions::default()).expect("no file to read, nothing to refuse")
    }

    /// The client for `options`: the CA file and the client certificate are
    /// read and checked now (a key that does not match its certificate is
    /// refused here, not at the first handshake).
    pub fn new(options: &TlsOptions) -> Result<Self, TlsSetupError> {
        let extra_roots = match &options.ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        let client_auth = match (&options.client_cert, &options.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(read_client_auth(cert, key)?),
            _ => return Err(TlsSetupError::ClientCertWithoutKey),
        };
        let inner = Inner {
            ca_file: options.ca_file.clone(),
            extra_roots,
            client_auth,
            trust: OnceLock::new(),
            probe_config: OnceLock::new(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The trusted roots: the system store, then `--ca-file`.
    fn trust(&self) -> &(Arc<RootCertStore>, Vec<CertificateDer<'static>>) {
        self.inner.trust.get_or_init(|| {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, "a certificate of the system trust store cannot be read");
            }
            let offered = native.certs.len() + self.inner.extra_roots.len();
            let mut store = RootCertStore::empty();
            let certs: Vec<_> = (native.certs.into_iter())
                .chain(self.inner.extra_roots.iter().cloned())
                .filter(|cert| store.add(cert.clone()).is_ok())
                .collect();
            let ignored = offered - certs.len();
            tracing::debug!(trusted = certs.len(), ignored, "TLS trust store loaded");
            if certs.is_empty() {
                tracing::warn!(
                    "no trusted TLS certificate: the system store is empty and no --ca-file was \
                     given, so every https probe fails as signed by unknown authority"
                );
            }
            (Arc::new(store), certs)
        })
    }

    /// The configuration of every `https://` probe (both runtimes): our
    /// trust, the client certificate, resumption off (every new connection
    /// verifies the certificate as it is now), ALPN `http/1.1` only.
    pub(crate) fn probe_config(&self) -> Arc<ClientConfig> {
        let config = self.inner.probe_config.get_or_init(|| {
            let builder = builder().with_root_certificates(Arc::clone(&self.trust().0));
            let mut config = match &self.inner.client_auth {
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .expect("the client certificate was checked by TlsClient::new"),
                None => builder.with_no_client_auth(),
            };
            config.resumption = Resumption::disabled();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        });
        Arc::clone(config)
    }

    /// The configuration of a database connection (PostgreSQL, Redis) that
    /// checks what `verification` says: the probes' trust, no ALPN, no
    /// client certificate.
    pub fn database_config(&self, verification: ServerVerification) -> Arc<ClientConfig> {
        let roots = Arc::clone(&self.trust().0);
        let builder = match verification {
            ServerVerification::Full => builder().with_root_certificates(roots),
            ServerVerification::Chain => lenient(Lenient::Chain(chain_verifier(roots))),
            ServerVerification::EncryptOnly => lenient(Lenient::AnyCertificate),
        };
        Arc::new(builder.with_no_client_auth())
    }

    /// Every trusted certificate as one PEM bundle, for redis-rs, whose
    /// `root_cert` takes PEM only and replaces the system store.
    #[cfg(feature = "redis")]
    pub(crate) fn trusted_roots_pem(&self) -> String {
        let certs = self.trust().1.iter();
        pem::encode_many(
            &certs
                .map(|cert| pem::Pem::new("CERTIFICATE", cert.to_vec()))
                .collect::<Vec<_>>(),
        )
    }
}

/// A configuration on [`provider`], TLS 1.2 and 1.3, before its verifier.
fn builder() -> ConfigBuilder<ClientConfig, WantsVerifier> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports TLS 1.2 and 1.3")
}

fn lenient(verifier: Lenient) -> ConfigBuilder<ClientConfig, WantsClientCert> {
    builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
}

/// rustls' own verifier over `roots`, or `None` when nothing is trusted
/// (rustls refuses a verifier without roots).
fn chain_verifier(roots: Arc<RootCertStore>) -> Option<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .ok()
}

/// A database verifier short of the full check; the handshake's signatures
/// are always checked against the certificate presented.
#[derive(Debug)]
enum Lenient {
    /// Any certificate ([`ServerVerification::EncryptOnly`]).
    AnyCertificate,
    /// rustls' verifier, its name-mismatch error alone ignored
    /// ([`ServerVerification::Chain`]): rustls checks the name last, once
    /// the chain, dates and purpose passed.
    Chain(Option<Arc<WebPkiServerVerifier>>),
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let inner = match self {
            Self::AnyCertificate => return Ok(ServerCertVerified::assertion()),
            Self::Chain(None) => {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                ));
            }
            Self::Chain(Some(inner)) => inner,
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// The crypto provider of every TLS connection (probes, PostgreSQL,
/// Redis): rustls' `ring` provider, as it ships.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn invalid(what: &'static str, path: &Path, why: String) -> TlsSetupError {
    TlsSetupError::Invalid {
        what,
        path: path.to_owned(),
        why,
    }
}

/// The PEM certificates of `path`, at least one.
fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_slice_iter(&read(what, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(what, path, format!("not a PEM certificate file: {err}")))?;
    if certs.is_empty() {
        return Err(invalid(what, path, "holds no PEM certificate".to_owned()));
    }
    Ok(certs)
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = read_certs("--ca-file", path)?;
    let mut check = RootCertStore::empty();
    for (index, cert) in certs.iter().enumerate() {
        check.add(cert.clone()).map_err(|err| {
            let why = format!("certificate {} cannot be a trust anchor: {err}", index + 1);
            invalid("--ca-file", path, why)
        })?;
    }
    Ok(certs)
}

fn read_client_auth(cert: &Path, key: &Path) -> Result<ClientAuth, TlsSetupError> {
    const KEY: &str = "--tls-client-key";
    let chain = read_certs("--tls-client-cert", cert)?;
    let private_key = PrivateKeyDer::from_pem_slice(&read(KEY, key)?).map_err(|err| {
        let why = format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {err}");
        invalid(KEY, key, why)
    })?;
    // Building a configuration checks that the key is usable and matches the certificate.
    builder()
        .with_root_certificates(RootCertStore::empty())
        .with_client_auth_cert(chain.clone(), private_key.clone_key())
        .map_err(|err| {
            let why = format!(
                "cannot be used with the certificate of {}: {err}",
                cert.display()
            );
            invalid(KEY, key, why)
        })?;
    Ok((chain, private_key))
}

/// The name a probe verifies and sends as SNI: the endpoint's host, without
/// the brackets of an IPv6 literal.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare)
        .map(|name| name.to_owned())
        .map_err(|_| format!("{TLS_ERROR_PREFIX}{bare:?} is not a valid TLS server name"))
}

/// A TLS failure already worded, carried inside an [`io::Error`] so that
/// the probe's error description classes it `ProbeClass::Tls`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TlsFailure(pub(crate) String);

/// The text of a handshake that did not finish within the probe timeout.
pub(crate) fn handshake_timeout() -> String {
    format!("{TLS_ERROR_PREFIX}handshake timeout")
}

/// The text of a TLS handshake that ended in the I/O error `err`, if its
/// kind tells how (a timeout, a close, a reset).
pub(crate) fn handshake_failure(err: &io::Error) -> Option<String> {
    let text = match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "handshake timeout",
        io::ErrorKind::UnexpectedEof => "the engine closed the connection during the handshake",
        io::ErrorKind::ConnectionReset => "the engine reset the connection during the handshake",
        _ => return None,
    };
    Some(format!("{TLS_ERROR_PREFIX}{text}"))
}

/// A readable one-line text for a rustls failure of a probe, starting with
/// [`TLS_ERROR_PREFIX`]. `host` is the name the certificate was checked
/// against, when known.
pub(crate) fn describe_tls(err: &rustls::Error, host: Option<&str>) -> String {
    describe(err, host, true)
}

/// [`describe_tls`] for a database connection (PostgreSQL, Redis): the same
/// certificate texts, the rest worded for a server rather than an engine.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) fn describe_database_tls(err: &rustls::Error, host: Option<&str>) -> String {
    describe(err, host, false)
}

fn describe(err: &rustls::Error, host: Option<&str>, engine: bool) -> String {
    use rustls::Error as E;
    use rustls::InvalidMessage as M;
    let (who, not_tls, client_cert) = if engine {
        let not_tls = " (an http:// engine behind an https:// endpoint?)";
        ("engine", not_tls, "--tls-client-cert")
    } else {
        ("server", "", "none is sent to databases")
    };
    let text = match err {
        E::InvalidCertificate(CertificateError::NotValidForName) if host.is_none() => {
            format!("certificate is not valid for the {who}'s host")
        }
        E::InvalidCertificate(cert) => describe_certificate(cert, host),
        // The first bytes back are no TLS record: an HTTP server, most often.
        E::InvalidMessage(M::InvalidContentType | M::UnknownProtocolVersion) => {
            format!("the {who} does not speak TLS{not_tls}")
        }
        E::AlertReceived(AlertDescription::CertificateRequired) => {
            format!("the {who} requires a client certificate ({client_cert})")
        }
        E::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied),
        ) if engine => format!(
            "the engine refused our client certificate ({})",
            alert_name(*alert)
        ),
        E::AlertReceived(alert) => {
            format!("the {who} refused the handshake ({})", alert_name(*alert))
        }
        E::PeerIncompatible(why) => format!("no common TLS parameters with the {who} ({why:?})"),
        other => other.to_string(),
    };
    format!("{TLS_ERROR_PREFIX}{text}")
}

/// The TLS failure somewhere in `err`'s chain, worded by [`describe_database_tls`].
#[cfg(feature = "postgres")]
pub(crate) fn database_tls_failure(
    err: &(dyn std::error::Error + 'static),
    host: Option<&str>,
) -> Option<String> {
    let tls = error_chain(err).find_map(|err| err.downcast_ref::<rustls::Error>());
    tls.map(|tls| describe_database_tls(tls, host))
}

/// `err` and its causes, an I/O error's payload included (its `source`
/// skips it), for the probers and the databases to find what failed.
pub(crate) fn error_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |err| match err.downcast_ref::<io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => err.source(),
    })
}

fn describe_certificate(err: &CertificateError, host: Option<&str>) -> String {
    use CertificateError as C;
    match err {
        C::UnknownIssuer => "certificate signed by unknown authority".to_owned(),
        C::Expired => "certificate has expired".to_owned(),
        C::ExpiredContext { not_after, .. } => format!(
            "certificate has expired (valid until {})",
            unix_time(not_after.as_secs())
        ),
        C::NotValidYet => "certificate is not valid yet".to_owned(),
        C::NotValidYetContext { not_before, .. } => format!(
            "certificate is not valid yet (valid from {})",
            unix_time(not_before.as_secs())
        ),
        C::NotValidForName => format!(
            "certificate is not valid for {}",
            host.unwrap_or("the engine's host")
        ),
        C::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = match expected {
                ServerName::DnsName(name) => name.as_ref().to_owned(),
                ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
                other => format!("{other:?}"),
            };
            if presented.is_empty() {
                format!("certificate is not valid for {expected}")
            } else {
                let presented: Vec<&str> = presented.iter().map(|name| bare_name(name)).collect();
                format!(
                    "certificate is valid for {}, not {expected}",
                    presented.join(", ")
                )
            }
        }
        C::Revoked => "certificate has been revoked".to_owned(),
        C::BadSignature => "certificate has a bad signature".to_owned(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "certificate is not for a TLS server".to_owned()
        }
        other => format!("invalid certificate ({other:?})"),
    }
}

/// A presented name as rustls words it (`DnsName("a.test")`,
/// `IpAddress(10.0.0.1)`), without the wrapping.
fn bare_name(presented: &str) -> &str {
    for (start, end) in [
        ("DnsName(\"", "\")"),
        ("IpAddress(", ")"),
        ("UniformResourceIdentifier(\"", "\")"),
    ] {
        if let Some(inner) = presented
            .strip_prefix(start)
            .and_then(|rest| rest.strip_suffix(end))
        {
            return inner;
        }
    }
    presented
}

fn alert_name(alert: AlertDescription) -> String {
    // `BadCertificate` → `bad certificate`, `UnknownCA` → `unknown ca`.
    let debug = format!("{alert:?}");
    let mut name = String::with_capacity(debug.len() + 4);
    let mut after_lowercase = false;
    for ch in debug.chars() {
        if ch.is_ascii_uppercase() && after_lowercase {
            name.push(' ');
        }
        after_lowercase = ch.is_ascii_lowercase();
        name.push(ch.to_ascii_lowercase());
    }
    name
}

fn unix_time(secs: u64) -> String {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok());
    at.map_or_else(|| format!("{secs} s after 1970"), |at| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA named `name` and a certificate for 127.0.0.1 it signed, valid in 2020–2030.
    fn chain(name: &str) -> (Arc<RootCertStore>, CertificateDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("no names");
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("a key");
        let ca_cert = ca.self_signed(&ca_key).expect("a CA");
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("a name");
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let leaf = leaf
            .signed_by(&KeyPair::generate().expect("a key"), &issuer)
            .expect("a leaf");
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).expect("a root");
        (Arc::new(roots), leaf.der().clone())
    }

    fn at_year(year: u64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs((year - 1970) * 31_557_600))
    }

    fn verdict(
        verifier: &dyn ServerCertVerifier,
        leaf: &CertificateDer<'_>,
        host: &str,
        now: UnixTime,
    ) -> String {
        let name = server_name(host).expect("a name");
        match verifier.verify_server_cert(leaf, &[], &name, &[], now) {
            Ok(_) => "ok".to_owned(),
            Err(err) => describe_tls(&err, Some(host)),
        }
    }

    #[test]
    fn verify_ca_checks_everything_the_full_check_does_but_the_name() {
        let (roots, leaf) = chain("test CA");
        let full = WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .build()
            .expect("a verifier");
        let chain_only = Lenient::Chain(chain_verifier(Arc::clone(&roots)));
        let mut forged = leaf.to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let forged = CertificateDer::from(forged);
        let host = "127.0.0.1";
        for verifier in [&*full as &dyn ServerCertVerifier, &chain_only] {
            assert_eq!(verdict(verifier, &leaf, host, at_year(2025)), "ok");
            // The dates are checked against each handshake's time.
            let expired = verdict(verifier, &leaf, host, at_year(2031));
            assert!(expired.contains("certificate has expired"), "{expired}");
            assert!(verdict(verifier, &leaf, host, at_year(2019)).contains("not valid yet"));
            assert_eq!(
                verdict(verifier, &forged, host, at_year(2025)),
                "tls: certificate has a bad signature"
            );
        }
        // The name, unless only the chain is asked for (`sslmode=verify-ca`).
        assert!(
            verdict(&*full, &leaf, "127.0.0.2", at_year(2025))
                .contains("is valid for 127.0.0.1, not 127.0.0.2")
        );
        assert_eq!(
            verdict(&chain_only, &leaf, "127.0.0.2", at_year(2025)),
            "ok"
        );
        // Another CA's roots, or none at all.
        let (other_roots, _) = chain("another CA");
        for roots in [other_roots, Arc::new(RootCertStore::empty())] {
            assert_eq!(
                verdict(
                    &Lenient::Chain(chain_verifier(roots)),
                    &leaf,
                    host,
                    at_year(2025)
                ),
                "tls: certificate signed by unknown authority"
            );
        }
    }

    #[test]
    fn every_tls_failure_text_starts_with_the_prefix_and_reads_well() {
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "tls: certificate signed by unknown authority",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "tls: certificate has expired",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                "tls: certificate is not valid for engine.test",
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                "tls: the engine does not speak TLS (an http:// engine behind an https:// endpoint?)",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                "tls: the engine requires a client certificate (--tls-client-cert)",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                "tls: the engine refused our client certificate (unknown ca)",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
                "tls: the engine refused the handshake (handshake failure)",
            ),
        ];
        for (err, text) in cases {
            let described = describe_tls(&err, Some("engine.test"));
            assert_eq!(described, text);
            assert!(described.starts_with(TLS_ERROR_PREFIX));
        }
        assert!(handshake_timeout().starts_with(TLS_ERROR_PREFIX));
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn r12_database_tls_failures_are_worded_for_a_server_not_an_engine() {
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "tls: certificate signed by unknown authority",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                "tls: certificate is not valid for db.test",
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                "tls: the server does not speak TLS",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                "tls: the server requires a client certificate (none is sent to databases)",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
                "tls: the server refused the handshake (protocol version)",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(describe_database_tls(&err, Some("db.test")), text);
            // Found inside an I/O error too, as the clients carry it.
            let io = io::Error::new(io::ErrorKind::InvalidData, err);
            assert_eq!(
                database_tls_failure(&io, Some("db.test")).as_deref(),
                Some(text)
            );
        }
        let plain = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(database_tls_failure(&plain, None), None);
    }

    #[test]
    fn a_wrong_name_lists_the_names_the_certificate_is_valid_for() {
        let err = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.2").unwrap(),
            presented: vec![
                r#"DnsName("localhost")"#.to_owned(),
                "IpAddress(127.0.0.1)".to_owned(),
            ],
        };
        assert_eq!(
            describe_tls(&rustls::Error::InvalidCertificate(err), None),
            "tls: certificate is valid for localhost, 127.0.0.1, not 127.0.0.2"
        );
    }

    #[test]
    fn server_names_are_the_bare_host() {
        assert_eq!(
            server_name("[::1]").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("engine.test").unwrap(),
            ServerName::try_from("engine.test").unwrap()
        );
        assert!(server_name("bad name!").unwrap_err().starts_with("tls: "));
    }

    #[test]
    fn bad_files_are_refused_naming_the_file_and_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let options = |ca: &Path| TlsOptions {
            ca_file: Some(ca.to_owned()),
            ..TlsOptions::default()
        };
        let err = TlsClient::new(&options(&missing)).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read --ca-file ") && err.contains("missing.pem"),
            "{err}"
        );
        let err = TlsClient::new(&options(&empty)).unwrap_err().to_string();
        assert!(
            err.contains("--ca-file") && err.contains("holds no PEM certificate"),
            "{err}"
        );
        let half = TlsOptions {
            client_cert: Some(empty.clone()),
            ..TlsOptions::default()
        };
        assert!(matches!(
            TlsClient::new(&half),
            Err(TlsSetupError::ClientCertWithoutKey)
        ));
    }

    #[test]
    fn alert_names_are_spaced_lowercase() {
        assert_eq!(
            alert_name(AlertDescription::BadCertificate),
            "bad certificate"
        );
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown ca");
    }
}

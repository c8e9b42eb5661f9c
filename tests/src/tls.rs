//! Certificates made at test time (rcgen, ECDSA P-256): a private CA and
//! the server and client certificates it signs, good or faulty, for the TLS
//! engines ([`crate::TestEngine::start_tls`]), PostgreSQL and Redis.
//!
//! Nothing is committed: every test run makes its own keys, so no key in the
//! repository can leak or expire.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a certificate is valid, relative to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday to a year from now.
    Current,
    /// Expired: valid only in 2000.
    Expired,
    /// Not valid yet: from 2100 on.
    NotYetValid,
}

/// A private certificate authority.
pub struct TestCa {
    name: String,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A certificate chain and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// The certificate (one PEM block; the CA is not included).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl CertifiedKey {
    /// Write the certificate and the key (0600) to `cert` and `key`.
    pub fn write(&self, cert: &Path, key: &Path) -> io::Result<()> {
        std::fs::write(cert, &self.cert_pem)?;
        write_private(key, self.key_pem.as_bytes())
    }

    /// A rustls server configuration presenting this certificate, asking
    /// no client certificate, offering `http/1.1` (what an engine does).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config_with(None)
    }

    /// [`CertifiedKey::server_config`] that requires a client certificate
    /// signed by `client_ca` (mTLS).
    pub fn server_config_requiring_client_cert(&self, client_ca: &TestCa) -> Arc<ServerConfig> {
        self.server_config_with(Some(client_ca))
    }

    fn server_config_with(&self, client_ca: Option<&TestCa>) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(ca.cert_der())
                    .expect("a test CA is a valid anchor");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("a client verifier over one root");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("rcgen writes valid PEM");
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("rcgen's key");
        let mut config = builder
            .with_single_cert(chain, key)
            .expect("a matching certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl TestCa {
    /// A new CA named `name` (its subject's common name).
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2200, 1, 1);
        let key = KeyPair::generate().expect("an ECDSA P-256 key");
        let cert = params.self_signed(&key).expect("a self-signed CA");
        Self {
            name: name.to_owned(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate as PEM (what `--ca-file` and `SSL_CERT_FILE` name).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's certificate as DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("rcgen writes valid PEM")
    }

    /// Write the CA's certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, &self.cert_pem)
    }

    /// A server certificate for `names` (DNS names or IP addresses, as SANs).
    pub fn server_cert(&self, names: &[&str], validity: Validity) -> CertifiedKey {
        self.leaf(names, validity, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (mTLS) with common name `name`.
    pub fn client_cert(&self, name: &str) -> CertifiedKey {
        self.leaf(
            &[name],
            Validity::Current,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn leaf(
        &self,
        names: &[&str],
        validity: Validity,
        usage: ExtendedKeyUsagePurpose,
    ) -> CertifiedKey {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid test names");
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let (not_before, not_after) = match validity {
            Validity::Current => {
                let now = time_now();
                (now - DAY, now + 365 * DAY)
            }
            Validity::Expired => (
                rcgen::date_time_ymd(2000, 1, 1),
                rcgen::date_time_ymd(2000, 12, 31),
            ),
            Validity::NotYetValid => (
                rcgen::date_time_ymd(2100, 1, 1),
                rcgen::date_time_ymd(2101, 1, 1),
            ),
        };
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().expect("an ECDSA P-256 key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a certificate signed by the test CA");
        CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

const DAY: time::Duration = time::Duration::DAY;

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Write `bytes` to a new file readable by its owner only (PostgreSQL
/// refuses a key file others can read).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

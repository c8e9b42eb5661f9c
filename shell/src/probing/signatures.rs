//! Certificate signatures checked once: the chain an engine presents on
//! every probe costs one signature check per tick, not one per probe.
//!
//! An engine presents the same certificate chain on every handshake until
//! its certificate is renewed. Checking that chain ends in pure functions
//! `verify(public key, message, signature)` (the CA's key over the
//! certificate's signed part, for each link), whose answer for the same
//! bytes never changes. [`remembering`] wraps each of the provider's
//! signature algorithms so that a signature that verified is remembered by
//! the SHA-256 of everything the answer depends on, and the next check of
//! the same bytes answers at once. Everything else WebPKI checks — the
//! path to a trusted root, every certificate's dates against the probe's
//! own time, the name, the key usage — runs in full on every handshake, and
//! the handshake's own signature (over that handshake's transcript, which
//! is new each time: proof that the engine holds the certificate's key) is
//! always verified: the verifier gives it the provider's algorithms as
//! they are ([`crate::tls`]).
//!
//! A signature that failed is not remembered (it is checked again, and
//! fails again, with the same error). The memory is bounded by
//! [`REMEMBERED`] entries of 32 bytes; when full it is emptied, so a fleet
//! that presents more distinct chains than that only loses the saving.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use ring::digest;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};

/// At most this many verified signatures are remembered (about 3 MiB).
pub const REMEMBERED: usize = 65_536;

/// The signatures that verified, by `key`.
#[derive(Debug, Default)]
pub struct Verified {
    seen: Mutex<HashSet<[u8; 32]>>,
}

impl Verified {
    fn contains(&self, key: &[u8; 32]) -> bool {
        self.lock().contains(key)
    }

    fn insert(&self, key: [u8; 32]) {
        let mut seen = self.lock();
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert(key);
    }

    /// How many signatures are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // A panic while holding the lock leaves a valid set behind.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One of the provider's algorithms, remembering what verified in `verified`.
#[derive(Debug)]
pub struct Remembering {
    inner: &'static dyn SignatureVerificationAlgorithm,
    verified: &'static Verified,
}

impl Remembering {
    /// `inner`, remembering what verified in `verified`.
    pub fn new(
        inner: &'static dyn SignatureVerificationAlgorithm,
        verified: &'static Verified,
    ) -> Self {
        Self { inner, verified }
    }
}

impl SignatureVerificationAlgorithm for Remembering {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = key(self.inner, public_key, message, signature);
        if self.verified.contains(&key) {
            return Ok(());
        }
        self.inner
            .verify_signature(public_key, message, signature)?;
        self.verified.insert(key);
        Ok(())
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.signature_alg_id()
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }
}

/// The SHA-256 of the algorithm's identifiers and the three inputs, each
/// after its length (so no two different inputs run together alike).
fn key(
    algorithm: &dyn SignatureVerificationAlgorithm,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> [u8; 32] {
    let mut hash = digest::Context::new(&digest::SHA256);
    for part in [
        algorithm.public_key_alg_id().as_ref(),
        algorithm.signature_alg_id().as_ref(),
        public_key,
        message,
        signature,
    ] {
        hash.update(&(part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let mut key = [0; 32];
    key.copy_from_slice(hash.finish().as_ref());
    key
}

/// The provider's signature algorithms ([`crate::tls::provider`]), each
/// remembering what verified in one process-wide [`Verified`]: for
/// checking certificate chains only (a handshake's signature is new every
/// time, and remembering it would only crowd out the chains). Built once
/// per process.
pub fn remembering() -> WebPkiSupportedAlgorithms {
    static REMEMBERING: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    *REMEMBERING.get_or_init(|| {
        let algorithms = crate::tls::provider().signature_verification_algorithms;
        let verified: &'static Verified = Box::leak(Box::default());
        let wrap = |inner: &&'static dyn SignatureVerificationAlgorithm| {
            let wrapped: &'static dyn SignatureVerificationAlgorithm =
                Box::leak(Box::new(Remembering::new(*inner, verified)));
            wrapped
        };
        let all = algorithms.all.iter().map(wrap).collect::<Vec<_>>();
        let mapping = algorithms
            .mapping
            .iter()
            .map(|(scheme, algs)| {
                let algs: &'static [_] = algs.iter().map(wrap).collect::<Vec<_>>().leak();
                (*scheme, algs)
            })
            .collect::<Vec<_>>();
        WebPkiSupportedAlgorithms {
            all: all.leak(),
            mapping: mapping.leak(),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Verifies iff the signature is `b"good"`, counting its calls.
    #[derive(Debug)]
    struct Counting(AtomicUsize);

    impl SignatureVerificationAlgorithm for Counting {
        fn verify_signature(
            &self,
            _: &[u8],
            _: &[u8],
            signature: &[u8],
        ) -> Result<(), InvalidSignature> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if signature == b"good" {
                Ok(())
            } else {
                Err(InvalidSignature)
            }
        }

        fn public_key_alg_id(&self) -> AlgorithmIdentifier {
            AlgorithmIdentifier::from_slice(b"key")
        }

        fn signature_alg_id(&self) -> AlgorithmIdentifier {
            AlgorithmIdentifier::from_slice(b"sig")
        }
    }

    fn counting() -> (&'static Counting, Remembering) {
        let inner: &'static Counting = Box::leak(Box::new(Counting(AtomicUsize::new(0))));
        let verified: &'static Verified = Box::leak(Box::default());
        (inner, Remembering::new(inner, verified))
    }

    fn verifies(algorithm: &Remembering, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        algorithm.verify_signature(key, message, signature).is_ok()
    }

    #[test]
    fn a_signature_that_verified_is_not_checked_again() {
        let (inner, remembering) = counting();
        assert!((0..3).all(|_| verifies(&remembering, b"pk", b"cert", b"good")));
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_signature_that_failed_is_checked_again_and_fails_again() {
        let (inner, remembering) = counting();
        assert!((0..2).all(|_| !verifies(&remembering, b"pk", b"cert", b"bad")));
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn each_input_is_part_of_what_is_remembered() {
        let (inner, remembering) = counting();
        assert!(verifies(&remembering, b"pk", b"cert", b"good"));
        // Another key, another message, or the same bytes split otherwise: checked.
        assert!(verifies(&remembering, b"pk2", b"cert", b"good"));
        assert!(verifies(&remembering, b"pk", b"cert2", b"good"));
        assert!(verifies(&remembering, b"pkc", b"ert", b"good"));
        assert_eq!(inner.0.load(Ordering::SeqCst), 4);
        // And a bad signature over a message whose good one is remembered fails.
        assert!(!verifies(&remembering, b"pk", b"cert", b"bad"));
    }

    #[test]
    fn the_memory_is_bounded() {
        let verified = Verified::default();
        for index in 0..REMEMBERED + 10 {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(index as u64).to_be_bytes());
            verified.insert(key);
        }
        assert!(verified.len() <= REMEMBERED);
        assert!(!verified.is_empty());
    }
}

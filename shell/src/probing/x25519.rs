//! X25519 key exchange for TLS from aws-lc-rs, beside ring's everything else.
//!
//! A fresh `https://` probe computes two X25519 scalar multiplications (its
//! key share, then the shared secret): ring's (fiat-crypto, ADX) took 59 µs
//! for both on this project's machines, aws-lc's (s2n-bignum assembly)
//! 32 µs. Only the two multiplications are taken from aws-lc-rs, with a
//! private key drawn from the system's generator: with its whole provider
//! a probe cost about the same as with ring's (its key schedule's HMACs and
//! its generator's jitter entropy gave back what X25519 saved).

use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, PeerMisbehaved};

/// Ephemeral X25519 (RFC 7748) on aws-lc-rs, offered first as Go offers it.
pub static X25519: &dyn SupportedKxGroup = &AwsLcX25519;

#[derive(Debug)]
struct AwsLcX25519;

impl SupportedKxGroup for AwsLcX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        use aws_lc_rs::agreement::{PrivateKey, X25519 as ALGORITHM};
        use ring::rand::SecureRandom;
        // The private key's bytes from the system's generator (getrandom),
        // as ring draws them: aws-lc's own generator mixed in its CPU
        // jitter entropy source, 4% of a fresh probe's CPU.
        let mut bytes = [0_u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| rustls::crypto::GetRandomFailed)?;
        let private = PrivateKey::from_private_key(&ALGORITHM, &bytes)
            .map_err(|_| Error::General("X25519: a private key was refused".into()))?;
        let public = private
            .compute_public_key()
            .map_err(|_| Error::General("X25519: no public key".into()))?;
        Ok(Box::new(KeyExchange {
            private,
            public: public.as_ref().to_vec(),
        }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// Our half of one exchange: the private key and the key share sent.
struct KeyExchange {
    private: aws_lc_rs::agreement::PrivateKey,
    public: Vec<u8>,
}

impl ActiveKeyExchange for KeyExchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        use aws_lc_rs::agreement::{UnparsedPublicKey, X25519 as ALGORITHM, agree};
        if peer.len() != 32 {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        agree(
            &self.private,
            UnparsedPublicKey::new(&ALGORITHM, peer),
            (),
            |secret| Ok(SharedSecret::from(secret)),
        )
        .map_err(|()| PeerMisbehaved::InvalidKeyShare.into())
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_rings_x25519() {
        let ours = X25519.start().expect("our share");
        assert_eq!(ours.group(), NamedGroup::X25519);
        assert_eq!(ours.pub_key().len(), 32);
        let ring = rustls::crypto::ring::kx_group::X25519
            .start_and_complete(ours.pub_key())
            .expect("ring completes with our share");
        let secret = ours
            .complete(&ring.pub_key)
            .expect("we complete with ring's");
        assert_eq!(secret.secret_bytes(), ring.secret.secret_bytes());
    }

    #[test]
    fn a_key_share_of_the_wrong_length_is_refused() {
        let ours = X25519.start().expect("our share");
        assert!(ours.complete(&[9_u8; 31]).is_err());
        let ours = X25519.start().expect("our share");
        assert!(ours.complete(&[9_u8; 65]).is_err());
    }
}

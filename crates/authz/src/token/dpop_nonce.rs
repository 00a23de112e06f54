//! [`NonceIssuer`]: RFC 9449 §8 server-provided nonces for DPoP proofs at this resource server (§9).
//!
//! A proof's `iat` is chosen by the client, so a proof pre-computed by an attacker who briefly held
//! the key stays usable for `dpop_proof_max_age`; a nonce the server chose recently bounds that by
//! the server's clock instead. Nonces are stateless: the nonce of time window `w` is
//! `base64url(HMAC-SHA256(secret, "llamagate-dpop-nonce" ‖ w)[..18])`, so checking one needs no
//! storage, and replicas that share the secret (`dpop_nonce_secret`) accept each other's nonces.
//! Without a shared secret each process draws its own at start; a client sent to another replica
//! then gets one more `use_dpop_nonce` answer and retries with that replica's nonce.
//!
//! A nonce is accepted during its window and the next one, so a client that fetched one just before
//! the window turned is not refused: each nonce lives between [`WINDOW_SECONDS`] and twice that.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::SystemRandom;
use subtle::ConstantTimeEq;

use crate::clock::Clock;

/// Length of one nonce window, in seconds.
pub const WINDOW_SECONDS: u64 = 60;

/// Bytes of the HMAC kept in a nonce: 144 bits, far beyond guessing.
const NONCE_BYTES: usize = 18;

/// Domain separation, so the secret's HMACs cannot be confused with any other use of it.
const LABEL: &[u8] = b"llamagate-dpop-nonce";

/// The secret could not be drawn from the operating system's random source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot draw a random DPoP nonce secret")]
pub struct NonceSecretError;

/// Issues and checks DPoP nonces.
pub struct NonceIssuer {
    key: hmac::Key,
    clock: Clock,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer").finish_non_exhaustive()
    }
}

impl NonceIssuer {
    /// Nonces from `secret` (shared by replicas), or from a random secret of this process when
    /// `None`.
    pub fn new(secret: Option<&[u8]>, clock: Clock) -> Result<Self, NonceSecretError> {
        let key = match secret {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).map_err(|_| NonceSecretError)?,
        };
        Ok(Self { key, clock })
    }

    /// The nonce to hand out now (`DPoP-Nonce`).
    pub fn current(&self) -> String {
        self.nonce(self.clock.now() / WINDOW_SECONDS)
    }

    /// Whether `nonce` is this window's or the previous one's.
    pub fn accepts(&self, nonce: &str) -> bool {
        let window = self.clock.now() / WINDOW_SECONDS;
        [window, window.saturating_sub(1)].iter().any(|w| bool::from(self.nonce(*w).as_bytes().ct_eq(nonce.as_bytes())))
    }

    fn nonce(&self, window: u64) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(LABEL);
        context.update(&window.to_be_bytes());
        URL_SAFE_NO_PAD.encode(&context.sign().as_ref()[..NONCE_BYTES])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_lives_for_its_window_and_the_next() {
        let (clock, hand) = Clock::manual(1_800_000_000 - 1_800_000_000 % WINDOW_SECONDS);
        let issuer = NonceIssuer::new(Some(b"shared by the replicas"), clock.clone()).expect("issuer");
        let nonce = issuer.current();
        assert_eq!(nonce.len(), 24);
        assert!(issuer.accepts(&nonce));
        hand.advance(WINDOW_SECONDS - 1);
        assert_eq!(issuer.current(), nonce, "same window");
        hand.advance(1);
        assert_ne!(issuer.current(), nonce, "rotated");
        assert!(issuer.accepts(&nonce), "the previous window's nonce is still good");
        hand.advance(WINDOW_SECONDS);
        assert!(!issuer.accepts(&nonce), "two windows later it is not");
        assert!(!issuer.accepts(""));
        assert!(!issuer.accepts(&issuer.current()[1..]));

        let replica = NonceIssuer::new(Some(b"shared by the replicas"), clock.clone()).expect("replica");
        assert!(replica.accepts(&issuer.current()), "replicas sharing the secret accept each other's nonces");
        let stranger = NonceIssuer::new(None, clock).expect("random secret");
        assert!(!stranger.accepts(&issuer.current()), "a random secret is this process's own");
    }
}

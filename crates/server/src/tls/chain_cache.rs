//! Client certificate chains verified once, not at every check-in (issue #16, docs/benchmarks.md
//! session 17): checking that our CA signed a PC's certificate is an ECDSA P-256 verification,
//! 12 % of the server's CPU per check-in, and its answer for the same bytes never changes. What
//! does change is the time, so a certificate found here is still judged against `now` at every
//! handshake; and the PC still proves it holds the key by signing the handshake (`CertificateVerify`,
//! verified every time by the inner verifier). Only chains the inner verifier accepted are
//! kept, so a stranger's certificate costs a full check every time and never takes a place; the
//! places are bounded (`crate::kept`: two generations of at most `kept::GENERATION` chains).
//! Windows' own chain engine keeps verified chains the same way.
//!
//! Revocation is not checked here: the server's verifier has no CRLs, and a PC whose record is
//! retired is refused by the check-in itself (`renewal::judge_check_in_certificate`), which
//! reads the device's certificate thumbprint from the store at every session.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::kept::{Kept, Key};

/// When a chain is valid: the latest `notBefore` and the earliest `notAfter` of its
/// certificates, in seconds since the Unix epoch (what `webpki` compares `now` with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    not_before: u64,
    not_after: u64,
}

impl Window {
    fn holds(self, now: UnixTime) -> bool {
        let now = now.as_secs();
        self.not_before <= now && now <= self.not_after
    }
}

/// The SHA-256 of a presented chain: each certificate's length, then its bytes.
fn chain_key(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Key {
    let mut hash = Sha256::new();
    for cert in std::iter::once(end_entity).chain(intermediates) {
        hash.update((cert.len() as u64).to_be_bytes());
        hash.update(cert.as_ref());
    }
    hash.finalize().into()
}

/// The validity window of a chain the inner verifier accepted; `None` if a certificate's dates
/// cannot be read (then it is not kept).
fn window_of(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<Window> {
    let mut window = Window {
        not_before: 0,
        not_after: u64::MAX,
    };
    for cert in std::iter::once(end_entity).chain(intermediates) {
        let (not_before, not_after) = enroll::ca::certificate_validity(cert).ok()?;
        let not_before = u64::try_from(not_before.unix_timestamp()).unwrap_or(0);
        let not_after = u64::try_from(not_after.unix_timestamp()).ok()?;
        window.not_before = window.not_before.max(not_before);
        window.not_after = window.not_after.min(not_after);
    }
    Some(window)
}

/// A client certificate verifier that remembers the chains `inner` accepted.
#[derive(Debug)]
pub(crate) struct CachedChains {
    inner: Arc<dyn ClientCertVerifier>,
    cache: Arc<Kept<Window>>,
}

impl CachedChains {
    /// `inner` with `cache` (shared by whoever should see the same chains: a server's
    /// handshakes).
    pub(crate) fn new(inner: Arc<dyn ClientCertVerifier>, cache: Arc<Kept<Window>>) -> Self {
        Self { inner, cache }
    }
}

impl ClientCertVerifier for CachedChains {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = chain_key(end_entity, intermediates);
        if let Some(window) = self.cache.get(&key) {
            if window.holds(now) {
                return Ok(ClientCertVerified::assertion());
            }
            // Out of its dates: the inner verifier says why (expired, not yet valid).
        }
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Some(window) = window_of(end_entity, intermediates) {
            self.cache.insert(key, window);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustls::server::WebPkiClientVerifier;
    use rustls::RootCertStore;

    use super::*;

    struct Pki {
        ca: rcgen::Certificate,
        ca_key: rcgen::KeyPair,
    }

    impl Pki {
        fn new() -> Self {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = params.self_signed(&ca_key).unwrap();
            Self { ca, ca_key }
        }

        /// A client certificate valid for `days` from 2026-01-01.
        fn client(&self, days: i64) -> CertificateDer<'static> {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            params.not_before = start();
            params.not_after = start() + time::Duration::days(days);
            params
                .signed_by(&key, &self.ca, &self.ca_key)
                .unwrap()
                .der()
                .clone()
        }

        /// The WebPKI verifier trusting this CA, with `cache`.
        fn verifier(&self, cache: &Arc<Kept<Window>>) -> CachedChains {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.der().clone()).unwrap();
            let webpki = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                super::super::provider(),
            )
            .build()
            .unwrap();
            CachedChains::new(webpki, cache.clone())
        }
    }

    fn start() -> time::OffsetDateTime {
        time::macros::datetime!(2026-01-01 00:00 UTC)
    }

    fn at_day(day: u64) -> UnixTime {
        let secs = start().unix_timestamp() as u64 + day * 86_400;
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn a_chain_is_verified_once_then_judged_on_its_dates_alone() {
        let (ours, stranger) = (Pki::new(), Pki::new());
        let cache = Arc::default();
        let cert = ours.client(365);
        ours.verifier(&cache)
            .verify_client_cert(&cert, &[], at_day(1))
            .unwrap();
        // A verifier that trusts another CA accepts it from the cache alone…
        let kept_only = stranger.verifier(&cache);
        for day in [2, 300] {
            kept_only
                .verify_client_cert(&cert, &[], at_day(day))
                .unwrap();
        }
        // …but not past its notAfter, nor before its notBefore.
        assert!(kept_only
            .verify_client_cert(&cert, &[], at_day(400))
            .is_err());
        let early =
            UnixTime::since_unix_epoch(Duration::from_secs(start().unix_timestamp() as u64 - 1));
        assert!(kept_only.verify_client_cert(&cert, &[], early).is_err());
        // Our own verifier says why: expired.
        let late = ours
            .verifier(&cache)
            .verify_client_cert(&cert, &[], at_day(400))
            .unwrap_err();
        assert!(
            matches!(
                late,
                rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. })
                    | rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
            ),
            "{late:?}"
        );
    }

    #[test]
    fn a_chain_the_ca_did_not_sign_is_refused_every_time_and_never_kept() {
        let (ours, stranger) = (Pki::new(), Pki::new());
        let cache = Arc::default();
        let verifier = ours.verifier(&cache);
        let forged = stranger.client(365);
        for _ in 0..3 {
            assert!(verifier
                .verify_client_cert(&forged, &[], at_day(1))
                .is_err());
        }
        assert_eq!(cache.len(), 0);
        // A byte changed in a kept certificate is another chain: checked in full, refused.
        let cert = ours.client(365);
        verifier.verify_client_cert(&cert, &[], at_day(1)).unwrap();
        let mut tampered = cert.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let tampered = CertificateDer::from(tampered);
        assert!(verifier
            .verify_client_cert(&tampered, &[], at_day(1))
            .is_err());
        assert_eq!(cache.len(), 1);
    }
}

//! The TLS check of one instance: a handshake of our own (rustls, trusting what a connection
//! trusts: the system's roots and `TlsCaCertificate`) that keeps the peer's certificate, so
//! that the report can say whom it names, who issued it, whether the chain and host name
//! verify, and how many days it has left.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{Check, Status};
use crate::endpoint::Endpoint;
use crate::settings::Settings;

/// A certificate with fewer days left than this is worth a warning.
const RENEW_WITHIN_DAYS: i64 = 14;

/// Shakes hands with `endpoint` and judges the certificate it shows.
pub(super) async fn check(endpoint: &Endpoint, settings: &Settings) -> Check {
    let address = endpoint.address();
    let at = Some(address.as_str());
    let name = endpoint.tls_host.clone().unwrap_or(endpoint.host.clone());
    let seen = match handshake(endpoint, &name, settings).await {
        Ok(seen) => seen,
        Err(problem) => {
            return Check::new("tls", at, Status::Fail, problem)
                .fix("is it a TLS port? (rediss:// or ssl=True for TLS, redis:// or ssl=False for a plain port)")
        }
    };
    let Some(described) = seen.chain.first().and_then(|c| describe(c)) else {
        return Check::new(
            "tls",
            at,
            Status::Fail,
            "the server showed no readable certificate",
        )
        .fix("configure the server's tls-cert-file");
    };
    let days = described.days_left();
    let expiry = if days < 0 {
        format!("expired {} ({} days ago)", described.not_after, -days)
    } else {
        format!("expires {} ({days} days left)", described.not_after)
    };
    let summary = format!(
        "certificate for {} issued by {}, {expiry}",
        described.subject, described.issuer
    );
    match seen.refused {
        Some(refused) => {
            let fix = if refused.contains("expired") {
                "renew the server's certificate (tls-cert-file)".to_string()
            } else if refused.contains("NotValidForName") || refused.contains("not valid for name")
            {
                format!("connect by a name the certificate carries, or add {name} to it (or sslHost=NAME)")
            } else if refused.contains("UnknownIssuer") || refused.contains("unknown issuer") {
                "trust the issuing CA: TlsCaCertificate = the path of its PEM bundle".to_string()
            } else {
                "fix the server's certificate chain".to_string()
            };
            Check::new(
                "tls",
                at,
                Status::Fail,
                format!("{summary}; refused: {refused}"),
            )
            .fix(fix)
        }
        None if days < RENEW_WITHIN_DAYS => Check::new(
            "tls",
            at,
            Status::Warn,
            format!("{summary}; chain and host name verify"),
        )
        .fix("renew the server's certificate soon"),
        None => Check::new(
            "tls",
            at,
            Status::Pass,
            format!("{summary}; chain and host name verify"),
        ),
    }
}

/// What a handshake showed: the certificates, and why the verifier refused them (if it did).
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    refused: Option<String>,
}

/// Connects and shakes hands, keeping what the verifier saw. An error only when no
/// certificate was seen at all.
async fn handshake(endpoint: &Endpoint, name: &str, settings: &Settings) -> Result<Seen, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(settings)?), provider.clone())
            .build()
            .map_err(|e| format!("cannot build a certificate verifier: {e}"))?;
    let recorder = Arc::new(Recorder {
        inner: verifier,
        seen: Mutex::new(None),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| format!("{name}: {e}"))?;
    let limit = settings.connect_timeout;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        connector
            .connect(server_name, tcp)
            .await
            .map(drop)
            .map_err(|e| format!("TLS handshake failed: {e}"))
    };
    let outcome = match tokio::time::timeout(limit, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "no TLS handshake within {}",
            humantime::format_duration(limit)
        )),
    };
    let seen = recorder.seen.lock().expect("recorder").take();
    match (seen, outcome) {
        (Some(seen), _) => Ok(seen),
        (None, Err(problem)) => Err(problem),
        (None, Ok(())) => Err("the handshake showed no certificate".into()),
    }
}

/// The system's roots and the `TlsCaCertificate` bundle: what a connection trusts.
fn roots(settings: &Settings) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = &settings.tls_ca_certificate {
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("TlsCaCertificate {}: {e}", path.display()))?;
        roots.add_parsable_certificates(certificates.flatten());
    }
    Ok(roots)
}

/// A verifier that verifies as rustls's own does and keeps what it saw.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Seen>>,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} certificates", self.chain.len())
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        let refused = verdict.as_ref().err().map(ToString::to_string);
        *self.seen.lock().expect("recorder") = Some(Seen { chain, refused });
        verdict
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
}

/// The parts of a certificate a report names.
struct Described {
    subject: String,
    issuer: String,
    /// RFC 3339, seconds.
    not_after: String,
    not_after_unix: i64,
}

impl Described {
    fn days_left(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        (self.not_after_unix - now).div_euclid(86_400)
    }
}

fn describe(certificate: &CertificateDer<'_>) -> Option<Described> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let not_after_unix = parsed.validity().not_after.timestamp();
    let not_after = humantime::format_rfc3339_seconds(
        UNIX_EPOCH + Duration::from_secs(not_after_unix.max(0) as u64),
    )
    .to_string();
    Some(Described {
        subject: parsed.subject().to_string(),
        issuer: parsed.issuer().to_string(),
        not_after,
        not_after_unix,
    })
}

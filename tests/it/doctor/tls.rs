//! The TLS check: the certificate's chain, name and days left, and an expired one found.

use std::path::Path;

use super::{against, doctor};
use crate::support::{openssl, query, Leasectl, TlsRedis};

/// Trusts the server's CA through `appsettings.json` in the command's folder.
fn trusting(server: &TlsRedis) -> Leasectl {
    let leasectl = Leasectl::new();
    let settings = serde_json::json!({ "RedisLeasing": { "TlsCaCertificate": server.ca_file() } });
    std::fs::write(
        leasectl.dir().join("appsettings.json"),
        settings.to_string(),
    )
    .expect("write settings");
    leasectl
}

/// Writes `expired.crt` into `dir`: for `localhost`, with the server's key, signed by the
/// test CA, valid for one day in 2020 (`openssl ca`, which alone takes a start and end date).
fn make_expired_certificate(dir: &Path) {
    let config = "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
        serial = serial\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n\
        [server]\nsubjectAltName = DNS:localhost\nbasicConstraints = CA:FALSE\n\
        keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n";
    std::fs::write(dir.join("expired-ca.cnf"), config).expect("write the CA config");
    std::fs::write(dir.join("index.txt"), "").expect("write the CA database");
    std::fs::write(dir.join("serial"), "1000\n").expect("write the CA serial");
    openssl(
        dir,
        "req -new -key server.key -out expired.csr -subj /CN=localhost",
    );
    openssl(
        dir,
        "ca -batch -config expired-ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr \
         -out expired.crt -startdate 20200101000000Z -enddate 20200102000000Z \
         -extensions server -notext",
    );
}

#[test]
fn a_valid_certificate_shows_its_days_left_and_an_expired_one_fails() {
    let server = TlsRedis::start();
    let address = format!("localhost:{}", server.port);
    let leasectl = trusting(&server);
    let (report, _) = doctor(against(&leasectl, &[server.url()]));
    assert!(report.healthy, "{report:#?}");
    let tls = report.of("tls", &address);
    // The test certificate is valid for two days: near its end, so a warning.
    assert_eq!(tls.status, "warn", "{tls:?}");
    assert!(
        tls.detail.contains("days left") && tls.detail.contains("CN=localhost"),
        "{tls:?}"
    );

    // The same server, now showing an expired certificate to new connections.
    make_expired_certificate(server.dir());
    let mut connection = server.connection();
    let expired = server.dir().join("expired.crt");
    let _: () = query(
        &mut connection,
        &["CONFIG", "SET", "tls-cert-file", expired.to_str().unwrap()],
    );
    let (report, _) = doctor(against(&leasectl, &[server.url()]));
    assert!(!report.healthy);
    let tls = report.of("tls", &address);
    assert_eq!(tls.status, "fail", "{tls:?}");
    assert!(tls.detail.contains("expired 2020-01-02"), "{tls:?}");
    assert!(tls.fix.as_deref().unwrap().contains("renew"), "{tls:?}");
}

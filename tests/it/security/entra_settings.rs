//! Entra ID settings errors (no network: the credentials fail before any request)

use super::*;

/// Settings with `Endpoint` (a plain loopback server) and `EntraId`.
fn entra_settings(leasectl: &Leasectl, server: &RedisServer, entra_id: &str) {
    let endpoint = format!("127.0.0.1:{}", server.port);
    write_settings(
        leasectl,
        "appsettings.json",
        json!({ "Endpoint": endpoint, "UseSsl": false, "EntraId": entra_id }),
    );
}

#[test]
fn entra_id_service_principal_without_its_variables_names_the_missing_one() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    entra_settings(&leasectl, &server, "ServicePrincipal");
    let output = inspect(&leasectl);
    let line = output.failed_verbosely_with(1);
    assert!(
        line.contains("ServicePrincipal") && line.contains("AZURE_TENANT_ID"),
        "{output}"
    );
}

#[test]
fn entra_id_azure_cli_that_cannot_sign_in_names_the_credential() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    entra_settings(&leasectl, &server, "AzureCli");
    let bin = leasectl.dir().join("bin");
    fs::create_dir(&bin).unwrap();
    let called = leasectl.dir().join("az-called");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n",
        called.display()
    );
    fs::write(bin.join("az"), script).unwrap();
    fs::set_permissions(bin.join("az"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = verbose(&leasectl);
    command.env("PATH", path).arg("inspect");
    let output = complete(command);
    let line = output.failed_verbosely_with(1);
    assert!(
        line.contains("AzureCli") && line.contains("az login"),
        "{output}"
    );
    assert!(
        called.exists(),
        "the fake az was asked for a token\n{output}"
    );
}

#[test]
fn an_unknown_entra_id_credential_is_a_settings_error() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    entra_settings(&leasectl, &server, "Kerberos");
    let output = inspect(&leasectl);
    let line = output.failed_verbosely_with(2);
    assert!(
        line.contains("EntraId") && line.contains("Kerberos"),
        "{output}"
    );
}

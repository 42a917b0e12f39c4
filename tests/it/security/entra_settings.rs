//! Entra ID settings errors (no network: the credentials fail before any request)

use super::*;

#[test]
fn entra_id_service_principal_without_its_variables_names_the_missing_one() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    entra_endpoint_settings(&leasectl, &server, "ServicePrincipal");
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
    entra_endpoint_settings(&leasectl, &server, "AzureCli");
    let (path, called) = recording_az(
        &leasectl,
        "echo \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1",
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
    entra_endpoint_settings(&leasectl, &server, "Kerberos");
    let output = inspect(&leasectl);
    let line = output.failed_verbosely_with(2);
    assert!(
        line.contains("EntraId") && line.contains("Kerberos"),
        "{output}"
    );
}

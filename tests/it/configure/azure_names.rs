//! Azure names: a bare cache name is asked (or told by `--kind`) which kind of Azure Redis it
//! is — Azure Managed Redis (`NAME.REGION.redis.azure.net:10000`) or Azure Cache for Redis
//! (`NAME.redis.cache.windows.net:6380`); an Azure Managed Redis host gets port 10000; Entra
//! ID offers `Default` first. Saved with `--no-test`: nothing is contacted.

use super::*;

const ENTRA_ADDRESS: &str = "Azure cache name or host:port";
const KIND: &str = "Which kind of Azure Redis is it?";
const REGION: &str = "Azure region";
const CREDENTIAL: &str = "Which credential?";
const CLIENT_ID: &str = "Client id of a user-assigned identity";

/// The Entra ID answers for a bare `name`: `kind_keys` picks the kind; `region` is typed when
/// asked (Azure Managed Redis); the credential offered first; the defaults.
fn entra_wizard(name: &str, kind_keys: &str, region: Option<&str>) -> Value {
    let leasectl = Leasectl::new();
    let mut pty = Pty::spawn(&leasectl, &["configure", "--no-test"]);
    pty.answer(MODE, &format!("{DOWN}{ENTER}"));
    pty.answer(ENTRA_ADDRESS, &format!("{name}{ENTER}"));
    pty.answer(KIND, kind_keys);
    if let Some(region) = region {
        pty.answer(REGION, &format!("{region}{ENTER}"));
    }
    pty.answer(CREDENTIAL, ENTER);
    pty.answer(CLIENT_ID, ENTER);
    pty.answer(PREFIX, ENTER);
    pty.answer(DATABASE, ENTER);
    pty.expect("Saved");
    pty.succeeds();
    read_settings(&settings_path(&leasectl))
}

fn entra_file(endpoint: &str) -> Value {
    json!({"RedisLeasing": {
        "Endpoint": endpoint,
        "KeyPrefix": "lease:",
        "Database": 0,
        "EntraId": "Default"
    }})
}

#[test]
fn a_bare_name_asked_as_azure_managed_redis_becomes_its_regional_host_on_port_10000() {
    let written = entra_wizard("mycache", ENTER, Some("westeurope"));
    let expected = entra_file("mycache.westeurope.redis.azure.net:10000");
    assert_eq!(written["RedisLeasing"], expected["RedisLeasing"]);

    let by_flags = Leasectl::new();
    let output = configure_with_flags(
        &by_flags,
        &[
            "--auth",
            "entra-id",
            "--endpoint",
            "mycache",
            "--kind",
            "managed",
            "--region",
            "westeurope",
            "--no-test",
        ],
    );
    assert_exit(&output, 0);
    assert_eq!(read_settings(&settings_path(&by_flags)), written);
}

#[test]
fn a_bare_name_asked_as_azure_cache_for_redis_keeps_its_old_host() {
    let written = entra_wizard("oldcache", &format!("{DOWN}{ENTER}"), None);
    let expected = entra_file("oldcache.redis.cache.windows.net:6380");
    assert_eq!(written["RedisLeasing"], expected["RedisLeasing"]);

    let by_flags = Leasectl::new();
    let output = configure_with_flags(
        &by_flags,
        &[
            "--auth",
            "entra-id",
            "--endpoint",
            "oldcache",
            "--kind",
            "cache",
            "--no-test",
        ],
    );
    assert_exit(&output, 0);
    assert_eq!(read_settings(&settings_path(&by_flags)), written);
}

#[test]
fn flags_give_an_azure_managed_redis_host_port_10000_and_name_what_a_bare_name_lacks() {
    let leasectl = Leasectl::new();
    let host = "amr.eastus2.redis.azure.net";
    let output = configure_with_flags(
        &leasectl,
        &["--auth", "entra-id", "--endpoint", host, "--no-test"],
    );
    assert_exit(&output, 0);
    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(
        written["RedisLeasing"],
        entra_file(&format!("{host}:10000"))["RedisLeasing"]
    );

    let fresh = Leasectl::new();
    let output = configure_with_flags(
        &fresh,
        &["--auth", "entra-id", "--endpoint", "bare", "--no-test"],
    );
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("--kind"), "{}", text(&output));
    let output = configure_with_flags(
        &fresh,
        &[
            "--auth",
            "entra-id",
            "--endpoint",
            "bare",
            "--kind",
            "managed",
            "--no-test",
        ],
    );
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("--region"), "{}", text(&output));
    assert_eq!(entries(fresh.dir()), Vec::<String>::new());
}

#[test]
fn a_bare_name_with_a_password_is_asked_its_kind_and_offers_tls_for_port_10000() {
    let leasectl = Leasectl::new();
    let mut pty = Pty::spawn(&leasectl, &["configure", "--no-test"]);
    pty.answer(MODE, ENTER);
    pty.answer(ADDRESS, &format!("mylease{ENTER}"));
    pty.answer(KIND, ENTER);
    pty.answer(REGION, &format!("westeurope{ENTER}"));
    pty.answer(PASSWORD, &format!("the-access-key{ENTER}"));
    pty.answer(ACL_USER, ENTER);
    pty.answer(TLS, ENTER); // the offered answer: yes
    pty.answer_defaults();
    pty.expect("Saved");
    pty.succeeds();
    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(
        connection_string(&written),
        "mylease.westeurope.redis.azure.net:10000,password=the-access-key,ssl=True,abortConnect=False"
    );
}

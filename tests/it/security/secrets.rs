//! Secrets never shown

use super::*;

#[test]
fn debug_and_display_of_settings_and_endpoints_hide_the_password() {
    let password = secret("debug-pw");
    let texts = [
        format!("cache.example:6380,user=app,password={password},ssl=True,abortConnect=False"),
        format!("rediss://app:{password}@cache.example:6380/1"),
    ];
    for text in &texts {
        let settings = Settings::for_endpoints(&[text]).expect("a valid endpoint");
        let endpoint: &Endpoint = &settings.endpoints[0];
        assert_eq!(endpoint.password(), Some(password.as_str()));
        for shown in [
            format!("{settings:?}"),
            format!("{settings:#?}"),
            format!("{endpoint:?}"),
            endpoint.to_string(),
        ] {
            assert!(!shown.contains(&password), "the password is shown: {text}");
            assert!(shown.contains("app:***@cache.example:6380"), "{shown}");
        }
        assert!(!leasectl::mask_password(text).contains(&password));
    }
}

#[test]
fn configure_masks_the_password_in_its_summary_and_saves_the_real_one() {
    let leasectl = Leasectl::new();
    let password = secret("configure-pw");
    let connection_string =
        format!("localhost:6380,user=app,password={password},ssl=True,abortConnect=False");
    let mut command = verbose(&leasectl);
    command.args([
        "configure",
        "--auth",
        "connection-string",
        "--connection-string",
        &connection_string,
    ]);
    command.args(["--no-test", "--yes"]);
    let output = complete(command);
    output.succeeded();
    output.shows_none_of(&[&password]);
    assert!(output.stdout.contains("password=***"), "{output}");
    let file = leasectl.dir().join("appsettings.Local.json");
    let saved: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        saved["RedisLeasing"]["ConnectionString"],
        json!(connection_string)
    );
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_settings_file_with_a_password_that_others_can_read_is_warned_about() {
    let server = RedisServer::start();
    let password = secret("file-pw");
    query::<()>(
        &mut server.connection(),
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            &format!(">{password}"),
            "~*",
            "&*",
            "+@all",
        ],
    );
    let leasectl = Leasectl::new();
    let connection_string = format!(
        "127.0.0.1:{},user=app,password={password},ssl=False",
        server.port
    );
    let file = write_settings(
        &leasectl,
        "appsettings.Local.json",
        json!({ "ConnectionString": connection_string }),
    );

    let private = inspect(&leasectl);
    private.succeeded();
    assert!(
        !private.stderr.contains("chmod"),
        "no warning for mode 600\n{private}"
    );
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
    let exposed = inspect(&leasectl);
    exposed.succeeded();
    let warning = exposed.stderr.lines().find(|l| l.contains("chmod 600"));
    let warning = warning.unwrap_or_else(|| panic!("no chmod 600 warning\n{exposed}"));
    assert!(
        warning.contains("appsettings.Local.json") && warning.contains("password"),
        "{warning}"
    );
    for output in [&private, &exposed] {
        output.shows_none_of(&[&password]);
    }
}

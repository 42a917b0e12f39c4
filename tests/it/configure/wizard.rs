//! The wizard on a terminal

use super::*;

#[test]
fn local_answers_write_a_private_git_ignored_file_equal_to_the_flags() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(leasectl.dir())
            .args(args)
            .env("HOME", leasectl.dir())
            .output()
            .expect("git")
    };
    assert!(git(&["init", "-q"]).status.success());

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer_local(&address(&server));
    pty.expect("PING and a test lease worked");
    pty.expect("Saved");
    pty.succeeds();

    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(
        written,
        json!({"RedisLeasing": {
            "ConnectionString": server.url(),
            "KeyPrefix": "lease:",
            "Database": 0
        }})
    );
    assert!(
        git(&["check-ignore", "-q", FILE]).status.success(),
        "{FILE} is not git-ignored; .gitignore: {:?}",
        fs::read_to_string(leasectl.dir().join(".gitignore"))
    );
    assert_exit(&inspect(&leasectl), 0);

    flags_write_the_same(
        &["--auth", "local", "--endpoint", &address(&server)],
        &written,
    );
}

/// `configure` with these flags (no terminal) in a fresh folder: it succeeds and writes
/// exactly `written`, the file the prompts wrote.
fn flags_write_the_same(flags: &[&str], written: &Value) -> Output {
    let by_flags = Leasectl::new();
    let output = configure_with_flags(&by_flags, flags);
    assert_exit(&output, 0);
    assert_eq!(&read_settings(&settings_path(&by_flags)), written);
    output
}

#[test]
fn password_and_acl_user_are_saved_hidden_and_work() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer_password(&address(&server), "apppass", "app");
    pty.expect("PING and a test lease worked");
    pty.expect("Saved");
    pty.succeeds();

    let written = read_settings(&settings_path(&leasectl));
    let saved = connection_string(&written);
    assert_eq!(
        saved,
        format!(
            "{},password=apppass,ssl=False,user=app,abortConnect=False",
            address(&server)
        )
    );
    let screen = pty.screen();
    assert!(
        !screen.contains("apppass"),
        "the password was shown:\n{screen}"
    );
    assert!(
        screen.contains("password=***"),
        "no masked summary:\n{screen}"
    );
    assert_exit(&inspect(&leasectl), 0);

    let output = flags_write_the_same(
        &["--auth", "connection-string", "--connection-string", saved],
        &written,
    );
    assert!(!text(&output).contains("apppass"), "{}", text(&output));
}

#[test]
fn a_full_connection_string_typed_in_the_wizard_is_repeated_masked() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();
    let typed = format!("{},password=apppass,ssl=False,user=app", address(&server));

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer(MODE, ENTER);
    pty.answer(ADDRESS, &format!("{typed}{ENTER}"));
    // The answer is shown back masked before the next question (issue 13, item 10).
    pty.expect(&format!(
        "{},password=***,ssl=False,user=app",
        address(&server)
    ));
    pty.answer_defaults();
    pty.expect("PING and a test lease worked");
    pty.expect("Saved");
    pty.succeeds();
    assert_eq!(
        connection_string(&read_settings(&settings_path(&leasectl))),
        typed
    );
}

#[test]
fn a_wrong_password_is_reported_and_asked_again() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer_password(&address(&server), "wrongpass", "app");
    pty.expect("The connection test failed");
    pty.expect("authentication failed");
    pty.expect(WHAT_NOW);
    assert!(
        !settings_path(&leasectl).exists(),
        "written before the test passed"
    );
    pty.type_keys(WHAT_NOW, ENTER); // Edit the answers
    pty.answer_password(&address(&server), "apppass", "app");
    pty.expect("PING and a test lease worked");
    pty.expect("Saved");
    pty.succeeds();

    let written = read_settings(&settings_path(&leasectl));
    assert!(connection_string(&written).contains(",password=apppass,"));
    let screen = pty.screen();
    for password in ["wrongpass", "apppass"] {
        assert!(
            !screen.contains(password),
            "{password} was shown:\n{screen}"
        );
    }
}

#[test]
fn quitting_after_a_failed_test_writes_nothing() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer_password(&address(&server), "wrongpass", "app");
    pty.expect("authentication failed");
    pty.answer(WHAT_NOW, &format!("{DOWN}{DOWN}{ENTER}")); // Quit without saving
    pty.expect("nothing was written");
    pty.succeeds();

    assert_eq!(entries(leasectl.dir()), Vec::<String>::new());
}

#[test]
fn ctrl_c_halfway_writes_nothing() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer(MODE, &format!("{DOWN}{DOWN}{ENTER}"));
    pty.answer(HOST_PORT, &format!("{}{ENTER}", address(&server)));
    pty.answer(PREFIX, CTRL_C);
    pty.interrupted();

    assert_eq!(entries(leasectl.dir()), Vec::<String>::new());
}

#[test]
fn ctrl_c_after_agreeing_to_replace_keeps_the_old_file() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();
    let old = "{\n  \"RedisLeasing\": {\n    \"ConnectionString\": \"127.0.0.1:1,password=old-secret,ssl=False\"\n  }\n}\n";
    fs::write(settings_path(&leasectl), old).unwrap();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer(REPLACE, "y");
    pty.answer(MODE, ENTER);
    pty.answer(ADDRESS, &format!("{}{ENTER}", address(&server)));
    pty.answer(PASSWORD, CTRL_C);
    pty.interrupted();

    assert_eq!(fs::read_to_string(settings_path(&leasectl)).unwrap(), old);
    assert_eq!(entries(leasectl.dir()), vec![FILE.to_string()]);
    assert!(!pty.screen().contains("old-secret"), "{}", pty.screen());
}

#[test]
fn declining_to_replace_keeps_the_file_and_shows_it_masked() {
    let leasectl = Leasectl::new();
    let old = "{\n  \"RedisLeasing\": {\n    \"ConnectionString\": \"cache.example:6380,password=old-secret,ssl=True\",\n    \"KeyPrefix\": \"mine:\"\n  }\n}\n";
    fs::write(settings_path(&leasectl), old).unwrap();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.expect("already exists");
    pty.expect("cache.example:6380,password=***,ssl=True");
    pty.answer(REPLACE, "n");
    pty.expect("nothing was written");
    pty.succeeds();

    assert_eq!(fs::read_to_string(settings_path(&leasectl)).unwrap(), old);
    assert!(!pty.screen().contains("old-secret"), "{}", pty.screen());
}

#[test]
fn first_run_offers_the_wizard_then_wins_the_lease() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(&leasectl, SHORT_RUN);
    pty.expect("No Redis settings found");
    pty.answer("Set up a connection now?", "y");
    pty.answer_local(&address(&server));
    pty.expect("Saved");
    pty.expect("[us-east-1] Attempting lock");
    pty.expect("✓ Lock acquired");
    pty.expect("Lock released");
    pty.succeeds();

    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(connection_string(&written), server.url());
}

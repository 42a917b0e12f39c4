//! Settings files as .NET tools write them, settings paths that are not readable files,
//! fields of the wrong type, and passwords that hold `;` or `,` (issue 13, items 10 and 11):
//! real `leasectl` processes against real `redis-server` processes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::process::{complete, Output};
use crate::support::{query, write_lease, Leasectl, RedisServer};

const FILE: &str = "appsettings.Local.json";

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inspected {
    key: String,
    held: bool,
}

/// `inspect job --json` with `command`: the key it looked at and whether it is held.
fn inspect_job(mut command: Command) -> (Output, Option<(String, bool)>) {
    command.args(["inspect", "job", "--json"]);
    let output = complete(command);
    let parsed = serde_json::from_str::<Inspected>(&output.stdout)
        .ok()
        .map(|i| (i.key, i.held));
    (output, parsed)
}

/// A server with lease `job` held under `prefix`.
fn server_with_job(prefix: &str) -> RedisServer {
    let server = RedisServer::start();
    write_lease(
        &server,
        &format!("{prefix}job"),
        ("holder", "r"),
        1,
        Duration::from_secs(600),
    );
    server
}

// ---------------------------------------------------------------------------------------------
// Item 11: settings files as .NET tools write them

/// The settings text as a .NET tool may leave it: comments of both kinds, trailing commas,
/// and comment markers inside strings (which are kept).
fn dotnet_style_settings(port: u16) -> String {
    format!(
        r#"// Written by a .NET tool
{{
  /* the lease settings */
  "RedisLeasing": {{
    "ConnectionString": "127.0.0.1:{port},ssl=False", // a local server
    "KeyPrefix": "a//b/*c*/:",
    /* several
       lines */
    "Database": 0,
  }},
}}
"#
    )
}

#[test]
fn a_bom_comments_and_trailing_commas_are_accepted_and_comment_markers_in_strings_kept() {
    let prefix = "a//b/*c*/:";
    let server = server_with_job(prefix);
    let text = dotnet_style_settings(server.port);
    let utf8_bom = [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat();
    let utf16_bom: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    for (form, bytes) in [
        ("no BOM", text.clone().into_bytes()),
        ("UTF-8 BOM", utf8_bom),
        ("UTF-16 BOM", utf16_bom),
    ] {
        let leasectl = Leasectl::new();
        write_file(&leasectl.dir().join(FILE), &bytes);
        let (output, inspected) = inspect_job(leasectl.command());
        assert_eq!(
            inspected,
            Some((format!("{prefix}job"), true)),
            "{form}\n{output}"
        );
    }
}

#[test]
fn a_settings_path_that_is_not_a_readable_file_exits_2_naming_it() {
    let server = server_with_job("lease:");
    // (path under the folder, what the error says, how to make it)
    type Case = (&'static str, &'static str, fn(&Path));
    let cases: Vec<Case> = vec![
        (FILE, "directory", |p| std::fs::create_dir_all(p).unwrap()),
        ("appsettings.json", "directory", |p| {
            std::fs::create_dir_all(p).unwrap()
        }),
        (
            ".config/leasectl/appsettings.Local.json",
            "directory",
            |p| std::fs::create_dir_all(p).unwrap(),
        ),
        (FILE, "regular file", |p| {
            assert!(Command::new("mkfifo").arg(p).status().unwrap().success())
        }),
        (FILE, "cannot read", |p| {
            std::os::unix::fs::symlink(p.file_name().unwrap(), p).unwrap()
        }),
        (FILE, "cannot read", |p| {
            std::os::unix::fs::symlink("no-such-target.json", p).unwrap()
        }),
    ];
    for (name, mention, make) in cases {
        let leasectl = Leasectl::new();
        let path = leasectl.dir().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        make(&path);
        let mut command = leasectl.against(&server);
        command.arg("inspect");
        let output = complete(command);
        let error = output.failed_with(2);
        let file_name = Path::new(name).file_name().unwrap().to_str().unwrap();
        assert!(
            error.contains(file_name) && error.contains(mention),
            "{name}: should name it and say {mention:?}\n{output}"
        );
    }

    // --config naming a directory says what it is.
    let leasectl = Leasectl::new();
    let dir = leasectl.dir().join("settings.d");
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = leasectl.against(&server);
    command.arg("--config").arg(&dir).arg("inspect");
    let output = complete(command);
    let error = output.failed_with(2);
    assert!(
        error.contains("settings.d") && error.contains("directory"),
        "{output}"
    );

    // A file that cannot be read (not for root, who reads every file).
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    if String::from_utf8_lossy(&uid).trim() != "0" {
        use std::os::unix::fs::PermissionsExt;
        let leasectl = Leasectl::new();
        let path = leasectl.dir().join(FILE);
        write_file(&path, b"{}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let mut command = leasectl.against(&server);
        command.arg("inspect");
        let output = complete(command);
        assert!(output.failed_with(2).contains(FILE), "{output}");
    }
}

#[test]
fn a_field_of_the_wrong_type_exits_2_naming_the_file_and_the_field() {
    let server = server_with_job("lease:");
    let connection = format!("127.0.0.1:{},ssl=False", server.port);
    let cases = [
        ("ConnectionString", json!(42), "expected a string"),
        ("ConnectionString", json!(["x"]), "expected a string"),
        ("Database", json!(1.5), "whole number"),
        ("Database", json!("1.5"), "whole number"),
        ("Database", json!(true), "whole number"),
        ("UseSsl", json!("maybe"), "true or false"),
        ("UseSsl", json!(1), "true or false"),
        ("AutoRenew", json!("yes"), "true or false"),
        ("Port", json!(6379.5), "port number"),
        ("ConnectTimeout", json!(2500.5), "milliseconds"),
        ("KeyPrefix", json!(7), "expected a string"),
        ("DefaultLeaseDuration", json!(30), "duration"),
        ("Endpoints", json!(5), "list"),
        ("Endpoints", json!([connection, 5]), "expected a string"),
    ];
    for (field, value, expected) in cases {
        let leasectl = Leasectl::new();
        let mut section = serde_json::Map::new();
        if field != "ConnectionString" {
            section.insert("ConnectionString".into(), json!(connection));
        }
        section.insert(field.into(), value.clone());
        let text = json!({ "RedisLeasing": section }).to_string();
        write_file(&leasectl.dir().join(FILE), text.as_bytes());
        let (output, _) = inspect_job(leasectl.command());
        let error = output.failed_with(2);
        for part in [FILE, &format!("RedisLeasing.{field}"), expected] {
            assert!(
                error.contains(part),
                "{field}: {value}: {part:?} missing\n{output}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Item 10: passwords that hold ';' or ','

/// A server whose default user needs `password`.
fn server_with_password(password: &str) -> RedisServer {
    let server = RedisServer::start();
    let mut connection = server.connection();
    query::<()>(&mut connection, &["CONFIG", "SET", "requirepass", password]);
    server
}

/// Pieces of the passwords used below: none may appear in any output.
const PIECES: &[&str] = &["Semi4x", "Colon7y", "Comma5z", "Tail8w"];

fn semicolon_password() -> String {
    format!("{};{}", PIECES[0], PIECES[1])
}

fn comma_password() -> String {
    format!("{},{}", PIECES[2], PIECES[3])
}

/// A URL with the password as typed (';' and ',' are allowed in a URL's user part).
fn url_with(server: &RedisServer, password: &str) -> String {
    format!("redis://:{password}@127.0.0.1:{}", server.port)
}

fn connection_string_with(server: &RedisServer, password: &str) -> String {
    format!("127.0.0.1:{},password={password},ssl=False", server.port)
}

fn configure(leasectl: &Leasectl, flags: &[&str]) -> Output {
    let mut command = leasectl.command();
    command.arg("configure").args(flags);
    complete(command)
}

/// `configure --auth connection-string --connection-string TEXT FLAGS` in a fresh folder.
fn configure_string(text: &str, flags: &[&str]) -> (Leasectl, Output) {
    let leasectl = Leasectl::new();
    let mut all = vec!["--auth", "connection-string", "--connection-string", text];
    all.extend_from_slice(flags);
    let output = configure(&leasectl, &all);
    (leasectl, output)
}

fn written_endpoints(leasectl: &Leasectl) -> Value {
    let text = std::fs::read_to_string(leasectl.dir().join(FILE)).unwrap();
    let settings: Value = serde_json::from_str(&text).unwrap();
    settings["RedisLeasing"]["Endpoints"].clone()
}

#[test]
fn configure_takes_quorum_instances_whose_passwords_hold_semicolons_whole_and_never_shows_them() {
    let password = semicolon_password();
    let servers: Vec<RedisServer> = (0..3).map(|_| server_with_password(&password)).collect();
    let strings: Vec<String> = servers
        .iter()
        .map(|s| connection_string_with(s, &password))
        .collect();
    let first = ["--auth", "connection-string", "--connection-string"];

    // The old `;`-separated form would cut the password: refused, and nothing shown.
    let leasectl = Leasectl::new();
    let joined = strings[1..].join(";");
    let output = configure(
        &leasectl,
        &[&first[..], &[&strings[0], "--endpoints", &joined]].concat(),
    );
    let error = output.failed_with(2);
    assert!(error.contains("--endpoints"), "{output}");
    output.shows_none_of(PIECES);
    assert!(!leasectl.dir().join(FILE).exists(), "nothing written");

    // A JSON array, and a repeated --endpoint: each instance whole, tested, saved, masked.
    let array = serde_json::to_string(&strings[1..]).unwrap();
    let forms: [Vec<&str>; 2] = [
        vec!["--endpoints", &array],
        vec!["--endpoint", &strings[1], "--endpoint", &strings[2]],
    ];
    for form in forms {
        let leasectl = Leasectl::new();
        let output = configure(&leasectl, &[&first[..], &[&strings[0]], &form].concat());
        output.expect(0);
        output.shows_none_of(PIECES);
        assert!(output.stdout.contains("password=***"), "{output}");
        assert_eq!(written_endpoints(&leasectl), json!(strings), "{form:?}");
        let mut command = leasectl.command();
        command.args(["-vvv", "inspect"]);
        let output = complete(command);
        output.expect(0);
        output.shows_none_of(PIECES);
    }

    // The old form still works where no password can be cut.
    let plain: Vec<String> = (0..2).map(|_| RedisServer::start().url()).collect();
    let leasectl = Leasectl::new();
    let output = configure(
        &leasectl,
        &[
            "--auth",
            "local",
            "--endpoints",
            &plain.join(";"),
            "--no-test",
        ],
    );
    output.expect(0);
    assert_eq!(
        written_endpoints(&leasectl).as_array().map(Vec::len),
        Some(3),
        "{output}"
    );
}

#[test]
fn no_piece_of_a_password_with_a_comma_or_semicolon_is_ever_shown() {
    let semicolon = semicolon_password();
    let comma = comma_password();
    let server = server_with_password(&semicolon);
    let port = server.port;

    // Strings that cannot be used: exit 2, and no piece of the password in the message.
    let endpoint_flags = [
        // A connection-string password cannot hold a ','.
        format!("127.0.0.1:{port},password={comma},ssl=False"),
        format!("127.0.0.1:{port},password={},ssl={}", PIECES[2], PIECES[3]),
        format!(
            "127.0.0.1:{port},password={},defaultDatabase={}",
            PIECES[2], PIECES[3]
        ),
        format!("{}@127.0.0.1:{port}", PIECES[0]),
        // A "://" inside a password does not make the string a URL.
        format!(
            "127.0.0.1:{port},password={}://{},ssl=maybe",
            PIECES[0], PIECES[1]
        ),
    ];
    for endpoint in &endpoint_flags {
        for verbosity in [None, Some("-vvv")] {
            let leasectl = Leasectl::new();
            let mut command = leasectl.command();
            command
                .args(verbosity)
                .args(["--endpoint", endpoint, "inspect"]);
            let output = complete(command);
            output.expect(2);
            output.shows_none_of(PIECES);
        }
    }

    // A list in one variable whose ';' may be inside a password: refused, nothing shown.
    let joined = [
        connection_string_with(&server, &semicolon),
        connection_string_with(&server, &semicolon),
    ]
    .join(";");
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command
        .env("RedisLeasing__Endpoints", &joined)
        .args(["-vvv", "inspect"]);
    let output = complete(command);
    assert!(
        output
            .failed_verbosely_with(2)
            .contains("RedisLeasing.Endpoints"),
        "{output}"
    );
    output.shows_none_of(PIECES);

    // The same list as a JSON array works.
    let array = serde_json::to_string(&[
        connection_string_with(&server, &semicolon),
        url_with(&server, &semicolon),
    ])
    .unwrap();
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command
        .env("RedisLeasing__Endpoints", &array)
        .args(["-vvv", "inspect"]);
    let output = complete(command);
    output.expect(0);
    output.shows_none_of(PIECES);

    // A URL keeps ';' and ',' in its password: it works, and --redis does not cut it.
    let comma_server = server_with_password(&comma);
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command.args([
        "-vvv",
        "--endpoint",
        &url_with(&comma_server, &comma),
        "inspect",
    ]);
    let output = complete(command);
    output.expect(0);
    output.shows_none_of(PIECES);
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command.args([
        "bench",
        "--redis",
        &url_with(&comma_server, &comma),
        "--scenario",
        "S1",
        "--cycles",
        "5",
        "--warmup",
        "0",
    ]);
    let output = complete(command);
    output.expect(0);
    output.shows_none_of(PIECES);

    // configure's summary of a URL with a ',' in its password, and its refusals.
    let (_, output) = configure_string(&url_with(&comma_server, &comma), &[]);
    output.expect(0);
    output.shows_none_of(PIECES);
    let cut = format!("127.0.0.1:{port},password={comma},ssl=False");
    let (leasectl, output) = configure_string(&cut, &["--no-test"]);
    output.expect(2);
    output.shows_none_of(PIECES);
    assert!(
        !leasectl.dir().join(FILE).exists(),
        "nothing unusable written"
    );
    let url_like = format!(
        "127.0.0.1:{port},password={}://{},ssl=False",
        PIECES[0], PIECES[1]
    );
    let (_, output) = configure_string(&url_like, &["--no-test"]);
    output.expect(0);
    output.shows_none_of(PIECES);
    assert!(output.stdout.contains("password=***"), "{output}");
}

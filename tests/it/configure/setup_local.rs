//! scripts/setup-resources.sh --local

use super::*;

#[test]
fn setup_local_writes_settings_reuses_the_server_and_stops_it() {
    let setup = Setup::new();

    let output = setup.run(&["--project", "redis", "--local"]);
    assert_exit(&output, 0);
    let written = read_settings(&setup.output());
    let url = connection_string(&written).to_string();
    let port = url
        .strip_prefix("redis://127.0.0.1:")
        .unwrap_or_else(|| panic!("not a local URL: {url}"))
        .to_string();
    assert_exit(&setup.inspect(), 0);

    let output = setup.run(&["--project", "redis", "--local"]);
    assert_exit(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("already runs on 127.0.0.1:{port}")),
        "{}",
        text(&output)
    );
    assert_eq!(read_settings(&setup.output()), written);

    let pid = setup.pid(1);
    let output = setup.run(&["--project", "redis", "--stop"]);
    assert_exit(&output, 0);
    assert!(
        eventually(LIMIT, || process_gone(pid)),
        "redis-server {pid} still runs after --stop"
    );
    assert!(
        !setup.state().exists(),
        "--stop left {}",
        setup.state().display()
    );
}

#[test]
fn setup_local_quorum_writes_three_endpoints() {
    let setup = Setup::new();

    let output = setup.run(&["--project", "redis", "--local", "--quorum"]);
    assert_exit(&output, 0);
    let written = read_settings(&setup.output());
    let endpoints: Vec<&str> = written["RedisLeasing"]["Endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no Endpoints in {written}"))
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(endpoints.len(), 3, "{written}");
    assert!(endpoints
        .iter()
        .all(|e| e.starts_with("redis://127.0.0.1:")));
    let mut distinct = endpoints.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{written}");
    for endpoint in &endpoints {
        let leasectl = Leasectl::new();
        assert_exit(
            &run(leasectl.command().args(["--endpoint", endpoint, "inspect"])),
            0,
        );
    }

    let pids: Vec<u32> = (1..=3).map(|n| setup.pid(n)).collect();
    assert_exit(&setup.run(&["--project", "redis", "--stop"]), 0);
    for pid in pids {
        assert!(
            eventually(LIMIT, || process_gone(pid)),
            "redis-server {pid} still runs"
        );
    }
}

#[test]
fn setup_rejects_bad_options() {
    let setup = Setup::new();
    for args in [
        "--project redis --bogus",
        "--local",
        "--project nosql --local",
        "--project redis --local --port http",
        "--project redis --local --quorum --port 1 --port 2 --port 3 --port 4",
        "--project redis --name",
    ] {
        let output = setup.run(&args.split(' ').collect::<Vec<_>>());
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains("setup-resources: error:"),
            "{args}: {}",
            text(&output)
        );
    }
    assert!(!setup.output().exists());
    assert!(!setup.state().exists());

    let output = setup.run(&["--help"]);
    assert_exit(&output, 0);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("--state-dir DIR"),
        "{}",
        text(&output)
    );
}

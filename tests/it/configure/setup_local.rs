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
        "--project redis --cluster",
        "--project redis --local --quorum --sentinel",
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

/// The pids of the servers the script keeps under `state/PREFIX-*`.
fn pids_under(setup: &Setup, prefix: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir(setup.state()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            let pid = fs::read_to_string(path.join("redis.pid")).unwrap();
            pids.push(pid.trim().parse().unwrap());
        }
    }
    pids
}

/// `--stop` ends every one of `pids` and leaves no state behind.
fn stops(setup: &Setup, pids: Vec<u32>) {
    assert_exit(&setup.run(&["--project", "redis", "--stop"]), 0);
    for pid in pids {
        assert!(
            eventually(LIMIT, || process_gone(pid)),
            "redis-server {pid} still runs after --stop"
        );
    }
    assert!(
        !setup.state().exists(),
        "--stop left {}",
        setup.state().display()
    );
}

fn redis_at(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .expect("connect")
}

#[test]
fn setup_local_cluster_starts_three_primaries_with_a_replica_each() {
    let setup = Setup::new();

    let output = setup.run(&["--project", "redis", "--local", "--cluster"]);
    assert_exit(&output, 0);
    let written = read_settings(&setup.output());
    let url = connection_string(&written).to_string();
    let port: u16 = url
        .strip_prefix("redis://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not one local node: {url}"));
    let mut node = redis_at(port);
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut node).unwrap();
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_known_nodes:6"), "{info}");
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut node).unwrap();
    let count = |role: &str| {
        let flags = |l: &str| l.split(' ').nth(2).unwrap_or("").to_string();
        nodes
            .lines()
            .filter(|l| flags(l).split(',').any(|f| f == role))
            .count()
    };
    assert_eq!((count("master"), count("slave")), (3, 3), "{nodes}");
    for line in nodes.lines() {
        // `ID 127.0.0.1:PORT@BUS flags ...`: every node's port leaves room for its bus port.
        let address = line.split(' ').nth(1).unwrap();
        let node_port: u32 = address.split([':', '@']).nth(1).unwrap().parse().unwrap();
        assert!(node_port <= 55535, "{line}");
    }

    // Again: the running cluster is kept.
    let output = setup.run(&["--project", "redis", "--local", "--cluster"]);
    assert_exit(&output, 0);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("already runs"),
        "{}",
        text(&output)
    );
    assert_eq!(read_settings(&setup.output()), written);

    let pids = pids_under(&setup, "cluster-");
    assert_eq!(pids.len(), 6);
    stops(&setup, pids);
}

#[test]
fn setup_local_sentinel_starts_a_primary_a_replica_and_three_sentinels() {
    let setup = Setup::new();

    let output = setup.run(&["--project", "redis", "--local", "--sentinel"]);
    assert_exit(&output, 0);
    let written = read_settings(&setup.output());
    let string = connection_string(&written).to_string();
    let parts: Vec<&str> = string.split(',').collect();
    assert_eq!(parts.len(), 5, "{string}");
    assert_eq!(
        &parts[3..],
        ["serviceName=mymaster", "ssl=False"],
        "{string}"
    );
    let primary: u16 = fs::read_to_string(setup.state().join("sentinel-primary/port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for sentinel in &parts[..3] {
        let port: u16 = sentinel
            .strip_prefix("127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a local sentinel: {sentinel}"));
        let named: Vec<String> = redis::cmd("SENTINEL")
            .arg(&["get-master-addr-by-name", "mymaster"])
            .query(&mut redis_at(port))
            .unwrap();
        assert_eq!(named, ["127.0.0.1".to_string(), primary.to_string()]);
    }
    let replicated = eventually(LIMIT, || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut redis_at(primary))
            .unwrap();
        info.contains("role:master") && info.contains("connected_slaves:1")
    });
    assert!(replicated, "the primary has its replica");

    let pids = pids_under(&setup, "sentinel-");
    assert_eq!(pids.len(), 5);
    stops(&setup, pids);
}

//! Many rounds of mixed competitors on one key: mutual exclusion across the two fleets

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::*;

/// One critical section: nanoseconds since the epoch at its start and end, and who ran it.
type Section = (u128, u128, String);

/// A command's critical section: records its start and end (after 30 ms of work) in
/// `sections.log`, one appended line, before `exec` releases.
const SECTION: &str =
    "s=$(date +%s%N); sleep 0.03; e=$(date +%s%N); echo \"$s $e $0\" >> sections.log";

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn leasectl_in_either_format_and_dotnet_services_never_overlap() {
    const ROUNDS: usize = 5;
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let dotnet_sections: Arc<Mutex<Vec<Section>>> = Arc::default();
    let wait = LIMIT.as_secs().to_string() + "s";
    for round in 0..ROUNDS {
        // All at once: two leasectl execs in Json, one in Hash, two .NET services.
        let execs: Vec<(String, Running)> = [("json", "a"), ("json", "b"), ("hash", "c")]
            .into_iter()
            .map(|(format, who)| {
                let tag = format!("{format}-{who}-{round}");
                let mut command = leasectl.against(&server);
                command
                    .args(["--format", format, "exec", NAME, "--wait", &wait])
                    .args(["--", "sh", "-c", SECTION, &tag]);
                (tag, Running::spawn(command))
            })
            .collect();
        let services: Vec<_> = (0..2)
            .map(|i| {
                let service = dotnet_service(&server);
                let sections = dotnet_sections.clone();
                std::thread::spawn(move || {
                    let lease = service
                        .acquire(NAME, DOTNET_TTL, LIMIT)
                        .expect("the .NET service got its turn");
                    let start = now_nanos();
                    std::thread::sleep(Duration::from_millis(30));
                    let end = now_nanos();
                    sections
                        .lock()
                        .unwrap()
                        .push((start, end, format!("dotnet-{i}-{round}")));
                    assert!(lease.release(), "the .NET service released its own lease");
                })
            })
            .collect();
        for (tag, exec) in execs {
            let output = exec.finish();
            assert_eq!(output.code(), 0, "{tag}\n{output}");
        }
        for service in services {
            service.join().expect("a .NET service failed");
        }
    }
    let log = std::fs::read_to_string(path(&leasectl, "sections.log")).expect("sections.log");
    let mut sections: Vec<Section> = log
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let mut nanos = || parts.next().and_then(|n| n.parse().ok()).expect(line);
            let (start, end) = (nanos(), nanos());
            (start, end, parts.next().expect(line).to_string())
        })
        .collect();
    let leasectl_count = sections.len();
    sections.extend(dotnet_sections.lock().unwrap().drain(..));
    assert_eq!(
        leasectl_count,
        3 * ROUNDS,
        "every exec ran its command once"
    );
    assert_eq!(sections.len(), 5 * ROUNDS, "every competitor had its turn");
    sections.sort();
    for pair in sections.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "overlapping critical sections: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

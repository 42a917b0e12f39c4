//! Bad input

use super::*;

#[test]
fn bad_input_exits_2_without_running_anything() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    for args in [
        &["exec", JOB, "--"][..],
        &["exec", JOB],
        &["exec", "", "--", "sh", "-c", "echo > ran"],
        &["fence", "set", "report", "v"],
        &["fence", "set", "report", "v", "--token", "-1"],
        &["fence", "set", "report", "v", "--token", "x"],
    ] {
        let done = leasectl_done(&leasectl, &server, args);
        done.expect(2);
        assert!(done.stderr.contains("error:"), "{args:?} says why\n{done}");
    }
    assert!(!path(&leasectl, "ran").exists(), "a command ran");
    assert!(!exists(&server, KEY), "no lease taken");
    assert!(get(&server, "report").is_none(), "nothing written");
}

#[test]
fn a_command_that_cannot_run_exits_127_or_126_and_releases() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    std::fs::write(path(&leasectl, "not-executable"), "#!/bin/sh\n").unwrap();
    for (command, code) in [("./no-such-command", 127), ("./not-executable", 126)] {
        let done = leasectl_done(&leasectl, &server, &["exec", JOB, "--", command]);
        done.expect(code);
        assert!(done.stderr.contains("cannot run"), "{done}");
        assert!(!exists(&server, KEY), "`{command}` left the lease\n{done}");
    }
}

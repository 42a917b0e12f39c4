//! Help and completions

use super::*;

#[test]
fn completions_for_bash_are_printed() {
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command.args(["completions", "bash"]);
    let output = complete(command);
    assert_eq!(output.code(), 0, "{output}");
    assert!(
        output.stdout.contains("complete") && output.stdout.contains("leasectl"),
        "{output}"
    );
    for command in ["acquire", "extend"] {
        assert!(output.stdout.contains(command), "{command}\n{output}");
    }
}

#[test]
fn help_shows_examples() {
    let leasectl = Leasectl::new();
    for (args, example) in [
        (
            vec!["--help"],
            "leasectl run --instance us-east-1 --region us-east",
        ),
        (vec!["--help"], "leasectl acquire deploy --ttl 10m --json"),
        (
            vec!["--help"],
            "leasectl extend deploy --lease-id ID --ttl 10m",
        ),
        (
            vec!["acquire", "--help"],
            "leasectl extend deploy --lease-id",
        ),
        (
            vec!["run", "--help"],
            "leasectl run --instance us-east-1 --region us-east --work",
        ),
    ] {
        let mut command = leasectl.command();
        command.args(&args);
        let output = complete(command);
        assert_eq!(output.code(), 0, "{output}");
        assert!(output.stdout.contains("Example"), "{output}");
        assert!(output.stdout.contains(example), "{output}");
    }
}

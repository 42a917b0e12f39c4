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
}

#[test]
fn help_shows_examples() {
    let leasectl = Leasectl::new();
    for (args, example) in [
        (
            vec!["--help"],
            "leasectl run --instance us-east-1 --region us-east",
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

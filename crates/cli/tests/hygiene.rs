//! The command line's hygiene: no secret in any output, no colour codes in a pipe, completions
//! for each shell, and refusals that name what is wrong (empty passwords, mismatched reports).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli::{finish, report, scenario, start_run, text, BIN};

#[test]
fn compare_refuses_reports_of_different_scenarios() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let file = scenario(dir.path(), "1s", 2, 2.0, "");
    let (o, _) = finish(start_run(&file, &a, &[]), Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut r = report(&a);
    r["scenario"]["name"] = "another".into();
    std::fs::write(&b, r.to_string()).expect("write");
    let o = Command::new(BIN)
        .args(["compare"])
        .arg(&a)
        .arg(&b)
        .output()
        .expect("compare");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("of scenario \"another\""), "{}", text(&o));
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_fleetbench()"),
        ("zsh", "#compdef fleetbench"),
        ("fish", "complete -c fleetbench"),
    ] {
        let o = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .expect("completions");
        assert_eq!(o.status.code(), Some(0));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains(marker), "{shell}: {marker:?} missing");
        assert!(
            script.contains("connect-timeout"),
            "{shell}: run's options are completed"
        );
    }
}

#[test]
fn the_standalone_broker_refuses_an_empty_password() {
    let o = Command::new(BIN)
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--username",
            "fleet",
            "--password-env",
            "FLEETBENCH_EMPTY",
        ])
        .env("FLEETBENCH_EMPTY", "")
        .output()
        .expect("broker");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("empty password is refused"),
        "{}",
        text(&o)
    );
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "1s", 2, 2.0, "");
    let o = Command::new(BIN)
        .args(["-v", "run", file.to_str().expect("utf-8"), "--quiet"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}

#[test]
fn an_empty_password_variable_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(
        dir.path(),
        "2s",
        2,
        1.0,
        "[broker]\nurl = \"mqtt://127.0.0.1:1\"\nusername = \"fleet\"\npassword_env = \"FLEETBENCH_TRUST_PW\"\n",
    );
    for command in ["check", "run"] {
        let o = Command::new(BIN)
            .args([command, file.to_str().expect("utf-8")])
            .env("FLEETBENCH_TRUST_PW", "")
            .output()
            .expect("fleetbench");
        assert_eq!(o.status.code(), Some(2), "{command}: {}", text(&o));
        assert!(
            text(&o).contains(
                "trust.toml:16:16: broker.password_env: FLEETBENCH_TRUST_PW is set but empty"
            ),
            "{command}: {}",
            text(&o)
        );
    }
}

#[test]
fn a_password_never_reaches_the_output_even_with_debug_logs() {
    let secret = "supersecret123";
    let port = common::mosquitto::free_port();
    let mut broker = Command::new(BIN)
        .args([
            "broker",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--username",
            "fleet",
            "--password-env",
            "FLEETBENCH_TRUST_SECRET",
        ])
        .env("FLEETBENCH_TRUST_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    let mut banner = String::new();
    BufReader::new(broker.stdout.take().expect("stdout"))
        .read_line(&mut banner)
        .expect("banner");
    assert!(banner.contains("listening"), "{banner}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(
        dir.path(),
        "2s",
        2,
        2.0,
        &format!("[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nusername = \"fleet\"\npassword_env = \"FLEETBENCH_TRUST_SECRET\"\n"),
    );
    // A restart command that prints the password it found (its output is logged with -v): it
    // restarts nothing, so the run fails, and its line is logged with the password blanked.
    let text_of = std::fs::read_to_string(&file).expect("read")
        + "[[fault]]\nkind = \"broker_restart\"\nat = \"1s\"\n\
           command = [\"sh\", \"-c\", \"echo password=$FLEETBENCH_TRUST_SECRET\"]\n";
    std::fs::write(&file, text_of).expect("write");
    let out = dir.path().join("report.json");
    let o = Command::new(BIN)
        .args([
            "-vv",
            "run",
            file.to_str().expect("utf-8"),
            "--report",
            out.to_str().expect("utf-8"),
            "--quiet",
        ])
        .env("FLEETBENCH_TRUST_SECRET", secret)
        .output()
        .expect("run");
    let _ = broker.kill();
    let _ = broker.wait();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("INFO"), "verbose logs were on");
    assert!(text(&o).contains("password=[secret]"), "{}", text(&o));
    assert!(!text(&o).contains(secret), "the output holds the password");
    assert!(
        !std::fs::read_to_string(&out)
            .expect("report")
            .contains(secret),
        "the report holds the password"
    );
}

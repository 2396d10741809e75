//! Faults end to end: the shipped fault scenarios run on the embedded broker, and each fault's
//! row in the report says what it cost.

mod common;

use fleetbench_scenario::FaultType;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cli::{finish, start_run};
use fleetbench_report::Report;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../scenarios/{name}.toml"))
}

/// One run at a time: these runs measure timing (recovery, lateness) on a small machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run `file`; its exit code (0 also when it failed only on the machine's punctuality, which
/// is not what these tests are about: `common::passed_but_for`), its report and what it printed.
fn run(file: &Path) -> (Option<i32>, Report, String) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("report.json");
    let (out, _) = finish(start_run(file, &path, &[]), Duration::from_secs(120));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}: {printed}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("a report");
    let code = out.status.code();
    let what = file.display().to_string();
    let code = if common::passed_but_for(code, &json, &what, &[]) {
        Some(0)
    } else {
        code
    };
    (
        code,
        serde_json::from_value(json).expect("a report"),
        printed,
    )
}

#[test]
fn a_reconnect_storm_is_measured_and_loses_nothing() {
    let (code, r, out) = run(&scenario("reconnect-storm"));
    assert_eq!(code, Some(0), "{out}");
    let f = &r.faults[0];
    assert_eq!(f.kind, FaultType::Disconnect);
    assert_eq!(
        (f.cuts, f.connected_before, f.lowest_connected),
        (250, 500, 250),
        "{f:?}"
    );
    // Back by the backoff (100-200 ms) plus a CONNECT.
    let recovery = f.recovery_s.expect("every device came back");
    assert!(recovery > 0.1 && recovery < 3.0, "{f:?}");
    assert!(f.peak_reconnects_per_s >= 100.0, "{f:?}");
    assert!(f.delivery_recovery_s.is_some(), "{f:?}");
    assert_eq!((r.totals.delivered, r.totals.lost), (r.totals.sent, 0));
    assert!(out.contains("disconnect of sensor at 6s"), "{out}");
}

#[test]
fn every_connection_a_storm_cuts_owes_its_last_will() {
    // The storm's 250 sensors, each with a last will: the broker must publish one per cut.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(scenario("reconnect-storm"))
        .expect("read")
        .replace(
            "while_down = \"queue\"",
            "while_down = \"queue\"\n\
             will = { topic = \"plant/{group}/{index}/will\", payload = \"lost {index}\", qos = 1 }",
        );
    let file = dir.path().join("storm-wills.toml");
    std::fs::write(&file, text).expect("write");
    let (code, r, out) = run(&file);
    assert_eq!(code, Some(0), "{out}");
    let wills = r.behaviour.wills.as_ref().expect("the scenario has wills");
    assert_eq!(
        (wills.dropped, wills.expected, wills.received),
        (250, 250, 250),
        "{wills:?}"
    );
    assert_eq!((wills.missing, wills.unexpected), (0, 0), "{wills:?}");
}

#[test]
fn churn_skips_what_falls_due_while_down_and_every_due_message_is_counted() {
    let (code, r, out) = run(&scenario("churn"));
    assert_eq!(code, Some(0), "{out}");
    let f = &r.faults[0];
    assert_eq!(f.kind, FaultType::Churn);
    // 20 drops a second for 6 s, those that found their device connected.
    assert!(f.cuts > 60 && f.cuts <= 180, "{f:?}");
    assert!(f.lowest_connected < 200, "{f:?}");
    assert!(f.recovery_s.is_some(), "{f:?}");
    // 200 devices x 2 msg/s x 12 s fell due: each one sent or skipped, none lost.
    assert_eq!(r.totals.sent + r.totals.skipped, 4_800);
    assert!(r.totals.skipped > 0);
    assert_eq!((r.totals.delivered, r.totals.lost), (r.totals.sent, 0));
}

#[test]
fn a_broker_restart_is_survived_and_what_it_cost_is_reported() {
    let (code, r, out) = run(&scenario("broker-restart"));
    assert_eq!(code, Some(0), "{out}");
    let f = &r.faults[0];
    assert_eq!(f.kind, FaultType::BrokerRestart);
    assert!(f.failed.is_none(), "{f:?}");
    let took = f.restart_s.expect("restarted");
    assert!((1.0..5.0).contains(&took), "down 1 s, then started: {f:?}");
    assert_eq!((f.connected_before, f.lowest_connected), (300, 0), "{f:?}");
    assert!(f.recovery_s.is_some_and(|s| s >= took), "{f:?}");
    assert!(f.connection_errors > 0, "refused while it was down: {f:?}");
    // By kind: refused or reset while the broker was down; the kinds add up to the count.
    assert_eq!(
        f.connection_errors_by.values().sum::<u64>(),
        f.connection_errors,
        "{f:?}"
    );
    assert!(out.contains("connection errors: "), "{out}");
    // The errors while it was down are the fault's cost, not a troubled run.
    assert!(r.expectations.iter().any(|e| e.name == "errors" && e.ok));
    assert!(
        r.run.broker_gone.is_none(),
        "a restart is not a broker gone"
    );
}

#[test]
fn qos_1_lost_across_a_rumqttd_restart_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(scenario("broker-restart")).expect("read");
    let text = text
        .replace("qos = 0", "qos = 1")
        .replace("while_down = \"skip\"", "while_down = \"queue\"")
        .replace(
            "filters = [\"plant/#\"]",
            "filters = [\"plant/#\"]\nclean_session = false",
        );
    let file = dir.path().join("restart-qos1.toml");
    std::fs::write(&file, text).expect("write");
    let (code, r, out) = run(&file);
    assert_eq!(code, Some(3), "{out}");
    assert!(r.lost_at_guaranteed_qos() > 0, "{out}");
    // The loss is placed around the restart: what the broker held when it died, and what
    // reached it before the persistent observer had subscribed again.
    let f = &r.faults[0];
    assert!(f.lost_during > 0, "{f:?}");
    assert!(
        (f.lost_during + f.lost_after) * 10 >= r.totals.lost * 9,
        "{f:?} against {:?}",
        r.totals
    );
    assert!(
        r.findings.iter().any(|f| f.contains("restarted the broker")
            && f.contains("keeps sessions and queued messages in memory only")),
        "{:?}",
        r.findings
    );
}

#[test]
fn bad_fault_definitions_are_refused_before_connecting() {
    // The mistakes corpus (tests/mistakes/49-54) names line and field; here, `run` too.
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mistakes/51-restart-in-process-broker.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("run")
        .arg(&file)
        .args(["--no-tui", "--quiet"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fault[0].kind"));
}

#[test]
fn a_flaky_network_costs_what_its_windows_say() {
    let (code, r, out) = run(&scenario("flaky-network"));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r.faults.len(), 4);
    let [delay, drop, cut, blackhole] = [0, 1, 2, 3].map(|i| &r.faults[i]);
    assert_eq!(delay.dropped, Some(0));
    // Lost: what the proxy dropped, and what was on its way when the cut came (QoS 0: at most
    // a message or two per sensor).
    let dropped = drop.dropped.expect("counted");
    assert!(dropped > 0);
    assert!(
        r.totals.lost >= dropped && r.totals.lost - dropped <= 200,
        "{:?}",
        r.totals
    );
    // The cut drops every connection and refuses reconnects until it ends.
    assert!(cut.cuts >= 100 && cut.lowest_connected == 0, "{cut:?}");
    assert!(cut.recovery_s.is_some_and(|s| s >= 2.0), "{cut:?}");
    // A blackhole keeps connections open.
    assert_eq!(
        blackhole.lowest_connected, blackhole.connected_before,
        "{blackhole:?}"
    );
    assert!(
        r.latency.from_send.max_us >= 1_500_000,
        "held for the blackhole's 2 s"
    );
    // After a cut and a blackhole the delivery rate comes back, and the report says when.
    for f in [cut, blackhole] {
        assert!(f.delivery_recovery_s.is_some_and(|s| s >= f.for_s), "{f:?}");
    }
}

#[test]
fn a_slow_consumer_is_queued_for_and_its_wait_shows_in_latency() {
    let (code, r, out) = run(&scenario("slow-consumer"));
    assert_eq!(code, Some(0), "{out}");
    let f = &r.faults[0];
    assert_eq!((f.kind, f.cuts), (FaultType::SlowConsumer, 0), "{f:?}");
    // The fault's own row shows the wait: what the slow observer had not read is delivered as
    // it reads again, at the window's end (in its last tick, or the next one).
    let (during, after) = (
        f.p99_during_us.expect("during"),
        f.p99_after_us.expect("after"),
    );
    assert!(during.max(after) >= 2_000_000, "{f:?}");
    // What fell due while the slow observer did not read waited up to its 3 s.
    let max = r.latency.from_intended.max_us;
    assert!((2_500_000..4_000_000).contains(&max), "{max} us");
    assert_eq!((r.totals.lost, r.totals.delivered), (0, r.totals.expected));
}

/// 50 QoS 0 sensors at 10 msg/s for 8 s; `fault` is a [[fault]] table.
fn proxied(fault: &str, warmup: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("proxied.toml");
    let text = format!(
        "name = \"proxied\"\nduration = \"8s\"\nwarmup = \"{warmup}\"\ndrain_timeout = \"2s\"\n\
         [[group]]\nname = \"sensor\"\ncount = 50\ntopic = \"p/{{index}}\"\nrate = 10.0\nqos = 0\n\
         [[observer]]\nname = \"all\"\nfilters = [\"p/#\"]\nqos = 0\n{fault}\n\
         [expect]\ndelivered_ratio = 0.5\n"
    );
    std::fs::write(&file, text).expect("write");
    (dir, file)
}

#[test]
fn the_proxy_drops_exactly_what_the_report_counts_lost() {
    let (_dir, file) = proxied(
        "[[fault]]\nkind = \"network\"\nat = \"2s\"\nfor = \"4s\"\ndrop = 0.3\n",
        "0s",
    );
    let (code, r, out) = run(&file);
    assert_eq!(code, Some(0), "{out}");
    let dropped = r.faults[0]
        .dropped
        .expect("a network fault counts its drops");
    // 50 sensors x 10/s x 4 s = 2,000 publishes in the window, 30% of them dropped.
    assert!((480..=720).contains(&dropped), "{dropped}");
    assert_eq!(
        r.totals.lost, dropped,
        "every dropped publish is lost, and nothing else"
    );
    // Each of them fell due in the fault's window, and the fault's row says so.
    let f = &r.faults[0];
    assert_eq!((f.lost_during, f.lost_after), (dropped, 0), "{f:?}");
    assert!(
        out.contains(&format!("dropped {dropped} QoS 0 publishes")),
        "{out}"
    );
}

#[test]
fn the_proxy_adds_its_delay_to_the_latency() {
    // The whole measured window (after a 1.5 s warm-up) inside a 20 ms delay, against the same
    // run without it: the devices' leg to the broker passes the proxy once.
    let (_d1, plain) = proxied("", "1500ms");
    let (_d2, delayed) = proxied(
        "[[fault]]\nkind = \"network\"\nat = \"1s\"\nfor = \"6900ms\"\ndelay = \"20ms\"\n",
        "1500ms",
    );
    let (code, base, out) = run(&plain);
    assert_eq!(code, Some(0), "{out}");
    let (code, slow, out) = run(&delayed);
    assert_eq!(code, Some(0), "{out}");
    // A timer can hold a packet longer than asked, never shorter: on a busy machine the proxy's
    // wake-ups add a few milliseconds; no delay, or the delay twice, is what must not pass.
    let shift_us = slow.latency.from_send.p50_us as f64 - base.latency.from_send.p50_us as f64;
    assert!(
        (18_000.0..=25_000.0).contains(&shift_us),
        "p50 from send {} us with the delay, {} us without: a shift of {shift_us} us, not 20 ms \
         (-10%, +25%)",
        slow.latency.from_send.p50_us,
        base.latency.from_send.p50_us
    );
    assert_eq!(
        (slow.totals.lost, slow.totals.delivered),
        (0, slow.totals.sent)
    );
}

#[test]
fn a_bandwidth_limit_queues_what_exceeds_it() {
    // 20 sensors send 10 messages of 1 kB a second (about 10.3 kB/s each, with the MQTT
    // header) through links of 5 kB/s for 4 s: each link falls behind by about 5.3 kB a
    // second, 21 kB by the window's end, which it carries at 5 kB/s: about 4.2 s of waiting
    // for the last message sent in the window. Nothing is lost; it waits.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bandwidth.toml");
    let text = "name = \"bandwidth\"\nduration = \"10s\"\nwarmup = \"0s\"\n\
                drain_timeout = \"8s\"\n[[group]]\nname = \"sensor\"\ncount = 20\n\
                topic = \"b/{index}\"\nrate = 10.0\nqos = 0\npayload_size = 1000\n\
                [[observer]]\nname = \"all\"\nfilters = [\"b/#\"]\nqos = 0\n\
                [[fault]]\nkind = \"network\"\nat = \"2s\"\nfor = \"4s\"\n\
                bandwidth = \"5 kB/s\"\n[expect]\ndelivered_ratio = 1.0\n";
    std::fs::write(&file, text).expect("write");
    let (code, r, out) = run(&file);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!((r.totals.lost, r.totals.delivered), (0, r.totals.sent));
    let max = r.latency.from_send.max_us;
    assert!(
        (3_600_000..5_000_000).contains(&max),
        "the last message of the window waited {max} us, not about 4.2 s"
    );
    // The window's own row shows the wait.
    let f = &r.faults[0];
    assert!(f.p99_during_us.is_some_and(|p| p >= 2_000_000), "{f:?}");
}

/// `name` of scenarios/ against a mosquitto of its own (Debian's, installed by `cargo xtask
/// test`), started by the test on a free loopback port.
fn on_mosquitto(name: &str) -> (Option<i32>, Report, String) {
    let broker = common::mosquitto::Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(scenario(name)).expect("scenario");
    let file = dir.path().join(format!("{name}.toml"));
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    std::fs::write(&file, format!("{text}\n[broker]\nurl = \"{url}\"\n")).expect("write");
    run(&file)
}

#[test]
fn mosquitto_lives_through_the_same_storm_churn_network_and_slow_consumer() {
    let (code, r, out) = on_mosquitto("reconnect-storm");
    assert_eq!(code, Some(0), "{out}");
    let f = &r.faults[0];
    assert_eq!((f.cuts, f.lowest_connected), (250, 250), "{f:?}");
    assert!(f.recovery_s.is_some(), "{f:?}");
    assert_eq!((r.totals.lost, r.totals.delivered), (0, r.totals.sent));

    let (code, r, out) = on_mosquitto("churn");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r.totals.sent + r.totals.skipped, 4_800);
    assert_eq!(r.totals.lost, 0);

    // Through the proxy in front of mosquitto: what it dropped is what was lost, and a little
    // more where the cut caught messages on their way.
    let (code, r, out) = on_mosquitto("flaky-network");
    assert_eq!(code, Some(0), "{out}");
    let dropped = r.faults[1].dropped.expect("counted");
    assert!(
        r.totals.lost >= dropped && r.totals.lost - dropped <= 200,
        "{:?}",
        r.totals
    );

    let (code, r, out) = on_mosquitto("slow-consumer");
    assert_eq!(code, Some(0), "{out}");
    let f = &r.faults[0];
    let waited = f.p99_during_us.max(f.p99_after_us);
    assert!(waited.is_some_and(|p| p >= 2_000_000), "{f:?}");
    assert_eq!(r.totals.lost, 0, "mosquitto queues for the slow observer");
}

#[test]
fn mosquitto_with_persistence_loses_nothing_at_qos_1_across_a_restart() {
    // The test's mosquitto keeps its sessions on disk; the fault's command restarts it as a
    // service manager would (SIGTERM, wait, start again as a daemon on the same port) and
    // returns once it listens.
    let broker = common::mosquitto::Mosquitto::start_with(|dir| {
        let d = dir.display();
        (
            format!(
                "allow_anonymous true\nuser root\npersistence true\npersistence_location {d}/\n\
                 pid_file {d}/mosquitto.pid\nmax_queued_messages 0\nmax_inflight_messages 0\n"
            ),
            Vec::new(),
        )
    });
    let dir = broker.dir.path();
    let script = dir.join("restart.sh");
    let program = common::mosquitto::mosquitto_program("mosquitto");
    std::fs::write(
        &script,
        format!(
            // The first mosquitto is this test's child: once it exits it stays a zombie
            // until the test reaps it, so "gone" is gone or a zombie.
            "pid={pid}\nkill -TERM \"$pid\"\n\
             while [ -e /proc/$pid ] && [ \"$(cut -d' ' -f3 /proc/$pid/stat)\" != Z ]; do sleep 0.05; done\n\
             {p} -c {d}/mosquitto.conf -d\n\
             until (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.05; done\n",
            pid = broker.pid(),
            d = dir.display(),
            p = program.display(),
            port = broker.port
        ),
    )
    .expect("write script");
    let text = std::fs::read_to_string(scenario("broker-restart"))
        .expect("read")
        .replace("qos = 0", "qos = 1")
        .replace("while_down = \"skip\"", "while_down = \"queue\"")
        .replace(
            "filters = [\"plant/#\"]",
            "filters = [\"plant/#\"]\nclean_session = false",
        )
        .replace(
            "process = \"child\"",
            &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
        )
        .replace(
            "for = \"1s\"",
            &format!("command = [\"bash\", \"{}\"]", script.display()),
        );
    let file = dir.join("restart-mosquitto.toml");
    std::fs::write(&file, text).expect("write");
    let result = run(&file);
    // The restarted mosquitto is the script's daemon, started by this test: end it by its PID.
    let daemon = std::fs::read_to_string(dir.join("mosquitto.pid")).unwrap_or_default();
    if let Ok(pid) = daemon.trim().parse::<i32>() {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    let (code, r, out) = result;
    assert_eq!(code, Some(0), "{out}");
    let f = &r.faults[0];
    assert!(f.failed.is_none() && f.restart_s.is_some(), "{f:?}");
    // Every device lost its connection (the restart is too quick for the ticks to see them
    // all down at once, the errors are not).
    assert!(f.connection_errors >= 300, "{f:?}");
    assert!(f.recovery_s.is_some(), "{f:?}");
    assert_eq!(
        (r.totals.lost, f.lost_during, f.lost_after),
        (0, 0, 0),
        "{:?}",
        r.totals
    );
    assert_eq!(r.totals.delivered, r.totals.sent);
    // Messages resent after the restart may arrive twice: counted, never lost.
    assert!(
        r.totals.duplicates >= f.duplicates_during + f.duplicates_after,
        "{f:?} against {:?}",
        r.totals
    );
}

/// The broker-restart scenario against `broker`'s mosquitto, restarted by `command` (a shell
/// script's text, run with bash), written in the broker's directory.
fn restart_external(broker: &common::mosquitto::Mosquitto, script: &str) -> PathBuf {
    let dir = broker.dir.path();
    let path = dir.join("restart.sh");
    std::fs::write(&path, script).expect("write script");
    let text = std::fs::read_to_string(scenario("broker-restart"))
        .expect("read")
        .replace(
            "process = \"child\"",
            &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
        )
        .replace(
            "for = \"1s\"",
            &format!("command = [\"bash\", \"{}\"]", path.display()),
        );
    let file = dir.join("restart.toml");
    std::fs::write(&file, text).expect("write");
    file
}

#[test]
fn a_broker_restarted_in_the_background_is_measured_by_what_the_devices_saw() {
    // The command starts the new mosquitto in the background, which keeps the command's output
    // open for as long as it runs: the restart's outcome must still reach the report.
    let broker = common::mosquitto::Mosquitto::start();
    let d = broker.dir.path().display();
    let script = format!(
        "pid={pid}\nkill -TERM \"$pid\"\n\
         while [ -e /proc/$pid ] && [ \"$(cut -d' ' -f3 /proc/$pid/stat)\" != Z ]; do sleep 0.05; done\n\
         {p} -c {d}/mosquitto.conf &\necho $! > {d}/background.pid\n\
         until (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.05; done\n\
         echo restarted\n",
        pid = broker.pid(),
        p = common::mosquitto::mosquitto_program("mosquitto").display(),
        port = broker.port
    );
    let file = restart_external(&broker, &script);
    let result = run(&file);
    // The background mosquitto is this test's: end it by its PID.
    let background = std::fs::read_to_string(broker.dir.path().join("background.pid"));
    if let Ok(pid) = background.unwrap_or_default().trim().parse::<i32>() {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    let (code, r, out) = result;
    assert_eq!(code, Some(0), "{out}");
    let f = &r.faults[0];
    assert!(f.failed.is_none() && f.restart_s.is_some(), "{f:?}");
    // Every sensor lost its connection and came back, as they said themselves.
    assert_eq!((f.cuts, f.connected_before), (300, 300), "{f:?}");
    assert!(f.lowest_connected < 300, "{f:?}");
    assert!(f.recovery_s.is_some_and(|s| s > 0.0), "{f:?}");
}

#[test]
fn a_restart_that_restarted_nothing_fails_and_says_so() {
    // The command succeeds, leaves a process holding its output and restarts nothing.
    let broker = common::mosquitto::Mosquitto::start();
    let file = restart_external(&broker, "sleep 3 &\necho started\n");
    let began = std::time::Instant::now();
    let (code, r, out) = run(&file);
    assert_eq!(code, Some(3), "{out}");
    let f = &r.faults[0];
    assert_eq!((f.cuts, f.lowest_connected), (0, 300), "{f:?}");
    assert_eq!(f.recovery_s, None, "{f:?}");
    assert!(
        f.failed
            .as_deref()
            .is_some_and(|w| w.contains("no device lost its connection")),
        "{f:?}"
    );
    assert!(r
        .expectations
        .iter()
        .any(|e| e.name == "faults_failed" && !e.ok));
    assert!(
        r.findings
            .iter()
            .any(|x| x.contains("no device lost its connection")),
        "{:?}",
        r.findings
    );
    // Judged by faults_failed alone: nothing to recover from is not "never recovered".
    assert!(r
        .expectations
        .iter()
        .any(|e| e.name == "faults_unrecovered" && e.ok));
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "{:?}",
        began.elapsed()
    );
}

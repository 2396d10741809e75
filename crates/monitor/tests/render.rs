//! The monitor's screen in several states, at 80x24 and 200x50, against snapshot files in
//! tests/snapshots. After an intended change of the screen, regenerate them with
//! `UPDATE_SNAPSHOTS=1 cargo test -p fleetbench-monitor` and review the diff.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fleetbench_metrics::aggregate::{
    ErrorGroup, GroupSnapshot, PhaseFigures, Snapshot, Stage, LADDER,
};
use fleetbench_metrics::cpu::CpuUsage;
use fleetbench_metrics::hist::LatencySummary;
use fleetbench_monitor::{render, FaultMark, History, Meta, ViewState};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn meta() -> Meta {
    Meta {
        scenario: "sensors-1k".into(),
        description: "1,000 devices at 1 msg/s, QoS 1".into(),
        broker: "embedded 127.0.0.1:{40001,40002}".into(),
        duration: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(5),
        groups: vec!["sensor".into(), "door".into()],
        phases: vec!["ramp-up".into(), "steady".into(), "spike".into()],
        log_path: Some("/tmp/fleetbench.log".into()),
        faults: Vec::new(),
    }
}

fn latency(p50: u64) -> LatencySummary {
    LatencySummary {
        count: 1_000,
        p50_us: p50,
        p90_us: p50 * 3 / 2,
        p99_us: p50 * 2,
        p999_us: p50 * 4,
        max_us: p50 * 9,
        mean_us: p50 as f64,
    }
}

fn group(target: u32, connected: u32, sent: u64, rate: f64) -> GroupSnapshot {
    GroupSnapshot {
        devices_target: target,
        devices_connected: connected,
        sent,
        late_sends: sent / 100,
        publish_rate: rate,
    }
}

fn connecting() -> History {
    let mut h = History::new(100);
    for i in 1..=3u64 {
        h.push(Snapshot {
            elapsed: Duration::from_millis(250 * i),
            stage: Stage::Connecting,
            devices_target: 1_000,
            devices_connected: 100 * i as u32,
            observers_target: 1,
            observers_connected: 1,
            groups: vec![
                group(900, 90 * i as u32, 0, 0.0),
                group(100, 10 * i as u32, 0, 0.0),
            ],
            ..Snapshot::default()
        });
    }
    h
}

fn steady() -> History {
    let mut h = History::new(100);
    for i in 1..=48u64 {
        let rate = if i < 4 {
            250.0 * i as f64
        } else {
            1_000.0 + (i % 5) as f64 * 7.0
        };
        h.push(Snapshot {
            elapsed: Duration::from_millis(250 * i),
            stage: Stage::Running,
            devices_target: 1_000,
            devices_connected: 1_000,
            observers_target: 1,
            observers_connected: 1,
            sent: 250 * i,
            delivered: 250 * i - 3,
            expected: 250 * i,
            publish_rate: rate,
            deliver_rate: rate - 4.0,
            interval_from_intended: latency(1_200),
            interval_from_send: latency(160),
            total_from_intended: latency(1_250),
            late_sends: 120,
            max_lag_us: 2_300,
            groups: vec![
                group(900, 900, 225 * i, rate * 0.9),
                group(100, 100, 25 * i, rate * 0.1),
            ],
            distribution: LADDER
                .iter()
                .map(|q| (*q, (1_000.0 + 9_000.0 * q.powi(8)) as u64))
                .collect(),
            cpu: CpuUsage {
                generator: 0.42,
                broker: 0.31,
                other: 0.02,
            },
            ..Snapshot::default()
        });
    }
    h
}

fn losses_and_errors() -> History {
    let mut h = steady();
    let mut s = h.latest().cloned().expect("steady has snapshots");
    s.elapsed = Duration::from_secs(31);
    s.stage = Stage::Draining;
    s.devices_connected = 988;
    s.expected = s.sent;
    s.delivered = s.sent - 412;
    s.duplicates = 3;
    s.reordered = 2;
    s.errors = BTreeMap::from([
        (
            fleetbench_metrics::ErrorKind::ConnectRefused,
            ErrorGroup {
                count: 12,
                latest: "connection refused by broker".into(),
            },
        ),
        (
            fleetbench_metrics::ErrorKind::Io,
            ErrorGroup {
                count: 3,
                latest: "connection reset by peer".into(),
            },
        ),
    ]);
    h.push(s);
    h
}

fn screen(width: u16, height: u16, history: &History, state: ViewState) -> String {
    screen_of(&meta(), (width, height), history, state)
}

fn screen_of(
    meta: &Meta,
    (width, height): (u16, u16),
    history: &History,
    state: ViewState,
) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal
        .draw(|f| render(f, meta, history, &state))
        .expect("draw");
    let buffer = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..height {
        let line: String = (0..width)
            .map(|x| buffer[(x, y)].symbol().to_string())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn check(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, text).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_SNAPSHOTS=1", path.display()));
    assert_eq!(
        text,
        expected,
        "screen {name} differs from {}",
        path.display()
    );
}

#[test]
fn connecting_shows_the_fleet_coming_up() {
    for (w, h) in [(80, 24), (200, 50)] {
        let text = screen(w, h, &connecting(), ViewState::default());
        assert!(text.contains("CONNECTING"), "{text}");
        assert!(text.contains("300/1,000"), "devices against target: {text}");
        assert!(text.contains("no deliveries yet"), "{text}");
        check(&format!("connecting-{w}x{h}"), &text);
    }
}

#[test]
fn steady_state_shows_rates_latency_and_groups() {
    for (w, h) in [(80, 24), (200, 50)] {
        let text = screen(w, h, &steady(), ViewState::default());
        for needle in [
            "RUNNING",
            "1,000/1,000",
            "p99.9",
            "1.20ms",
            "160us",
            "sensor",
            "door",
            "publish/s",
        ] {
            assert!(text.contains(needle), "{w}x{h} lacks {needle:?}:\n{text}");
        }
        // A large terminal also charts p99 over time.
        assert_eq!(text.contains("p99 per tick"), h >= 50, "{w}x{h}:\n{text}");
        check(&format!("steady-{w}x{h}"), &text);
    }
}

#[test]
fn a_fault_under_way_is_named_and_its_window_marked_on_the_charts() {
    // The ramp started 0.5 s into the run; a network fault from 8 s to 13 s after it. The
    // last snapshot, at 12 s, is 11.5 s from the ramp: 1.5 s of the fault left.
    let mut h = History::new(100);
    for s in steady().iter() {
        h.push(Snapshot {
            ramp_at: Some(Duration::from_millis(500)),
            ..s.clone()
        });
    }
    let meta = Meta {
        faults: vec![FaultMark {
            label: "network at 8s".into(),
            at: Duration::from_secs(8),
            length: Duration::from_secs(5),
        }],
        ..meta()
    };
    for (w, height) in [(80, 24), (200, 50)] {
        let text = screen_of(&meta, (w, height), &h, ViewState::default());
        assert!(text.contains(" FAULT "), "{text}");
        assert!(
            !text.contains("RUNNING"),
            "the fault takes the badge: {text}"
        );
        assert!(
            text.contains("network at 8s: 1.5s left · elapsed 12.0s"),
            "{text}"
        );
        assert!(
            text.contains("│ fault"),
            "the charts mark the window: {text}"
        );
        check(&format!("fault-{w}x{height}"), &text);
    }
    // Past the window the badge is the stage's again and the mark stays on the charts.
    let mut later = h.clone();
    let mut s = later.latest().cloned().expect("snapshots");
    s.elapsed = Duration::from_secs(14);
    later.push(s);
    let text = screen_of(&meta, (200, 50), &later, ViewState::default());
    assert!(
        text.contains("RUNNING") && text.contains("│ fault"),
        "{text}"
    );
}

#[test]
fn the_load_phase_is_named_with_its_figures() {
    let mut h = steady();
    let mut s = h.latest().cloned().expect("steady has snapshots");
    s.load_phase = Some(2);
    s.phases = vec![
        PhaseFigures::default(),
        PhaseFigures::default(),
        PhaseFigures {
            sent: 12_345,
            expected: 12_345,
            delivered: 12_300,
            from_intended: LatencySummary {
                count: 12_300,
                p99_us: 2_400,
                ..LatencySummary::default()
            },
        },
    ];
    h.push(s);
    let text = screen(80, 24, &h, ViewState::default());
    assert!(
        text.contains("phase 3/3 spike: 12,345 sent, p99 2.40ms"),
        "{text}"
    );
    // Without phases the gauge says only the time.
    assert!(!screen(80, 24, &steady(), ViewState::default()).contains("phase "));
}

#[test]
fn losses_and_errors_are_shown_with_counts() {
    for (w, h) in [(80, 24), (200, 50)] {
        let text = screen(w, h, &losses_and_errors(), ViewState::default());
        for needle in [
            "DRAINING",
            "outstanding 412",
            "dup 3",
            "reord 2",
            "connect refused",
            "×12",
        ] {
            assert!(text.contains(needle), "{w}x{h} lacks {needle:?}:\n{text}");
        }
        check(&format!("losses-{w}x{h}"), &text);
    }
}

#[test]
fn help_overlays_the_keys() {
    let state = ViewState {
        help: true,
        stopping: false,
    };
    let text = screen(80, 24, &steady(), state);
    assert!(text.contains("q / Ctrl-C"), "{text}");
    assert!(text.contains("exit 130"), "{text}");
    check("help-80x24", &text);
}

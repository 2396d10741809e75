//! What each kind of fault is measured by.

use super::*;

fn grid(s: &Scenario) -> FaultGrid {
    FaultGrid::of(&s.faults, s.duration)
}

fn point(ms: u64, connected: u32, connects: u64, errors: u64, delivered: u64) -> Point {
    Point {
        elapsed: Duration::from_millis(ms),
        devices_connected: connected,
        devices_left: 0,
        connects,
        connection_errors: errors,
        connection_errors_by: [0, errors, 0, 0, 0, 0, 0],
        sent: delivered,
        delivered,
    }
}

fn scenario(fault: &str) -> Scenario {
    let text = format!(
        "name = \"f\"\nduration = \"30s\"\n[broker]\nprocess = \"child\"\n[[group]]\n\
         name = \"s\"\ncount = 100\ntopic = \"t/{{index}}\"\nrate = 1.0\n[[observer]]\n\
         name = \"o\"\nfilters = [\"t/#\"]\n[[fault]]\n{fault}"
    );
    fleetbench_scenario::parse("f.toml", &text).expect("scenario")
}

/// An outcome of `s` with the timeline below, for the test to add what the fault did.
fn outcome(s: &Scenario) -> RunOutcome {
    let plan = fleetbench_scenario::Plan::build(s, fleetbench_scenario::Shard::WHOLE);
    let mut run = RunOutcome::not_started(&plan, false);
    run.timeline = timeline();
    run
}

/// 100 devices delivering 100/s; at 10 s a fault; back over a second.
fn timeline() -> Vec<Point> {
    let mut t: Vec<Point> = (0..=40u64)
        .map(|i| point(i * 250, 100, 0, 0, i * 25))
        .collect();
    let at = 10_000;
    for (k, (c, n, e)) in [(0, 0, 100), (40, 40, 100), (80, 40, 100), (100, 20, 100)]
        .iter()
        .enumerate()
    {
        t.push(point(at + (k as u64 + 1) * 250, *c, *n, *e, 1_000));
    }
    t.extend((5..=20u64).map(|k| point(at + k * 250, 100, 0, 100, 1_000 + (k - 4) * 25)));
    t
}

#[test]
fn a_disconnect_is_measured_by_its_devices() {
    let s = scenario("kind = \"disconnect\"\nat = \"10s\"\ngroup = \"s\"\nshare = 0.5\n");
    let mut run = outcome(&s);
    let at = Duration::from_secs(10);
    run.cut_downs = (0..50u64)
        .map(|i| CutDown {
            group: 0,
            at,
            down: Some(Duration::from_millis(100 + 10 * i)),
            planned: true,
        })
        .collect();
    let r = &costs(&s, &grid(&s), &run, &[])[0];
    assert_eq!(
        (r.cuts, r.connected_before, r.lowest_connected),
        (50, 100, 50)
    );
    // The last of the 50 was back 590 ms after the cut.
    assert_eq!(r.recovery_s, Some(0.59));
    assert_eq!(r.peak_reconnects_per_s, 160.0);
    assert_eq!(r.connection_errors, 100);
    // By kind: the 100 were io errors (resets).
    assert_eq!(
        r.connection_errors_by,
        BTreeMap::from([(ErrorKind::Io, 100)])
    );
    assert!(r.delivery_recovery_s.is_some_and(|t| t >= 1.0), "{r:?}");
    // One device that never came back: never recovered.
    run.cut_downs[7].down = None;
    assert_eq!(costs(&s, &grid(&s), &run, &[])[0].recovery_s, None);
}

fn restart(result: Result<&str, &str>) -> Vec<RestartEvent> {
    vec![RestartEvent {
        fault: 0,
        at: Duration::from_secs(10),
        took: Duration::from_millis(300),
        result: result.map(String::from).map_err(String::from),
    }]
}

#[test]
fn a_broker_restart_is_measured_by_what_its_devices_lost() {
    // A restart with `for = "0s"`: every device lost its connection at once and was back
    // within 400-499 ms, too quick for the ticks to see the dip whole.
    let s = scenario("kind = \"broker_restart\"\nat = \"10s\"\n");
    let mut run = outcome(&s);
    run.restarts = restart(Ok("restarted"));
    run.cut_downs = (0..100u64)
        .map(|i| CutDown {
            group: 0,
            at: Duration::from_millis(10_020),
            down: Some(Duration::from_millis(400 + i)),
            planned: false,
        })
        .collect();
    let r = &costs(&s, &grid(&s), &run, &[])[0];
    assert_eq!(
        (r.cuts, r.connected_before, r.lowest_connected),
        (100, 100, 0)
    );
    assert_eq!(r.recovery_s, Some(0.519));
    assert_eq!(r.failed, None);
    // The same restart, which no device saw: nothing was restarted, and it fails.
    run.cut_downs.clear();
    let r = &costs(&s, &grid(&s), &run, &[])[0];
    assert_eq!((r.cuts, r.lowest_connected, r.recovery_s), (0, 100, None));
    assert!(
        r.failed
            .as_deref()
            .is_some_and(|w| w.contains("no device lost its connection")),
        "{r:?}"
    );
    // A restart that could not be done: its reason, no cuts, nothing to recover.
    run.restarts = restart(Err("the port was taken"));
    let r = &costs(&s, &grid(&s), &run, &[])[0];
    assert_eq!((r.cuts, r.lowest_connected, r.recovery_s), (0, 100, None));
    assert_eq!(r.failed.as_deref(), Some("the port was taken"));
}

#[test]
fn devices_that_leave_on_purpose_do_not_keep_a_fault_unrecovered() {
    // A network fault's window ends at 12 s, as the devices' publish windows end and they
    // leave one by one: 100 were connected before, fewer after, and none are missing.
    let s = scenario("kind = \"network\"\nat = \"10s\"\nfor = \"2s\"\ndelay = \"10ms\"\n");
    let mut run = outcome(&s);
    run.timeline = (0..=60u64)
        .map(|i| {
            let left = if i > 44 { (i as u32 - 44) * 10 } else { 0 };
            Point {
                devices_left: left.min(100),
                ..point(i * 250, 100 - left.min(100), 0, 0, i * 25)
            }
        })
        .collect();
    let r = &costs(&s, &grid(&s), &run, &[])[0];
    assert!(
        r.recovery_s.is_some_and(|t| (2.0..2.6).contains(&t)),
        "{r:?}"
    );
}

#[test]
fn a_restarts_results_belong_to_its_own_fault_whatever_ran_before_it() {
    // Two restarts; the run recorded only the second (the first had not run when the run
    // stopped, say): the first row has no restart, the second has its own.
    let s = scenario(
        "kind = \"broker_restart\"\nat = \"10s\"\n\
         [[fault]]\nkind = \"broker_restart\"\nat = \"20s\"\n",
    );
    let mut run = outcome(&s);
    run.restarts = restart(Ok("restarted"));
    run.restarts[0].fault = 1;
    run.restarts[0].at = Duration::from_secs(20);
    let rows = costs(&s, &grid(&s), &run, &[]);
    assert_eq!(rows[0].restart_s, None, "{:?}", rows[0]);
    assert_eq!(rows[1].restart_s, Some(0.3), "{:?}", rows[1]);
    assert_eq!(rows[1].restart.as_deref(), Some("restarted"));
}

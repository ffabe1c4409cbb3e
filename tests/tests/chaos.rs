//! The history checker catches what it must, and a few hundred seeds break no rule (the
//! `tocsin-chaos` binary runs ten thousand in CI).

use tocsin_tests::chaos::{AlertPlan, Behaviour, History, Received, Scenario, check, run};

fn scenario() -> Scenario {
    Scenario {
        seed: 0,
        n: 3,
        peer_timeout: 2.0,
        group_wait: 1.0,
        group_interval: 5.0,
        receivers: vec![Behaviour::Fast; 3],
        alerts: vec![AlertPlan {
            name: "a0".into(),
            group: "g0".into(),
            firing: vec![(10.0, 200.0)],
        }],
        faults: vec![],
        duration: 300.0,
        real_peers: false,
    }
}

fn got(t: f64, node: usize, firing: &[&str], resolved: &[&str]) -> Received {
    Received {
        t,
        node,
        group: "g0".into(),
        firing: firing.iter().map(|s| s.to_string()).collect(),
        resolved: resolved.iter().map(|s| s.to_string()).collect(),
        refused: false,
        retry: false,
    }
}

fn rules(h: Vec<Received>) -> Vec<&'static str> {
    check(&scenario(), &History { received: h })
        .into_iter()
        .map(|v| v.rule)
        .collect()
}

#[test]
fn the_checker_flags_silence_stale_firing_missing_resolves_and_duplicates() {
    let good = vec![got(16.0, 0, &["a0"], &[]), got(206.0, 0, &[], &["a0"])];
    assert_eq!(rules(good.clone()), Vec::<&str>::new());
    assert_eq!(rules(vec![]), vec!["no silence"]);
    assert_eq!(rules(vec![good[0].clone()]), vec!["resolve notified"]);
    let mut stale = good.clone();
    stale.push(got(230.0, 1, &["a0"], &[]));
    assert_eq!(rules(stale), vec!["no stale firing", "no stale firing"]);
    let mut late = good.clone();
    late.insert(1, got(205.6, 2, &["a0"], &[]));
    // (Also the same firing set twice to the group, with no fault to explain it.)
    assert_eq!(
        rules(late),
        vec!["no stale firing", "duplicates explained"],
        "decided 5.6 s after the resolve"
    );
    let mut dup = good.clone();
    dup.insert(1, got(16.5, 1, &["a0"], &[]));
    assert_eq!(rules(dup), vec!["duplicates explained"]);
}

#[test]
fn a_scenario_runs_and_notifies_once_per_state() {
    let s = scenario();
    let h = run(&s);
    let delivered: Vec<_> = h
        .received
        .iter()
        .map(|r| (r.firing.clone(), r.resolved.clone()))
        .collect();
    assert_eq!(
        delivered,
        vec![(vec!["a0".to_string()], vec![]), (vec![], vec!["a0".to_string()])],
        "{:?}",
        h.received
    );
    assert_eq!(h.received[0].node, 0, "the first replica sends");
    assert!(check(&s, &h).is_empty());
}

#[test]
fn two_hundred_seeds_break_no_rule() {
    for seed in 0..200 {
        let s = Scenario::generate(seed);
        let v = check(&s, &run(&s));
        assert!(v.is_empty(), "seed {seed}: {v:?}");
    }
}

//! The history checker catches what it must, and a few hundred seeds break no rule (the
//! `tocsin-chaos` binary runs ten thousand in CI).

use tocsin_tests::chaos::{AlertPlan, Behaviour, Fault, History, Received, Scenario, SilencePlan, check, run};

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
        silences: vec![],
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
    rules_of(&scenario(), h)
}

fn rules_of(s: &Scenario, h: Vec<Received>) -> Vec<&'static str> {
    check(
        s,
        &History {
            received: h,
            refused_silences: vec![],
            unexpired_silences: vec![],
        },
    )
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
    // (The receiver then believes it firing one bound after the resolve, too.)
    assert_eq!(
        rules(stale),
        vec!["resolve notified", "no stale firing", "no stale firing"]
    );
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
fn the_checker_flags_a_silenced_alert_sent_and_more_duplicates_than_faults_explain() {
    let mut s = scenario();
    s.silences = vec![SilencePlan {
        alert: "a0".into(),
        node: 0,
        from: 50.0,
        until: 100.0,
        expire_on: None,
    }];
    let good = vec![got(16.0, 0, &["a0"], &[]), got(206.0, 0, &[], &["a0"])];
    assert_eq!(rules_of(&s, good.clone()), Vec::<&str>::new());
    let mut during = good.clone();
    during.insert(1, got(60.0, 1, &["a0"], &[]));
    assert_eq!(
        rules_of(&s, during),
        vec!["duplicates explained", "nothing sent for a silenced alert"]
    );
    // While silenced, its resolve is not owed (it is dropped with the alert, as in Alertmanager).
    let mut s2 = scenario();
    s2.silences = vec![SilencePlan {
        alert: "a0".into(),
        node: 0,
        from: 150.0,
        until: 260.0,
        expire_on: None,
    }];
    assert_eq!(rules_of(&s2, vec![got(16.0, 0, &["a0"], &[])]), Vec::<&str>::new());
    // One partition explains one duplicate of a notification, not two.
    let mut p = scenario();
    p.faults = vec![Fault::Partition {
        side: vec![0],
        from: 12.0,
        until: 40.0,
        one_way: false,
    }];
    let mut one = good.clone();
    one.insert(1, got(17.0, 1, &["a0"], &[]));
    assert_eq!(rules_of(&p, one.clone()), Vec::<&str>::new());
    one.insert(2, got(18.0, 2, &["a0"], &[]));
    assert_eq!(rules_of(&p, one), vec!["duplicates explained"]);
}

#[test]
fn attackers_in_the_gossip_stretch_the_bound_by_their_phantoms_and_explain_two_duplicates_per_takeover() {
    // Without attackers the bound is 1 + 5 + 3 × 2 + 5 + 9 + 5 + 10 = 41 s: a first
    // notification at 55 s (45 s after the alert fired) is a silence.
    let late = vec![got(55.0, 0, &["a0"], &[]), got(206.0, 0, &[], &["a0"])];
    assert_eq!(rules(late.clone()), vec!["no silence"]);
    // Two phantoms sorting first add two peer timeouts (4 s): 45 s is within the bound...
    let mut p = scenario();
    p.faults = vec![Fault::Phantom {
        count: 2,
        from: 5.0,
        until: 100.0,
    }];
    assert_eq!(rules_of(&p, late), Vec::<&str>::new());
    // ...but 47 s is not; and phantoms explain no duplicate.
    assert_eq!(
        rules_of(&p, vec![got(57.0, 0, &["a0"], &[]), got(206.0, 0, &[], &["a0"])]),
        vec!["no silence"]
    );
    let mut dup = vec![
        got(16.0, 0, &["a0"], &[]),
        got(17.0, 1, &["a0"], &[]),
        got(206.0, 0, &[], &["a0"]),
    ];
    assert_eq!(rules_of(&p, dup.clone()), vec!["duplicates explained"]);
    // A name taken over explains two duplicates of a notification, not three.
    let mut t = scenario();
    t.faults = vec![Fault::Takeover {
        node: 0,
        at: 5.0,
        until: 30.0,
    }];
    dup.insert(2, got(21.0, 0, &["a0"], &[]));
    assert_eq!(rules_of(&t, dup.clone()), Vec::<&str>::new());
    dup.insert(3, got(26.0, 2, &["a0"], &[]));
    assert_eq!(rules_of(&t, dup), vec!["duplicates explained"]);
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

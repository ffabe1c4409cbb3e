//! `tocsin-chaos --seeds N --seed-start S [--real-peers]`: runs N seeded chaos scenarios and
//! checks each history; `--real-peers` runs real `ClusterPeer`s (chitchat membership and
//! `tocsin_cluster::node` replication, in memory) instead of the simulated cluster layer. Prints each violation with a shrunk reproduction; the last line is
//! `N seeds, V violations`. Exits 1 when any seed broke a rule.

use std::process::ExitCode;
use std::time::Instant;

use tocsin_tests::chaos::{Scenario, check, describe, run, shrink};

fn arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: tocsin-chaos [--seeds N] [--seed-start S] [--real-peers] [--history] [--full]");
        return ExitCode::SUCCESS;
    }
    let (seeds, start) = match (arg(&args, "--seeds", 1000), arg(&args, "--seed-start", 0)) {
        (Ok(n), Ok(s)) => (n, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("tocsin-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    if let Ok(filter) = std::env::var("TOCSIN_CHAOS_LOG") {
        // e.g. TOCSIN_CHAOS_LOG=tocsin_server=debug: the replicas' own decisions, for one seed.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(tocsin_tests::chaos::VirtualTime)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
    let real_peers = args.iter().any(|a| a == "--real-peers");
    let began = Instant::now();
    let (mut violations, mut notifications) = (0usize, 0usize);
    for seed in start..start + seeds {
        let mut s = Scenario::generate(seed);
        s.real_peers = real_peers;
        let h = run(&s);
        notifications += h.received.len();
        let v = check(&s, &h);
        if v.is_empty() {
            continue;
        }
        violations += v.len();
        for x in &v {
            println!("seed {seed}: {}: {}", x.rule, x.detail);
        }
        if args.iter().any(|a| a == "--full") {
            print!("{}", describe(&s));
            for r in &h.received {
                println!("  {r:?}");
            }
        }
        let (small, sv) = shrink(&s, v[0].rule);
        println!("minimal reproduction of seed {seed} ({}):", v[0].rule);
        print!("{}", describe(&small));
        for x in sv.iter().filter(|x| x.rule == v[0].rule) {
            println!("  -> {}", x.detail);
        }
        if args.iter().any(|a| a == "--history") {
            for r in run(&small).received {
                println!("  {r:?}");
            }
        }
    }
    eprintln!(
        "tocsin-chaos: {seeds} seeds from {start} in {:.1}s, {notifications} requests to receivers",
        began.elapsed().as_secs_f64()
    );
    println!("{seeds} seeds, {violations} violations");
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

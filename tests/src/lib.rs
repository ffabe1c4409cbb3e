//! Whole-system suites for Tocsin. The chaos simulation ([`chaos`]): N replicas (real
//! [`tocsin_server::app::App`]s: dispatcher, pipeline, delivery machine, stores) in one process
//! on tokio's paused clock, joined by an in-memory network with latency, partitions (symmetric
//! and one-way), kills and restarts with and without their disk; receivers that are fast, slow,
//! failing or flapping; a seeded random schedule of alerts; and a history checker that reads
//! what the receivers got.
//!
//! Entry points: [`chaos::Scenario::generate`], [`chaos::run`], [`chaos::check`],
//! [`chaos::shrink`], and the `tocsin-chaos` binary. Membership and replication are the
//! simulation's own (views with a failure-detection delay, pushes plus periodic anti-entropy);
//! chitchat and gRPC are not in the loop. Nothing here opens a socket or reads the wall clock.

pub mod chaos;

//! Protobuf types generated from `proto/`: Alertmanager-compatible notification log and silence
//! records (`nflogpb`, `silencepb`), used for snapshots on disk.
//!
//! Entry points: [`nflogpb::MeshEntry`], [`silencepb::MeshSilence`], and with the `grpc` feature
//! the replication service in `cluster`. No logic lives here, and this crate depends on nothing of
//! Tocsin's.

#![allow(missing_docs)]

/// Alertmanager's `nflogpb` package.
pub mod nflogpb {
    include!(concat!(env!("OUT_DIR"), "/nflogpb.rs"));
}

/// Alertmanager's `silencepb` package.
pub mod silencepb {
    include!(concat!(env!("OUT_DIR"), "/silencepb.rs"));
}

/// Tocsin's replication service (feature `grpc`).
#[cfg(feature = "grpc")]
pub mod cluster {
    include!(concat!(env!("OUT_DIR"), "/tocsin.cluster.v1.rs"));
}

pub use prost::Message;
pub use prost_types::Timestamp;

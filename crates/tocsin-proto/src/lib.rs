//! Protobuf types generated from `proto/`: Alertmanager-compatible notification log and silence
//! records (`nflogpb`, `silencepb`), used for snapshots on disk.
//!
//! Entry points: [`nflogpb::MeshEntry`], [`silencepb::MeshSilence`]. No logic lives here, and this
//! crate depends on nothing of Tocsin's.

#![allow(missing_docs)]

/// Alertmanager's `nflogpb` package.
pub mod nflogpb {
    include!(concat!(env!("OUT_DIR"), "/nflogpb.rs"));
}

/// Alertmanager's `silencepb` package.
pub mod silencepb {
    include!(concat!(env!("OUT_DIR"), "/silencepb.rs"));
}

pub use prost::Message;
pub use prost_types::Timestamp;

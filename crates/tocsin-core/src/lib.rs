//! Tocsin's pure domain: everything Alertmanager decides, as plain functions and data.
//!
//! Labels and fingerprints ([`labels`], compact label sets in [`labelset`]), matchers and their two parsers ([`matchers`], with Go-RE2
//! compatible regexes from [`regex_go`]), Prometheus durations ([`duration`]), the configuration
//! file ([`config::load`]), the routing tree ([`route`]), alert ingestion and merge ([`alert`]),
//! aggregation-group contents ([`group`]), inhibition ([`inhibit`]), time intervals
//! ([`timeinterval`]), the notification log with the dedup decision ([`nflog`]), the delivery state
//! machine of one flush to one integration ([`delivery`]), in-flight send claims
//! ([`claim`]), silences
//! ([`silence`]), the Alertmanager-compatible snapshot codec ([`snapshot`]) and the event
//! history's records and queries ([`events`]).
//!
//! This crate must not touch sockets, files, the wall clock or an async runtime: time enters as a
//! `now` argument and files are named, never read. `tocsin-server` and `tocsin-notify` do the I/O.

pub mod admit;
pub mod alert;
pub mod claim;
pub mod config;
pub mod delivery;
pub mod duration;
pub mod events;
pub mod group;
pub mod inhibit;
pub mod labels;
pub mod labelset;
pub mod limit;
pub mod matchers;
pub mod nflog;
pub mod regex_go;
pub mod route;
pub mod silence;
pub mod snapshot;
pub mod time;
pub mod timeinterval;

//! Target side of the cluster: one inventory (the seed's targets.conf) and
//! what is built from it.
//!
//! Layers, one direction: [`model`] (typed inventory) ← [`inventory`] (TOML
//! → model, errors with file, line, key) and [`import`] (the seed's bash
//! targets.conf → inventory TOML, never executed) ← [`gen`] (pure model →
//! IET, tgt, LIO, SCST configuration bytes) and [`tgtadm`] (pure tgtadm
//! argument vectors) ← [`live`] (tgtadm output and /proc/net/iet → live
//! model, through the one command runner) ← [`plan`] (pure diff of desired
//! and live state) ← [`apply`] (the executor) ← the CLIs.

pub mod apply;
pub mod cli;
pub mod gen;
pub mod import;
pub mod inventory;
pub mod live;
pub mod model;
pub mod plan;
pub mod plan_iet;
pub mod routing;
pub mod routing_cli;
pub mod session_top;
pub mod state_cli;
pub mod tgtadm;

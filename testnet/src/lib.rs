//! Tools to run many kadswarm nodes on one machine.
//!
//! The `testnet` binary drives real `node` processes: `up` starts a loopback
//! swarm and keeps it running, `demo` spreads a generated file through one
//! and reports the distribution time, who uploaded what, and the copies'
//! SHA-256, and `distribution` measures distribution time in network
//! namespaces with capped links against the textbook bounds. The modules are public so the workspace's integration tests can
//! drive swarms the same way.
//!
//! Network safety: loopback nodes listen only on 127.0.0.1 and are only ever
//! given bootstrap addresses on 127.0.0.1; namespace nodes only ever see
//! addresses inside the namespaces the testbed created (see [`netns`]).

pub mod bound;
pub mod chart;
pub mod churn;
pub mod datagen;
pub mod demo;
pub mod distribution;
pub mod hostile;
pub mod incentives;
pub mod ipcmd;
pub mod loopback;
pub mod nat;
pub mod netns;
pub mod nodebin;
pub mod nsnode;
pub mod nsrun;
pub mod procs;
pub mod progress;
pub mod report;
pub mod rundir;
pub mod sim;
pub mod stats;
pub mod swarm;
pub mod tcpstats;
pub mod timeline;
pub mod units;

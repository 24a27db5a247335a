//! The command line's pieces: flags, the embedded share and get, serving until a signal.

pub mod get;
pub mod human;
pub mod net;
pub mod output;
pub mod remote;
pub mod remote_cmds;
pub mod serve;
pub mod share;
pub mod stats_file;

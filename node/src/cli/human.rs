//! Sizes for people to read: the workspace's one formatter, [`node::units`].

/// `bytes` in binary units with one decimal, e.g. `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    node::units::bytes(bytes)
}

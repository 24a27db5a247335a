//! The textbook lower bounds on the time to distribute a file of F bits
//! from one server (upload u_s) to N peers (uploads u_i, slowest download
//! d_min):
//!
//! - client-server: `D_cs = max{ N·F/u_s, F/d_min }`
//! - peer-to-peer: `D_p2p = max{ F/u_s, F/d_min, N·F/(u_s + Σu_i) }`

use crate::units::{ByteSize, Rate};

/// The inputs of both bounds; every peer has the same upload here.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Number of peers N.
    pub n: usize,
    /// File size F.
    pub size: ByteSize,
    /// Server upload u_s.
    pub server_upload: Rate,
    /// Each peer's upload u_i.
    pub upload: Rate,
    /// Each peer's download cap (`None`: uncapped, the F/d_min term vanishes).
    pub download: Option<Rate>,
}

impl Params {
    /// F in bits.
    fn bits(&self) -> f64 {
        self.size.0 as f64 * 8.0
    }

    /// F/d_min, or 0 when downloads are uncapped.
    fn download_term(&self) -> f64 {
        self.download
            .map_or(0.0, |d| self.bits() / d.bits_per_sec())
    }

    /// F/u in seconds: the time one peer needs to upload the file, the
    /// textbook figure's unit of time.
    pub fn file_time(&self) -> f64 {
        self.bits() / self.upload.bits_per_sec()
    }

    /// D_cs in seconds.
    pub fn client_server(&self) -> f64 {
        let n = self.n as f64;
        (n * self.bits() / self.server_upload.bits_per_sec()).max(self.download_term())
    }

    /// D_p2p in seconds.
    pub fn p2p(&self) -> f64 {
        let n = self.n as f64;
        let total_upload = self.server_upload.bits_per_sec() + n * self.upload.bits_per_sec();
        (self.bits() / self.server_upload.bits_per_sec())
            .max(self.download_term())
            .max(n * self.bits() / total_upload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn params(n: usize, mib: u64, u_mbit: u64, us_mbit: u64) -> Params {
        Params {
            n,
            size: ByteSize(mib * MIB),
            server_upload: Rate(us_mbit * 1_000_000),
            upload: Rate(u_mbit * 1_000_000),
            download: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.005
    }

    #[test]
    fn reproduces_the_issue_figures() {
        // N=5, F=16 MiB, u=8 Mbit/s, u_s=32 Mbit/s: 5·134.2/(32+40) = 9.32 s.
        let p = params(5, 16, 8, 32);
        assert!(close(p.p2p(), 9.32), "{}", p.p2p());
        assert!(close(p.client_server(), 20.97), "{}", p.client_server());
        // N=30, u_s=10u, F/u = 16.78 s: 30/40 of that.
        let p = params(30, 16, 8, 80);
        assert!(close(p.bits() / p.upload.bits_per_sec(), 16.78));
        assert!(close(p.p2p(), 12.58), "{}", p.p2p());
        // F=64 MiB at N=5.
        assert!(close(params(5, 64, 8, 32).p2p(), 37.28));
    }

    #[test]
    fn small_swarms_are_bound_by_the_server_and_downloads_by_d_min() {
        let p = params(1, 16, 8, 32);
        assert!(close(p.p2p(), 134.217728 / 32.0));
        assert!(close(p.client_server(), p.p2p()));
        let capped = Params {
            download: Some(Rate(4_000_000)),
            ..p
        };
        assert!(close(capped.p2p(), 134.217728 / 4.0));
        assert!(close(capped.client_server(), 134.217728 / 4.0));
    }
}

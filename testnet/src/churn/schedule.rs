//! The churn run's plan, fixed before any node starts and the same for the
//! same seed: Poisson arrivals (exponential gaps at the given rate), who
//! leaves at once on finishing (selfish, probability p) and who stays T
//! seconds (altruistic), and which leechers quit mid-download and come back.

use std::time::Duration;

use crate::datagen::SplitMix64;

/// What decides the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanParams {
    /// Number of leechers.
    pub leechers: usize,
    /// Arrivals per second.
    pub rate: f64,
    /// Probability that a finished leecher leaves at once.
    pub selfish: f64,
    /// Fraction of leechers that quit mid-download once (rounded to a count).
    pub quitters: f64,
    /// RNG seed.
    pub seed: u64,
}

/// One leecher's part in the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    /// `leecher-<k>`, numbered in order of arrival.
    pub name: String,
    /// When it starts, from the start of the arrivals.
    pub at: Duration,
    /// Leaves as soon as its copy is verified (else it stays T seconds).
    pub selfish: bool,
    /// Quits mid-download once and comes back with its partial data.
    pub quits: bool,
}

/// The plan for `p`: arrivals in time order.
pub fn plan(p: &PlanParams) -> Vec<Arrival> {
    let mut rng = SplitMix64::new(p.seed);
    let mut t = 0.0;
    let mut out = Vec::with_capacity(p.leechers);
    for k in 1..=p.leechers {
        t += -(1.0 - uniform(&mut rng)).ln() / p.rate;
        out.push(Arrival {
            name: format!("leecher-{k}"),
            at: Duration::from_secs_f64(t),
            selfish: uniform(&mut rng) < p.selfish,
            quits: false,
        });
    }
    // Exactly round(fraction · N) quitters, chosen by a partial shuffle.
    let quitters = ((p.quitters * p.leechers as f64).round() as usize).min(p.leechers);
    let mut idx: Vec<usize> = (0..p.leechers).collect();
    for i in 0..quitters {
        let j = i + (rng.next_u64() % (p.leechers - i) as u64) as usize;
        idx.swap(i, j);
        out[idx[i]].quits = true;
    }
    out
}

/// A uniform number in [0, 1).
fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(seed: u64) -> PlanParams {
        PlanParams {
            leechers: 400,
            rate: 0.5,
            selfish: 0.25,
            quitters: 0.25,
            seed,
        }
    }

    #[test]
    fn same_seed_same_plan_with_the_asked_for_mix() {
        let a = plan(&params(3));
        assert_eq!(a, plan(&params(3)));
        assert_ne!(a, plan(&params(4)));
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at), "in time order");
        assert_eq!(a.iter().filter(|x| x.quits).count(), 100);
        let selfish = a.iter().filter(|x| x.selfish).count();
        assert!((70..130).contains(&selfish), "{selfish} of 400 at p = 0.25");
        // 400 arrivals at 0.5/s span about 800 s.
        let span = a.last().unwrap().at.as_secs_f64();
        assert!((650.0..950.0).contains(&span), "{span}");
        assert_eq!(a[0].name, "leecher-1");
    }

    #[test]
    fn extreme_fractions() {
        let mut p = params(1);
        p.leechers = 4;
        p.selfish = 1.0;
        p.quitters = 1.0;
        assert!(plan(&p).iter().all(|x| x.selfish && x.quits));
        p.selfish = 0.0;
        p.quitters = 0.0;
        assert!(plan(&p).iter().all(|x| !x.selfish && !x.quits));
    }
}

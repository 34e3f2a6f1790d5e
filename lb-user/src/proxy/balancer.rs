//! Per-VIP backend selection for `lb-user proxy`, on the shared selection
//! code ([`lb_common::userspace::select`]) that also builds the XDP tables
//! and balances alb: the same candidates (id = index into `vip.backends`,
//! key = `Backend::key()`, the config's weights), the same Maglev size and
//! seed, so the proxy picks the backend the kernel would.

use std::sync::{Arc, RwLock};

use anyhow::{Context as _, Result};
use lb_common::userspace::select::{self, Candidate, Flow, HashOptions, Selection};

use crate::config::{MaglevConfig, Vip};

/// The selection over the backends `up` (indexes into `vip.backends`).
pub fn build_selection(vip: &Vip, maglev: &MaglevConfig, up: &[u32]) -> Result<Box<dyn Selection>> {
    let candidates: Vec<Candidate> = up
        .iter()
        .map(|&id| {
            let b = &vip.backends[id as usize];
            Candidate::new(id, b.key(), b.weight)
        })
        .collect();
    select::build(vip.algorithm.selection(), &candidates, HashOptions { maglev_size: maglev.size, seed: maglev.seed })
        .with_context(|| format!("building the {} selection of VIP {}", vip.algorithm.selection(), vip.name))
}

struct Current {
    up: Vec<u32>,
    selection: Box<dyn Selection>,
}

/// One VIP's current selection; swapped whole when health changes.
pub struct Balancer {
    vip: Vip,
    maglev: MaglevConfig,
    current: RwLock<Arc<Current>>,
}

impl Balancer {
    /// Starts with every backend up.
    pub fn new(vip: &Vip, maglev: MaglevConfig) -> Result<Balancer> {
        let up: Vec<u32> = (0..vip.backends.len() as u32).collect();
        let selection = build_selection(vip, &maglev, &up)?;
        Ok(Balancer { vip: vip.clone(), maglev, current: RwLock::new(Arc::new(Current { up, selection })) })
    }

    fn current(&self) -> Arc<Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Backend ids currently selectable.
    pub fn up(&self) -> Vec<u32> {
        self.current().up.clone()
    }

    /// Rebuilds the selection over `up`; `false` when `up` did not change.
    pub fn update(&self, up: &[u32]) -> Result<bool> {
        if self.current().up == up {
            return Ok(false);
        }
        let selection = build_selection(&self.vip, &self.maglev, up)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Current { up: up.to_vec(), selection });
        Ok(true)
    }

    /// The backend for a new flow.
    pub fn pick(&self, flow: &Flow) -> Option<u32> {
        self.current().selection.pick(flow).next()
    }

    /// The first choice for `flow` and up to `n - 1` fallbacks.
    pub fn picks(&self, flow: &Flow, n: usize) -> Vec<u32> {
        self.current().selection.pick(flow).take(n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use lb_common::userspace::select::{build_table, MaglevBackend};

    fn vip(alg: &str) -> (Vip, MaglevConfig) {
        let yaml = format!(
            "interfaces: [{{ name: lo }}]\nmaglev: {{ size: 251, seed: 7 }}\nvips:\n  - name: web\n    address: 127.0.0.1\n    port: 80\n    \
             algorithm: {alg}\n    backends:\n      - {{ address: 127.0.0.1, port: 8001 }}\n      - {{ address: 127.0.0.1, port: 8002 }}\n      \
             - {{ address: 127.0.0.1, port: 8003 }}\n"
        );
        let c = Config::parse(&yaml, "t.yaml").unwrap();
        (c.vips[0].clone(), c.maglev)
    }

    fn flow(p: u16) -> Flow {
        Flow { src: format!("127.0.0.1:{p}").parse().unwrap(), dst: "127.0.0.1:80".parse().unwrap(), protocol: 6 }
    }

    #[test]
    fn maglev_matches_the_map_builder_and_skips_down_backends() {
        let (v, m) = vip("maglev");
        let b = Balancer::new(&v, m).unwrap();
        // The table desired.rs writes for all backends, looked up as the
        // kernel does.
        let ring: Vec<_> = v.backends.iter().enumerate().map(|(i, x)| MaglevBackend { id: i as u32, key: x.key(), weight: x.weight }).collect();
        let table = build_table(&ring, 251, 7).unwrap();
        let kernel = |p: u16| {
            let h = lb_common::hash::flow_hash_v4([127, 0, 0, 1], [127, 0, 0, 1], p, 80, 6, 7);
            table[h as usize % table.len()]
        };
        assert!((1000..1200).all(|p| b.pick(&flow(p)) == Some(kernel(p))));
        assert!(b.update(&[0, 2]).unwrap());
        assert!(!b.update(&[0, 2]).unwrap());
        assert!((1000..1200).all(|p| b.pick(&flow(p)) != Some(1)));
        // Fallbacks: the other up backend.
        for p in 1000..1050 {
            let picks = b.picks(&flow(p), 2);
            assert_eq!(picks.len(), 2);
            assert_ne!(picks[0], picks[1]);
            assert!(picks.iter().all(|&i| i == 0 || i == 2));
        }
        b.update(&[]).unwrap();
        assert_eq!(b.pick(&flow(1)), None);
        b.update(&[1]).unwrap();
        assert_eq!(b.picks(&flow(1), 2), [1], "no fallback with one backend");
    }

    #[test]
    fn round_robin_cycles_over_up_backends() {
        let (v, m) = vip("round_robin");
        let b = Balancer::new(&v, m).unwrap();
        let picks: Vec<_> = (0..6).map(|p| b.pick(&flow(p)).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        b.update(&[0, 2]).unwrap();
        let picks: Vec<_> = (0..4).map(|p| b.pick(&flow(p)).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }
}

//! Per-VIP backend selection, rebuilt from the healthy backends with the same
//! code the XDP map builder uses (`maglev::build_table` + `select`).

use std::sync::{Arc, RwLock};

use anyhow::{Context as _, Result};

use crate::{
    config::{Algorithm, MaglevConfig, Vip},
    maglev::{build_table, MaglevBackend},
    select::{Flow, MaglevSelector, RoundRobinSelector, Selector},
};

/// A selector over the backends `up` (indexes into `vip.backends`, which are
/// also the backend ids the selector returns): a Maglev table of `maglev.size`
/// slots keyed by `Backend::key()` with the config's weights and seed
/// (`source_only` for `maglev_src`), or round robin over `up` in order.
pub fn build_selector(vip: &Vip, maglev: &MaglevConfig, up: &[u32]) -> Result<Box<dyn Selector>> {
    Ok(match vip.algorithm {
        Algorithm::Maglev | Algorithm::MaglevSrc => {
            let ring: Vec<MaglevBackend> = up
                .iter()
                .map(|&id| {
                    let b = &vip.backends[id as usize];
                    MaglevBackend { id, key: b.key(), weight: b.weight }
                })
                .collect();
            let table = build_table(&ring, maglev.size, maglev.seed)
                .with_context(|| format!("building the Maglev table of VIP {}", vip.name))?;
            Box::new(MaglevSelector::new(table, maglev.seed, vip.algorithm == Algorithm::MaglevSrc))
        }
        Algorithm::RoundRobin => Box::new(RoundRobinSelector::new(up.to_vec())),
    })
}

struct Current {
    up: Vec<u32>,
    selector: Box<dyn Selector>,
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
        let selector = build_selector(vip, &maglev, &up)?;
        Ok(Balancer { vip: vip.clone(), maglev, current: RwLock::new(Arc::new(Current { up, selector })) })
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
        let selector = build_selector(&self.vip, &self.maglev, up)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Current { up: up.to_vec(), selector });
        Ok(true)
    }

    /// The backend for a new flow.
    pub fn pick(&self, flow: &Flow) -> Option<u32> {
        self.current().selector.pick(flow)
    }

    /// The backend to try once when connecting to `failed` did not work: the
    /// next selectable backend after it in config order (wrapping), or `None`
    /// when there is no other.
    pub fn fallback(&self, failed: u32) -> Option<u32> {
        let cur = self.current();
        cur.up.iter().copied().find(|&id| id > failed).or_else(|| cur.up.first().copied()).filter(|&id| id != failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
        // Same table as desired.rs builds for all backends.
        let ring: Vec<_> = v.backends.iter().enumerate().map(|(i, x)| MaglevBackend { id: i as u32, key: x.key(), weight: x.weight }).collect();
        let sel = MaglevSelector::new(build_table(&ring, 251, 7).unwrap(), 7, false);
        assert!((1000..1200).all(|p| b.pick(&flow(p)) == sel.pick(&flow(p))));
        assert!(b.update(&[0, 2]).unwrap());
        assert!(!b.update(&[0, 2]).unwrap());
        assert!((1000..1200).all(|p| b.pick(&flow(p)) != Some(1)));
        assert_eq!(b.fallback(0), Some(2));
        assert_eq!(b.fallback(2), Some(0));
        assert_eq!(b.fallback(1), Some(2));
        b.update(&[]).unwrap();
        assert_eq!(b.pick(&flow(1)), None);
        assert_eq!(b.fallback(0), None);
        b.update(&[1]).unwrap();
        assert_eq!(b.fallback(1), None);
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

//! From a validated config to the exact map contents the data path needs:
//! backend ids, VIP entries, Maglev tables and round-robin lists.
//!
//! Ids are positional (VIP id = index in the config, backend ids handed out
//! in config order), so the same config always yields the same maps.

use anyhow::{Context as _, Result};
use lb_common::lb::{BackendInfo, VipInfo, VipKey};

use crate::{
    config::{AllowedPorts, AllowlistScope, Config},
    dataplane::{backend_info, vip_key, Dataplane},
    maglev::{self, MaglevBackend},
    program::LoadOptions,
};

/// One VIP's entry and tables.
pub struct DesiredVip {
    pub name: String,
    pub key: VipKey,
    pub info: VipInfo,
    pub maglev: Vec<u32>,
    pub round_robin: Vec<u32>,
    /// Backend ids of this VIP, in config order.
    pub backend_ids: Vec<u32>,
}

/// Everything lb-user writes into the maps for a config.
pub struct Desired {
    pub load: LoadOptions,
    pub backends: Vec<(u32, BackendInfo)>,
    pub vips: Vec<DesiredVip>,
}

impl Desired {
    pub fn from_config(config: &Config) -> Result<Desired> {
        let load = LoadOptions {
            maglev_size: config.maglev.size,
            max_flows: config.conntrack.max_flows,
            tcp_timeout_s: config.conntrack.tcp_timeout.as_secs() as u32,
            udp_timeout_s: config.conntrack.udp_timeout.as_secs() as u32,
        };
        let mut backends = Vec::new();
        let mut vips = Vec::new();
        for (vip_id, vip) in config.vips.iter().enumerate() {
            let mut ids = Vec::new();
            let mut ring = Vec::new();
            for b in &vip.backends {
                let id = backends.len() as u32;
                let mut info = backend_info(b.address, b.port);
                info.mac = b.mac.unwrap_or_default();
                backends.push((id, info));
                ids.push(id);
                ring.push(MaglevBackend { id, key: b.key(), weight: b.weight });
            }
            let maglev = maglev::build_table(&ring, config.maglev.size, config.maglev.seed)
                .with_context(|| format!("building the Maglev table of VIP {}", vip.name))?;
            let info = VipInfo {
                vip_id: vip_id as u32,
                algorithm: vip.algorithm.code(),
                mode: vip.forwarding.code(),
                hash_seed: config.maglev.seed,
                ..Default::default()
            };
            vips.push(DesiredVip {
                name: vip.name.clone(),
                key: vip_key(vip.address, vip.port, vip.protocol.number()),
                info,
                maglev,
                round_robin: ids.clone(),
                backend_ids: ids,
            });
        }
        Ok(Desired { load, backends, vips })
    }

    /// Writes everything into a freshly loaded program's maps.
    pub fn apply(&self, config: &Config, dp: &mut Dataplane) -> Result<()> {
        for (id, info) in &self.backends {
            dp.set_backend(*id, info)?;
        }
        for vip in &self.vips {
            dp.set_vip(&vip.key, &vip.info, &vip.maglev, &vip.round_robin)
                .with_context(|| format!("installing VIP {}", vip.name))?;
        }
        if let Some(allow) = &config.allowlist {
            let ports = match &allow.ports {
                AllowedPorts::Any => None,
                AllowedPorts::Only(p) => Some(p.as_slice()),
            };
            dp.set_allowlist(&allow.cidrs, ports, allow.scope == AllowlistScope::All)?;
        }
        Ok(())
    }
}

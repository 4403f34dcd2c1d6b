//! The running configuration: the settings and the layers built from them, replaced whole on
//! SIGHUP ([`Shared`]: readers take the current one without a lock; a request keeps the one it
//! started with until it ends).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Settings;
use crate::intercept::Interceptor;
use crate::upstream::Upstreams;

/// The settings and the upstream layers they were built into.
pub struct Runtime {
    /// The settings.
    pub settings: Settings,
    /// The layers, their pools.
    pub upstreams: Upstreams,
    /// The interception CA, with `--intercept-ca`.
    pub intercept: Option<Interceptor>,
}

/// The running configuration, shared by the workers, the admin listener and the reloads.
pub type Shared = Arc<ArcSwap<Runtime>>;

/// A new shared configuration.
pub fn share(rt: Runtime) -> Shared {
    Arc::new(ArcSwap::from_pointee(rt))
}

/// The interception CA the settings name, loaded (`None` without `--intercept-ca`); every
/// upstream layer then distrusts its root: apps may trust it through the system store the
/// layers read too, and it must never vouch for an upstream to the proxy.
pub fn interceptor(settings: &mut Settings) -> Result<Option<Interceptor>, String> {
    let Some(dir) = &settings.intercept_ca else {
        return Ok(None);
    };
    let ic = Interceptor::load(dir, &settings.routing.allow)
        .map_err(|e| format!("--intercept-ca: {e}"))?;
    let der = ic
        .root()
        .to_der()
        .map_err(|e| format!("--intercept-ca: {e}"))?;
    settings.layer.distrust = Some(der.clone());
    for h in &mut settings.host_layers {
        h.layer.distrust = Some(der.clone());
    }
    Ok(Some(ic))
}

//! Extensions built into the agent: `health_check` (the DaemonSet's probe).

pub mod health_check;

use std::sync::Arc;
use vigil_core::ExtensionFactory;

pub fn factories() -> Vec<Arc<dyn ExtensionFactory>> {
    vec![health_check::factory()]
}

//! Extensions built into the agent: `health_check` (the DaemonSet's probe), `file_storage` (durable
//! state for queues and checkpoints) and `bearertokenauth` (credentials for exporters).

pub mod bearertokenauth;
pub mod file_storage;
pub mod health_check;
pub mod zpages;

use std::sync::Arc;
use vigil_core::ExtensionFactory;

pub fn factories() -> Vec<Arc<dyn ExtensionFactory>> {
    vec![
        health_check::factory(),
        file_storage::factory(),
        bearertokenauth::factory(),
        zpages::factory(),
    ]
}

//! `vigil-loadgen`'s library side: the scenario simulator, shared with `vigil eval rca`.

pub mod scenario;

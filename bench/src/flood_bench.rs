//! placeholder
use crate::config::{ConfigError, Validate};
use serde::{Deserialize, Serialize};
/// placeholder
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FloodBenchConfig {}
impl Validate for FloodBenchConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
/// placeholder
pub fn run(_c: &FloodBenchConfig) -> Result<(), crate::synack_stack::RunError> {
    Err(crate::synack_stack::RunError(
        "the flood benchmark is not written yet".into(),
    ))
}

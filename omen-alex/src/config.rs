//! Tuning knobs of the index, with the paper's defaults where it gives them.

use crate::error::AlexError;

/// Configuration of an [`AlexMap`](crate::AlexMap).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AlexConfig {
    /// Density a data node is built with (paper: 0.7).
    pub density_init: f64,
    /// Density at which a data node is expanded or split (paper: 0.8).
    pub density_max: f64,
    /// Density a data node has right after an expansion (paper: 0.6).
    pub density_min: f64,
    /// Largest gapped array of a data node, in slots. A node that would grow past it splits.
    pub data_node_slots_max: usize,
    /// Largest number of child slots of an internal node (a power of two). Bounding it bounds
    /// the memory a bad model can cost: past it, nodes split downwards instead.
    pub fanout_max: usize,
    /// Fit models and estimate costs on samples of large inputs (CDFShop-style adaptive
    /// sampling) instead of on every key. Speeds bulk load; lookups are unaffected.
    pub sampling: bool,
    /// Cost of one more tree level, in units of exponential-search probes.
    pub level_cost: f64,
    /// Cost of one more data node, in exponential-search probes (a node's search cost is
    /// summed over its keys). The paper's model counts probes only, so it splits while the
    /// probes saved exceed this; but every node also has a header that a lookup reads first,
    /// and with tens of thousands of nodes those headers fall out of cache: a miss per lookup
    /// that the probes saved never repay. Measured on 10M keys (48-byte values, appended in
    /// key order): 32 built 45K data nodes, depth 4, lookups of 533–683 ns; 1024 built 4K
    /// nodes, depth 3, 288–345 ns; 8192 built 437 nodes, 255–291 ns.
    pub data_node_cost: f64,
}

impl Default for AlexConfig {
    fn default() -> Self {
        Self {
            density_init: 0.7,
            density_max: 0.8,
            density_min: 0.6,
            data_node_slots_max: 1 << 20,
            fanout_max: 1 << 16,
            sampling: true,
            level_cost: 2.0,
            data_node_cost: 1024.0,
        }
    }
}

impl AlexConfig {
    /// Returns this configuration with sampled model fitting switched on or off.
    pub fn with_sampling(mut self, sampling: bool) -> Self {
        self.sampling = sampling;
        self
    }

    /// Checks that the densities are ordered and the limits usable.
    pub fn validate(&self) -> Result<(), AlexError> {
        let densities_ordered = 0.0 < self.density_min
            && self.density_min <= self.density_init
            && self.density_init + 0.05 <= self.density_max
            && self.density_max < 1.0;
        if !densities_ordered {
            return Err(AlexError::InvalidConfig(format!(
                "densities must satisfy 0 < min <= init <= max - 0.05 < 0.95, got min {} init {} max {}",
                self.density_min, self.density_init, self.density_max
            )));
        }
        if !self.fanout_max.is_power_of_two() || self.fanout_max < 2 || self.fanout_max > 1 << 24 {
            return Err(AlexError::InvalidConfig(format!(
                "fanout_max must be a power of two in 2..=2^24, got {}",
                self.fanout_max
            )));
        }
        if self.data_node_slots_max < 64 || self.data_node_slots_max > 1 << 28 {
            return Err(AlexError::InvalidConfig(format!(
                "data_node_slots_max must be in 64..=2^28, got {}",
                self.data_node_slots_max
            )));
        }
        if !(self.data_node_cost.is_finite() && self.data_node_cost >= 0.0) {
            return Err(AlexError::InvalidConfig(format!(
                "data_node_cost must be finite and >= 0, got {}",
                self.data_node_cost
            )));
        }
        if !(self.level_cost.is_finite() && self.level_cost >= 0.0) {
            return Err(AlexError::InvalidConfig(format!(
                "level_cost must be finite and >= 0, got {}",
                self.level_cost
            )));
        }
        Ok(())
    }

    /// Most keys a data node is built with.
    pub(crate) fn data_node_keys_max(&self) -> usize {
        (self.data_node_slots_max as f64 * self.density_init) as usize
    }

    /// Gapped-array size for `keys` keys at `density`.
    pub(crate) fn capacity_for(&self, keys: usize, density: f64) -> usize {
        ((keys as f64 / density).ceil() as usize).max(crate::data_node::CAPACITY_MIN)
    }
}

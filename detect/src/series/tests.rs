//! Synthetic-series tests of the detector and the episode layer.

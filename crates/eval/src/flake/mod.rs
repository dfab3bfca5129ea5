//! Flakes (placeholder while being written).

//! Workflows (being written).

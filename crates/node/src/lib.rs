//! Node runtime.

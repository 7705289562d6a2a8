//! redis (being written).

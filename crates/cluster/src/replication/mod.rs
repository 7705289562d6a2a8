//! Replicated job and workflow state (placeholder; being written).

//! Job engine: job model, queue backends, workers, workflows and the HTTP API.

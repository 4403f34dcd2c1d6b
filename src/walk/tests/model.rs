//! The model-based property test (below).

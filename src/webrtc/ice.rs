//! ICE-lite agent (placeholder)

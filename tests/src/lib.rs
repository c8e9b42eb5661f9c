//! Test fleet of engines on loopback and helpers for integration tests.

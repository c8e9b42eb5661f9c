//! Simulate fleets in virtual time through healthprobe-core (work in progress).

//! Workloads shared by the criterion benches.

//! The healthprobe shell.

//! Driving: the [`worker::Worker`] that pumps the pure tick machine, the
//! [`ports`] it performs actions through, the `shutdown` signal, and with
//! failover the lease thread ([`coordinator`]).
//!
//! Nothing here decides a rule: [`healthprobe_core::tick::TickMachine`]
//! does. The worker performs the actions it yields, in order.

pub mod coordinator;
pub mod ports;
pub(crate) mod shutdown;
pub mod worker;

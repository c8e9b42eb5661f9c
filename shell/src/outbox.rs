//! Events waiting for the publisher (D4): delivered in emission order, never dropped.
//!
//! Every event the core emits goes into the [`Outbox`] first; delivering
//! means draining it, oldest first, through a [`HealthEventPublisher`]. The
//! first refusal stops the drain and leaves that event and every later one
//! pending, so no event overtakes an older one, of its own game or any
//! other. The worker owns one outbox (no lock) and decides when to drain it;
//! see [`crate::worker`].

use healthprobe_core::HealthEvent;

use crate::ports::{HealthEventPublisher, PublishError};

/// A FIFO of events not yet accepted by the publisher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    pending: Vec<HealthEvent>,
}

/// What one [`Outbox::drain`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Drained {
    /// Events the publisher accepted, removed from the outbox.
    pub delivered: usize,
    /// Why the drain stopped early; the refused event is still the oldest pending.
    pub refused: Option<PublishError>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// An outbox holding `pending`, oldest first (for example restored from a snapshot).
    pub fn with_pending(pending: Vec<HealthEvent>) -> Self {
        Self { pending }
    }

    /// Queue `event` behind every event already pending.
    pub fn push(&mut self, event: HealthEvent) {
        self.pending.push(event);
    }

    /// The events waiting, oldest first: the order they will be published in.
    pub fn pending(&self) -> &[HealthEvent] {
        &self.pending
    }

    /// How many events are waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Publish pending events oldest first until the outbox is empty or the
    /// publisher refuses one; `on_delivered` sees each accepted event.
    ///
    /// Accepted events leave the outbox; the refused one and all later ones
    /// stay, in order. Call it again (typically on the next tick) to retry.
    pub fn drain(
        &mut self,
        publisher: &mut dyn HealthEventPublisher,
        mut on_delivered: impl FnMut(&HealthEvent),
    ) -> Drained {
        let mut delivered = 0;
        let mut refused = None;
        for event in &self.pending {
            match publisher.publish(event) {
                Ok(()) => {
                    delivered += 1;
                    on_delivered(event);
                }
                Err(err) => {
                    refused = Some(err);
                    break;
                }
            }
        }
        self.pending.drain(..delivered);
        Drained { delivered, refused }
    }
}

#[cfg(test)]
mod tests {
    use healthprobe_core::{EventDetails, Timestamp};

    use super::*;
    use crate::adapters::MemoryPublisher;

    fn event(game_id: &str, second: i64) -> HealthEvent {
        HealthEvent {
            game_id: game_id.into(),
            container_id: "c".into(),
            occurred_at: Timestamp::from_second(second).expect("valid"),
            details: EventDetails::ProbeRecovered {
                prior_failure_count: 1,
            },
        }
    }

    #[test]
    fn d4_a_refusal_keeps_that_event_and_every_later_one_in_order() {
        let publisher = MemoryPublisher::new();
        let mut outbox = Outbox::new();
        for (game, second) in [("g1", 1), ("g2", 2), ("g1", 3)] {
            outbox.push(event(game, second));
        }
        publisher.fail_every(2);
        let mut seen = Vec::new();
        let drained = outbox.drain(&mut publisher.clone(), |e| seen.push(e.occurred_at));
        assert_eq!(drained.delivered, 1);
        assert!(drained.refused.is_some());
        assert_eq!(outbox.pending(), &[event("g2", 2), event("g1", 3)]);
        let drained = outbox.drain(&mut publisher.clone(), |e| seen.push(e.occurred_at));
        assert_eq!((drained.delivered, outbox.len()), (1, 1));
        let drained = outbox.drain(&mut publisher.clone(), |e| seen.push(e.occurred_at));
        assert_eq!(drained.delivered, 1);
        assert!(drained.refused.is_none());
        assert!(outbox.is_empty());
        assert_eq!(
            publisher.events(),
            [event("g1", 1), event("g2", 2), event("g1", 3)]
        );
        assert_eq!(seen.len(), 3);
        assert_eq!(publisher.attempts(), 5);
    }

    #[test]
    fn d4_draining_an_empty_outbox_calls_no_one() {
        let publisher = MemoryPublisher::new();
        let drained = Outbox::new().drain(&mut publisher.clone(), |_| {});
        assert_eq!(drained.delivered, 0);
        assert_eq!(publisher.attempts(), 0);
    }
}

//! The event stream the desktop app subscribes to: runs started, their output, runs finished,
//! mode changes and log lines. Slow subscribers miss events (they are told how many) rather
//! than slowing down runs. The events themselves are the protocol's.

use tokio::sync::broadcast;

pub use stigmer_protocol::events::Event;

/// How many events a subscriber may fall behind before it starts missing some.
pub const CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// Whether anyone listens (so output need not be encoded for nobody).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

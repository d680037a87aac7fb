//! Events the application must not lose to a full event queue.
//!
//! The queue is bounded (`event_capacity`); an event it cannot take is *owed* instead of dropped: the connection
//! records which (a flag per kind, or state that shows it: data to read, room to write) and goes on the owed list,
//! and once the application has drained the queue the owed events are queued in the order it must see them
//! (`Accepted`/`Connected` first, `Closed` last). While a connection owes anything, its new events are owed too,
//! so they cannot overtake the ones before them (a `Readable` ahead of its `Accepted` names a handle the
//! application does not know, and would never come again).

use super::Engine;
use super::event::{CloseReason, ConnHandle, Event, EventKind, ListenerHandle};
use super::tcb::Flags;

/// How a raised owed event is recorded as delivered.
#[derive(Debug, Clone, Copy)]
enum Delivered {
    /// Clear this `OWED_*` (or request) flag.
    Clear(Flags),
    /// Set this flag (`READABLE_SENT`).
    Set(Flags),
}

impl Engine {
    /// Queues an event for connection `index` (its current generation). `false`, counted, when the queue is full
    /// or the connection already owes events: the caller then owes it ([`Engine::owe_event`]).
    pub(super) fn push_event(&mut self, index: u32, kind: EventKind) -> bool {
        let tcb = &self.conns[index as usize];
        if self.events.len() >= self.event_capacity || tcb.flags.contains(Flags::EVENT_OWED) {
            self.counters.events_deferred += 1;
            return false;
        }
        let generation = tcb.generation;
        self.events.push_back(Event {
            conn: ConnHandle { index, generation },
            kind,
        });
        true
    }

    /// Records that connection `index` owes `owed` (an `OWED_*` flag, or none for a `Readable` or `Writable` its
    /// state shows) and puts it on the owed list.
    pub(super) fn owe_event(&mut self, index: u32, owed: Flags) {
        let tcb = &mut self.conns[index as usize];
        tcb.flags.insert(owed);
        if tcb.flags.contains(Flags::EVENT_OWED) {
            return;
        }
        if self.owed.len() < self.owed.capacity() {
            tcb.flags.insert(Flags::EVENT_OWED);
            self.owed.push((index, tcb.generation));
        } else {
            self.counters.events_lost += 1;
        }
    }

    /// A `Closed` event the queue refused: owed on the connection, or, if the application has released the
    /// handle (its slot is freed now), kept as a whole event.
    pub(super) fn owe_closed(&mut self, index: u32, reason: CloseReason, released: bool) {
        if !released {
            self.conns[index as usize].owed_close = reason;
            self.owe_event(index, Flags::OWED_CLOSED);
            return;
        }
        let event = Event {
            conn: ConnHandle {
                index,
                generation: self.conns[index as usize].generation,
            },
            kind: EventKind::Closed { reason },
        };
        if self.owed_closed.len() < self.owed_closed.capacity() {
            self.owed_closed.push(event);
        } else {
            self.counters.events_lost += 1;
        }
    }

    /// What connection `index` owes, in the order the application must see it, each with how it is recorded
    /// as delivered.
    fn owed_events(&self, index: u32) -> [Option<(EventKind, Delivered)>; 6] {
        let tcb = &self.conns[index as usize];
        let owes = |flag| tcb.flags.contains(flag);
        let accepted = owes(Flags::OWED_ACCEPTED).then(|| {
            let port = tcb.key.local_port;
            let index = self
                .listeners
                .iter()
                .position(|l| l.port == port)
                .map_or(u32::MAX, |i| i as u32);
            let listener = ListenerHandle { index, port };
            (EventKind::Accepted { listener }, Delivered::Clear(Flags::OWED_ACCEPTED))
        });
        let connected =
            owes(Flags::OWED_CONNECTED).then_some((EventKind::Connected, Delivered::Clear(Flags::OWED_CONNECTED)));
        let readable = (!tcb.rx.is_empty() && !owes(Flags::READABLE_SENT))
            .then_some((EventKind::Readable, Delivered::Set(Flags::READABLE_SENT)));
        let writable = (owes(Flags::WANT_WRITABLE) && tcb.tx.free() > 0 && tcb.state.can_send())
            .then_some((EventKind::Writable, Delivered::Clear(Flags::WANT_WRITABLE)));
        let peer_closed =
            owes(Flags::OWED_PEER_CLOSED).then_some((EventKind::PeerClosed, Delivered::Clear(Flags::OWED_PEER_CLOSED)));
        let closed = owes(Flags::OWED_CLOSED).then_some((
            EventKind::Closed { reason: tcb.owed_close },
            Delivered::Clear(Flags::OWED_CLOSED),
        ));
        [accepted, connected, readable, writable, peer_closed, closed]
    }

    /// Queues the owed events while there is room; the rest stay owed.
    #[cold]
    #[inline(never)]
    pub(super) fn raise_owed(&mut self) {
        let room = self
            .event_capacity
            .saturating_sub(self.events.len())
            .min(self.owed_closed.len());
        self.events.extend(self.owed_closed.drain(..room));
        let mut owed = core::mem::take(&mut self.owed);
        let mut kept = 0;
        for k in 0..owed.len() {
            let (index, generation) = owed[k];
            let tcb = &mut self.conns[index as usize];
            // Freed since, or released by the application: nobody to tell.
            if tcb.generation != generation || tcb.flags.contains(Flags::APP_CLOSED) {
                continue;
            }
            tcb.flags.remove(Flags::EVENT_OWED);
            let mut still = false;
            for (kind, delivered) in self.owed_events(index).into_iter().flatten() {
                if !self.push_event(index, kind) {
                    still = true;
                    break; // the queue is full: the rest wait, in order
                }
                let flags = &mut self.conns[index as usize].flags;
                match delivered {
                    Delivered::Clear(flag) => flags.remove(flag),
                    Delivered::Set(flag) => flags.insert(flag),
                }
            }
            if still {
                self.conns[index as usize].flags.insert(Flags::EVENT_OWED);
                owed[kept] = owed[k];
                kept += 1;
            }
        }
        owed.truncate(kept);
        self.owed = owed;
    }
}

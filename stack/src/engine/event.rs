//! What the application holds (handles) and what it is told (events, errors).

use crate::wire::Port;

/// A connection, as the application names it: a slot index and that slot's generation, so a handle kept past
/// its connection's end is refused (`Error::InvalidHandle`) instead of reaching whoever holds the slot next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnHandle {
    /// The slot index, dense in `0..max_connections`: applications can index their own per-connection state
    /// by it (and check the full handle).
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// A listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerHandle {
    pub(crate) index: u32,
    pub(crate) port: Port,
}

impl ListenerHandle {
    /// The port listened on.
    pub fn port(self) -> Port {
        self.port
    }
}

/// Something the application should react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The connection concerned.
    pub conn: ConnHandle,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An active open completed: the connection is ESTABLISHED.
    Connected,
    /// A passive open completed on `listener`: a new connection, ESTABLISHED.
    Accepted {
        /// The listener the SYN arrived on.
        listener: ListenerHandle,
    },
    /// New in-order data can be read with `recv`.
    Readable,
    /// Send-buffer space freed after a `send` that could not take everything.
    Writable,
    /// The peer sent FIN: no more data will arrive (reads drain what is buffered, then return 0).
    PeerClosed,
    /// The connection is over. The handle stays valid for `recv` of leftover data until the application calls
    /// `close` (or at once, if it already had).
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides sent FIN and had it acknowledged.
    Normal,
    /// The peer refused the connection (RST in reply to our SYN).
    Refused,
    /// The peer reset the connection.
    Reset,
    /// The application aborted it.
    Aborted,
    /// Retransmissions ran out (RFC 9293 §3.8.3 R2).
    TimedOut,
    /// Keep-alive probes went unanswered.
    KeepaliveTimeout,
    /// The peer's MAC address could not be resolved.
    Unreachable,
    /// Data arrived after the application closed, so the connection was reset (RFC 9293 SHLD-3 spirit).
    DataAfterClose,
}

/// Why an application call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The handle names no live connection (closed, or from another generation).
    #[error("invalid or stale connection handle")]
    InvalidHandle,
    /// The connection table is full.
    #[error("connection table full")]
    TableFull,
    /// The listener table is full.
    #[error("listener table full")]
    ListenerTableFull,
    /// Something already listens on that port.
    #[error("port already in use")]
    PortInUse,
    /// No free local port for that destination (every port busy or in TIME-WAIT).
    #[error("no free local port")]
    NoFreePort,
    /// The local address is not one of the engine's.
    #[error("local address is not one of the engine's")]
    NotLocalAddress,
    /// The remote address or port is unusable (zero, broadcast, our own address).
    #[error("invalid remote address")]
    InvalidRemote,
    /// The connection cannot send in its state (not yet established, or already shut down for writing).
    #[error("connection not open for sending")]
    NotWritable,
    /// The connection cannot take more data now: wait for `Writable`.
    #[error("send buffer full")]
    WouldBlock,
    /// No buffer is free in the shared pool.
    #[error("buffer pool exhausted")]
    NoBuffer,
}

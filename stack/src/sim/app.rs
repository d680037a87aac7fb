//! The two applications the simulator runs on top of the engines.
//!
//! The client opens connections (at most `concurrency` at a time) and sends one request on each: a 4-byte
//! big-endian length, then the connection's number (4 bytes) and close mode (1 byte), then random bytes. The
//! server reads the whole request (the length prefix says how much), answers with a length-prefixed random
//! response, and the two sides close as the mode says. Both sides keep every byte they sent and received, which
//! the simulator compares at the end.

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::HashMap;

use super::link::{Link, Wake};
use super::rng::Rng;
use super::{CloseMode, Side, SimConfig, SimError};
use crate::engine::{CloseReason, ConnHandle, Engine, Error, Event, EventKind, State};
use crate::time::Instant;

/// Bytes in the request header: length (4), connection number (4), close mode (1).
pub(crate) const REQUEST_HEADER: usize = 9;
/// Bytes in the response header: length (4).
pub(crate) const RESPONSE_HEADER: usize = 4;
/// Most bytes read by one `recv` call (each call reads a random amount up to this).
const READ_CHUNK: usize = 8192;
/// How long the client waits before retrying a `connect` the engine refused for lack of room.
const CONNECT_RETRY: core::time::Duration = core::time::Duration::from_millis(10);

/// What one application call needs: its engine, the clock, the event queue (for wake-ups), the configuration.
pub(crate) struct Ctx<'a> {
    pub engine: &'a mut Engine,
    pub now: Instant,
    pub link: &'a mut Link,
    pub config: &'a SimConfig,
}

/// One side of one connection, as its application saw it.
#[derive(Debug, Clone)]
pub(crate) struct Half {
    pub handle: ConnHandle,
    /// Everything this side will send; `sent` bytes of it were taken by `send`.
    pub outgoing: Vec<u8>,
    pub sent: usize,
    pub received: Vec<u8>,
    /// The peer's FIN arrived (`PeerClosed`).
    pub peer_fin: bool,
    /// `recv` returned end of stream.
    pub eof: bool,
    /// `shutdown` (or `close`) was called.
    pub shut: bool,
    /// `close` was called: the handle is released.
    pub released: bool,
    /// The `Closed` event, with its reason.
    pub closed: Option<CloseReason>,
    /// Both released and closed: nothing more will happen.
    pub done: bool,
    /// The connection was seen in CLOSING (a true simultaneous close).
    pub closing_seen: bool,
    /// This side reads lazily (see `SimConfig::slow_reader`).
    pub slow: bool,
    /// A slow reader's wake-up is pending.
    pub read_scheduled: bool,
    /// A slow reader's wake-up is running: read now.
    pub read_now: bool,
}

impl Half {
    fn new(handle: ConnHandle) -> Half {
        Half {
            handle,
            outgoing: Vec::new(),
            sent: 0,
            received: Vec::new(),
            peer_fin: false,
            eof: false,
            shut: false,
            released: false,
            closed: None,
            done: false,
            closing_seen: false,
            slow: false,
            read_scheduled: false,
            read_now: false,
        }
    }

    /// A side that never existed (the server never read the request's header): sent and received nothing.
    pub fn empty() -> Half {
        Half::new(ConnHandle {
            index: u32::MAX,
            generation: 0,
        })
    }

    /// Whether the connection ended other than normally.
    pub fn aborted(&self) -> Option<CloseReason> {
        self.closed.filter(|&r| r != CloseReason::Normal)
    }

    /// Sends as much of `outgoing` as the engine takes now.
    fn send_some(&mut self, side: Side, conn: u32, engine: &mut Engine) -> Result<(), SimError> {
        while self.sent < self.outgoing.len() && !self.shut && self.closed.is_none() {
            match engine.send(self.handle, &self.outgoing[self.sent..]) {
                Ok(0) => break,
                Ok(n) => self.sent += n,
                Err(Error::WouldBlock) => break,
                Err(error) => return Err(app_error(side, conn, "send", error)),
            }
        }
        Ok(())
    }

    /// Reads everything buffered now, or for a slow reader, makes sure a wake-up will.
    fn read(&mut self, side: Side, conn: u32, index: usize, cx: &mut Ctx<'_>, rng: &mut Rng) -> Result<(), SimError> {
        if self.slow && !self.read_now && self.closed.is_none() {
            if !self.read_scheduled {
                self.read_scheduled = true;
                let delay = rng.duration(cx.config.read_delay);
                cx.link.wake(cx.now + delay, side, Wake::Read(index));
            }
            return Ok(());
        }
        self.read_all(side, conn, cx.engine, rng)
    }

    /// Reads everything buffered, in random-sized pieces.
    fn read_all(&mut self, side: Side, conn: u32, engine: &mut Engine, rng: &mut Rng) -> Result<(), SimError> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let want = rng.between(1, READ_CHUNK);
            match engine.recv(self.handle, &mut buf[..want]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(Error::WouldBlock) => return Ok(()),
                Err(error) => return Err(app_error(side, conn, "recv", error)),
            }
        }
    }

    fn shutdown(&mut self, side: Side, conn: u32, engine: &mut Engine) -> Result<(), SimError> {
        if !self.shut {
            self.shut = true;
            engine
                .shutdown(self.handle)
                .map_err(|e| app_error(side, conn, "shutdown", e))?;
        }
        Ok(())
    }

    fn close(&mut self, side: Side, conn: u32, engine: &mut Engine) -> Result<(), SimError> {
        if !self.released {
            self.released = true;
            self.shut = true;
            engine
                .close(self.handle)
                .map_err(|e| app_error(side, conn, "close", e))?;
        }
        Ok(())
    }

    /// Handles the common part of an event; returns false if the connection is already done.
    fn note(&mut self, engine: &Engine, kind: EventKind) -> bool {
        match kind {
            EventKind::PeerClosed => {
                self.peer_fin = true;
                if engine.state(self.handle) == Ok(State::Closing) {
                    self.closing_seen = true;
                }
            }
            EventKind::Closed { reason } => self.closed = Some(reason),
            _ => {}
        }
        !self.done
    }

    /// An abnormal end: read what is left, release the handle.
    fn finish_aborted(&mut self, side: Side, conn: u32, engine: &mut Engine, rng: &mut Rng) -> Result<(), SimError> {
        if !self.released {
            self.read_all(side, conn, engine, rng)?;
            self.close(side, conn, engine)?;
        }
        Ok(())
    }
}

fn app_error(side: Side, conn: u32, call: &'static str, error: Error) -> SimError {
    SimError::App {
        side,
        conn,
        call,
        error,
    }
}

fn mode_byte(mode: CloseMode) -> u8 {
    match mode {
        CloseMode::ClientFirst => 0,
        CloseMode::ServerFirst => 1,
        CloseMode::Simultaneous => 2,
        CloseMode::HalfClose => 3,
    }
}

fn mode_from_byte(byte: u8) -> Option<CloseMode> {
    match byte {
        0 => Some(CloseMode::ClientFirst),
        1 => Some(CloseMode::ServerFirst),
        2 => Some(CloseMode::Simultaneous),
        3 => Some(CloseMode::HalfClose),
        _ => None,
    }
}

/// A body size: mostly small, one time in four anywhere up to `max` (so some bodies span many segments and
/// exceed the send buffer while runs stay quick).
fn body_size(rng: &mut Rng, min: usize, max: usize) -> usize {
    if rng.chance(0.25) {
        rng.between(min, max)
    } else {
        rng.between(min, min.max(max / 8))
    }
}

fn be_u32(bytes: &[u8]) -> Option<usize> {
    let word: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word) as usize)
}

/// The client's side of one connection.
#[derive(Debug, Clone)]
pub(crate) struct ClientConn {
    pub half: Half,
    pub mode: CloseMode,
    /// The request was queued before `Connected` (while in SYN-SENT).
    pub eager: bool,
    pub connected: bool,
}

/// The client application.
pub(crate) struct ClientApp {
    rng: Rng,
    pub conns: Vec<ClientConn>,
    live: HashMap<ConnHandle, u32>,
    pub active: usize,
    open_scheduled: bool,
    remote: SocketAddrV4,
    local: SocketAddrV4,
    pub connect_retries: u64,
}

impl ClientApp {
    pub(crate) fn new(rng: Rng, local: Ipv4Addr, remote: SocketAddrV4) -> ClientApp {
        ClientApp {
            rng,
            conns: Vec::new(),
            live: HashMap::new(),
            active: 0,
            open_scheduled: false,
            remote,
            local: SocketAddrV4::new(local, 0),
            connect_retries: 0,
        }
    }

    /// Whether every connection has been opened and has ended.
    pub(crate) fn is_done(&self, total: usize) -> bool {
        self.conns.len() >= total && self.active == 0
    }

    /// Handles must not outlive their connection in the application either.
    pub(crate) fn live(&self) -> usize {
        self.live.len()
    }

    /// Opens connections up to the concurrency limit.
    pub(crate) fn open_more(&mut self, cx: &mut Ctx<'_>) -> Result<(), SimError> {
        let config = cx.config;
        while self.active < config.concurrency.max(1) && self.conns.len() < config.connections {
            let handle = match cx.engine.connect(cx.now, self.local, self.remote) {
                Ok(handle) => handle,
                Err(Error::TableFull | Error::NoFreePort) => {
                    self.connect_retries += 1;
                    self.schedule_open(cx, CONNECT_RETRY);
                    return Ok(());
                }
                Err(error) => return Err(app_error(Side::Client, self.conns.len() as u32, "connect", error)),
            };
            let id = self.conns.len() as u32;
            let modes = &config.close_modes;
            let mode = match modes.get(self.rng.below(modes.len() as u64) as usize) {
                Some(&mode) => mode,
                None => CloseMode::ClientFirst,
            };
            let size = body_size(&mut self.rng, config.min_request, config.max_request);
            let mut request = vec![0u8; REQUEST_HEADER + size];
            request[..4].copy_from_slice(&((REQUEST_HEADER - 4 + size) as u32).to_be_bytes());
            request[4..8].copy_from_slice(&id.to_be_bytes());
            request[8] = mode_byte(mode);
            self.rng.fill(&mut request[REQUEST_HEADER..]);
            let mut half = Half::new(handle);
            half.outgoing = request;
            half.slow = self.rng.chance(config.slow_reader);
            let eager = self.rng.chance(config.eager_send);
            self.conns.push(ClientConn {
                half,
                mode,
                eager,
                connected: false,
            });
            if config.trace {
                let port = cx.engine.flow(handle).map(|k| k.local_port.0).unwrap_or(0);
                eprintln!(
                    "{:?} Client opens conn {id} (slot {}, port {port}, {mode:?}, request {} bytes)",
                    cx.now,
                    handle.index(),
                    REQUEST_HEADER + size
                );
            }
            self.live.insert(handle, id);
            self.active += 1;
            if eager {
                self.pump(cx, id)?;
            }
            if !config.open_gap.is_zero() {
                let gap = self.rng.duration(config.open_gap);
                self.schedule_open(cx, gap);
                return Ok(());
            }
        }
        Ok(())
    }

    fn schedule_open(&mut self, cx: &mut Ctx<'_>, after: core::time::Duration) {
        if !self.open_scheduled {
            self.open_scheduled = true;
            cx.link.wake(cx.now + after, Side::Client, Wake::OpenNext);
        }
    }

    /// The `OpenNext` wake-up.
    pub(crate) fn on_wake(&mut self, cx: &mut Ctx<'_>) -> Result<(), SimError> {
        self.open_scheduled = false;
        self.open_more(cx)
    }

    /// A slow reader's `Read` wake-up.
    pub(crate) fn on_read_wake(&mut self, cx: &mut Ctx<'_>, id: usize) -> Result<(), SimError> {
        let Some(conn) = self.conns.get_mut(id) else {
            return Ok(());
        };
        conn.half.read_scheduled = false;
        conn.half.read_now = true;
        let result = self.pump(cx, id as u32);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.half.read_now = false;
        }
        result
    }

    pub(crate) fn on_event(&mut self, cx: &mut Ctx<'_>, event: Event) -> Result<(), SimError> {
        let Some(&id) = self.live.get(&event.conn) else {
            return Err(SimError::Protocol {
                side: Side::Client,
                what: "event for a connection the application does not know",
            });
        };
        let Some(conn) = self.conns.get_mut(id as usize) else {
            return Ok(());
        };
        if matches!(event.kind, EventKind::Accepted { .. }) {
            return Err(SimError::Protocol {
                side: Side::Client,
                what: "Accepted on an active open",
            });
        }
        if event.kind == EventKind::Connected {
            conn.connected = true;
        }
        if !conn.half.note(cx.engine, event.kind) {
            return Ok(());
        }
        self.pump(cx, id)
    }

    /// Moves one connection on as far as it can go now.
    fn pump(&mut self, cx: &mut Ctx<'_>, id: u32) -> Result<(), SimError> {
        let Some(conn) = self.conns.get_mut(id as usize) else {
            return Ok(());
        };
        let side = Side::Client;
        let half = &mut conn.half;
        if !half.released {
            if conn.connected || conn.eager {
                half.send_some(side, id, cx.engine)?;
            }
            half.read(side, id, id as usize, cx, &mut self.rng)?;
            let engine = &mut *cx.engine;
            let response_len = be_u32(&half.received).map(|n| n + RESPONSE_HEADER);
            if response_len.is_some_and(|n| half.received.len() > n) {
                return Err(SimError::Protocol {
                    side,
                    what: "more bytes than the response announced",
                });
            }
            if half.aborted().is_some() {
                half.finish_aborted(side, id, engine, &mut self.rng)?;
            } else {
                let request_done = half.sent == half.outgoing.len();
                let response_done = response_len == Some(half.received.len());
                if half.peer_fin && half.eof && !response_done {
                    return Err(SimError::Protocol {
                        side,
                        what: "end of stream before the whole response",
                    });
                }
                match conn.mode {
                    CloseMode::ClientFirst => {
                        if response_done && request_done {
                            half.close(side, id, engine)?;
                        }
                    }
                    CloseMode::ServerFirst => {
                        if half.eof {
                            half.close(side, id, engine)?;
                        }
                    }
                    CloseMode::Simultaneous => {
                        if response_done && request_done {
                            half.shutdown(side, id, engine)?;
                        }
                        if half.eof {
                            half.close(side, id, engine)?;
                        }
                    }
                    CloseMode::HalfClose => {
                        if request_done {
                            half.shutdown(side, id, engine)?;
                        }
                        if half.eof {
                            half.close(side, id, engine)?;
                        }
                    }
                }
            }
        }
        if half.released && half.closed.is_some() && !half.done {
            half.done = true;
            self.live.remove(&half.handle);
            self.active -= 1;
            self.open_more(cx)?;
        }
        Ok(())
    }

    /// Gives up on every connection still open (the simulation stalled with aborts allowed).
    pub(crate) fn abort_all(&mut self, engine: &mut Engine) {
        for conn in &mut self.conns {
            let half = &mut conn.half;
            if !half.done {
                if !half.released {
                    let _ = engine.abort(half.handle);
                }
                half.released = true;
                half.closed.get_or_insert(CloseReason::Aborted);
                half.done = true;
                self.active -= 1;
                // The handle stays in `live`: the engine's `Closed` event for it is still to come.
            }
        }
    }
}

/// The server's side of one connection.
#[derive(Debug, Clone)]
pub(crate) struct ServerConn {
    pub half: Half,
    /// From the request header, once read.
    pub id: Option<u32>,
    pub mode: Option<CloseMode>,
    /// In `ServerFirst` mode: `shutdown` then read to the end, instead of `close` at once.
    pub use_shutdown: bool,
    pub shutdown_scheduled: bool,
}

/// The server application.
pub(crate) struct ServerApp {
    rng: Rng,
    pub conns: Vec<ServerConn>,
    live: HashMap<ConnHandle, usize>,
    pub open: usize,
}

impl ServerApp {
    pub(crate) fn new(rng: Rng) -> ServerApp {
        ServerApp {
            rng,
            conns: Vec::new(),
            live: HashMap::new(),
            open: 0,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.open == 0
    }

    pub(crate) fn live(&self) -> usize {
        self.live.len()
    }

    pub(crate) fn on_event(&mut self, cx: &mut Ctx<'_>, event: Event) -> Result<(), SimError> {
        if let EventKind::Accepted { .. } = event.kind {
            if self.live.contains_key(&event.conn) {
                return Err(SimError::Protocol {
                    side: Side::Server,
                    what: "Accepted twice for one handle",
                });
            }
            let index = self.conns.len();
            let mut half = Half::new(event.conn);
            half.slow = self.rng.chance(cx.config.slow_reader);
            self.conns.push(ServerConn {
                half,
                id: None,
                mode: None,
                use_shutdown: self.rng.chance(cx.config.server_shutdown),
                shutdown_scheduled: false,
            });
            self.live.insert(event.conn, index);
            self.open += 1;
            return self.pump(cx, index);
        }
        let Some(&index) = self.live.get(&event.conn) else {
            return Err(SimError::Protocol {
                side: Side::Server,
                what: "event for a connection the application does not know",
            });
        };
        if event.kind == EventKind::Connected {
            return Err(SimError::Protocol {
                side: Side::Server,
                what: "Connected on a passive open",
            });
        }
        let Some(conn) = self.conns.get_mut(index) else {
            return Ok(());
        };
        if !conn.half.note(cx.engine, event.kind) {
            return Ok(());
        }
        self.pump(cx, index)
    }

    /// A slow reader's `Read` wake-up.
    pub(crate) fn on_read_wake(&mut self, cx: &mut Ctx<'_>, index: usize) -> Result<(), SimError> {
        let Some(conn) = self.conns.get_mut(index) else {
            return Ok(());
        };
        conn.half.read_scheduled = false;
        conn.half.read_now = true;
        let result = self.pump(cx, index);
        if let Some(conn) = self.conns.get_mut(index) {
            conn.half.read_now = false;
        }
        result
    }

    /// The `Shutdown` wake-up of a simultaneous close.
    pub(crate) fn on_wake(&mut self, cx: &mut Ctx<'_>, index: usize) -> Result<(), SimError> {
        let Some(conn) = self.conns.get_mut(index) else {
            return Ok(());
        };
        if conn.half.released || conn.half.closed.is_some() {
            return Ok(());
        }
        let id = conn.id.unwrap_or(u32::MAX);
        conn.half.shutdown(Side::Server, id, cx.engine)?;
        self.pump(cx, index)
    }

    fn pump(&mut self, cx: &mut Ctx<'_>, index: usize) -> Result<(), SimError> {
        let Some(conn) = self.conns.get_mut(index) else {
            return Ok(());
        };
        let side = Side::Server;
        let config = cx.config;
        let id = conn.id.unwrap_or(u32::MAX);
        let half = &mut conn.half;
        if !half.released {
            half.read(side, id, index, cx, &mut self.rng)?;
            let engine = &mut *cx.engine;
            if conn.id.is_none() && half.received.len() >= REQUEST_HEADER {
                conn.id = be_u32(&half.received[4..]).map(|n| n as u32);
                conn.mode = mode_from_byte(half.received[8]);
                if config.trace {
                    eprintln!("{:?} Server slot {} is conn {:?}", cx.now, half.handle.index(), conn.id);
                }
                if conn.mode.is_none() {
                    return Err(SimError::Protocol {
                        side,
                        what: "request header with an unknown close mode",
                    });
                }
            }
            let id = conn.id.unwrap_or(u32::MAX);
            let request_len = be_u32(&half.received).map(|n| n + 4);
            if request_len.is_some_and(|n| half.received.len() > n) {
                return Err(SimError::Protocol {
                    side,
                    what: "more bytes than the request announced",
                });
            }
            let request_done = conn.mode.is_some() && request_len == Some(half.received.len());
            if half.aborted().is_some() {
                half.finish_aborted(side, id, engine, &mut self.rng)?;
            } else {
                if half.peer_fin && half.eof && !request_done {
                    return Err(SimError::Protocol {
                        side,
                        what: "end of stream before the whole request",
                    });
                }
                let respond = request_done || (config.full_duplex && conn.mode.is_some());
                if respond && half.outgoing.is_empty() {
                    let size = body_size(&mut self.rng, config.min_response, config.max_response);
                    let mut response = vec![0u8; RESPONSE_HEADER + size];
                    response[..4].copy_from_slice(&(size as u32).to_be_bytes());
                    self.rng.fill(&mut response[RESPONSE_HEADER..]);
                    half.outgoing = response;
                }
                half.send_some(side, id, engine)?;
                let response_done = !half.outgoing.is_empty() && half.sent == half.outgoing.len();
                if response_done && request_done {
                    match conn.mode {
                        Some(CloseMode::ClientFirst) if half.eof => half.close(side, id, engine)?,
                        Some(CloseMode::ClientFirst) => {}
                        Some(CloseMode::ServerFirst) => {
                            if conn.use_shutdown {
                                half.shutdown(side, id, engine)?;
                                if half.eof {
                                    half.close(side, id, engine)?;
                                }
                            } else {
                                half.close(side, id, engine)?;
                            }
                        }
                        Some(CloseMode::Simultaneous) => {
                            if !conn.shutdown_scheduled {
                                conn.shutdown_scheduled = true;
                                // About when the client, which shuts down on the last response byte, does.
                                cx.link.wake(cx.now + config.delay, Side::Server, Wake::Shutdown(index));
                            }
                            if half.shut && half.eof {
                                half.close(side, id, engine)?;
                            }
                        }
                        Some(CloseMode::HalfClose) => half.close(side, id, engine)?,
                        None => {}
                    }
                }
            }
        }
        if half.released && half.closed.is_some() && !half.done {
            half.done = true;
            self.live.remove(&half.handle);
            self.open -= 1;
        }
        Ok(())
    }

    /// Gives up on every connection still open (the simulation stalled with aborts allowed).
    pub(crate) fn abort_all(&mut self, engine: &mut Engine) {
        for conn in &mut self.conns {
            let half = &mut conn.half;
            if !half.done {
                if !half.released {
                    let _ = engine.abort(half.handle);
                }
                half.released = true;
                half.closed.get_or_insert(CloseReason::Aborted);
                half.done = true;
                self.open -= 1;
            }
        }
    }
}

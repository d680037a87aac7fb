//! Send and receive byte buffers drawn from a preallocated pool.
//!
//! The engine must not touch the heap per connection or per packet, and an idle connection should cost no buffer
//! memory at all. So every byte buffer is a fixed-size [`Chunk`] allocated once, at start-up, by a [`BufferPool`];
//! a connection's [`RingBuffer`] borrows a chunk on its first write and hands it back as soon as it is empty again.
//! A connection whose request and response each fit in one segment therefore holds a chunk only for the moment
//! between receiving (or queueing) the data and handing it on (or having it acknowledged).
//!
//! Running out of chunks is an expected overload condition, not a bug: writes then accept 0 bytes and the caller
//! counts the event and applies backpressure (a zero window, a refused write) instead of wedging.

use core::fmt;

/// One fixed-size block of buffer memory, owned by exactly one pool or ring at a time.
///
/// Deliberately not `Clone`: a chunk is a unit of the pool's budget, so copying one would break the accounting.
pub struct Chunk(Box<[u8]>);

impl Chunk {
    /// Size of the chunk in bytes (the pool's chunk size).
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the chunk has no bytes at all (only for a pool of zero-sized chunks).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The chunk's bytes, for callers that manage a chunk themselves.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The chunk's bytes, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chunk({} bytes)", self.0.len())
    }
}

/// A fixed set of equal-sized chunks, all allocated up front.
///
/// [`take`](Self::take) and [`give`](Self::give) only move boxes in and out of a free list whose capacity is fixed
/// at construction, so neither ever allocates or frees.
pub struct BufferPool {
    free: Vec<Chunk>,
    chunk_size: usize,
}

impl BufferPool {
    /// Faults every free chunk's pages in now (see [`crate::mem::populate`]).
    pub fn populate(&self) -> bool {
        self.free.iter().fold(true, |ok, c| crate::mem::populate(&c.0) & ok)
    }

    /// A pool of `count` chunks of `chunk_size` bytes each, all allocated now.
    ///
    /// # Panics
    /// If `chunk_size` exceeds `u32::MAX` (ring buffers keep 32-bit offsets to stay small at a million
    /// connections; a TCP window cannot exceed 2^30 bytes anyway).
    pub fn new(count: usize, chunk_size: usize) -> BufferPool {
        assert!(u32::try_from(chunk_size).is_ok(), "chunk size must fit in u32");
        let mut free = Vec::with_capacity(count);
        free.extend((0..count).map(|_| Chunk(vec![0u8; chunk_size].into_boxed_slice())));
        BufferPool { free, chunk_size }
    }

    /// A free chunk, or `None` when all are in use (overload: the caller must back off, not retry at once).
    #[inline]
    pub fn take(&mut self) -> Option<Chunk> {
        self.free.pop()
    }

    /// Returns a chunk to the pool.
    ///
    /// A chunk of the wrong size, or one that would grow the free list past its capacity, can only come from
    /// another pool; it is dropped (a caller bug, flagged by a debug assertion) rather than allowed to allocate.
    #[inline]
    pub fn give(&mut self, chunk: Chunk) {
        let fits = chunk.len() == self.chunk_size && self.free.len() < self.free.capacity();
        debug_assert!(fits, "chunk given to a pool it does not belong to");
        if fits {
            self.free.push(chunk);
        }
    }

    /// Chunks currently free.
    #[inline]
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Chunks the pool was built with (free or not).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.free.capacity()
    }

    /// Size of every chunk, in bytes.
    #[inline]
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("available", &self.available())
            .field("capacity", &self.capacity())
            .field("chunk_size", &self.chunk_size)
            .finish()
    }
}

/// A byte ring over a chunk borrowed lazily from a [`BufferPool`].
///
/// Holds no chunk while empty: the first write takes one, and the operation that empties the ring gives it back
/// (unless out-of-order bytes placed with [`write_at`](Self::write_at) are still waiting beyond the end, see
/// below). Every method that may take or give a chunk borrows the pool; the ring never allocates.
///
/// Out-of-order data: a receive ring accepts bytes beyond its current end with `write_at`, at an offset counted
/// from the end of the in-order data (that is, from RCV.NXT). They are not part of [`len`](Self::len) until
/// [`commit`](Self::commit) extends the data over them, once the hole before them is filled. The ring remembers
/// how far such bytes reach (`pending`), keeps its chunk while any are pending, and lets in-order writes
/// ([`enqueue_slice`](Self::enqueue_slice)) and `commit` consume that reach. Which pending bytes are valid is the
/// [`Assembler`](crate::assembler::Assembler)'s business, not the ring's.
///
/// Dropping a ring that still holds a chunk loses the chunk from the pool; call [`release`](Self::release) first.
/// 32-bit offsets keep a ring at 32 bytes.
pub struct RingBuffer {
    chunk: Option<Chunk>,
    /// Index of the first data byte in the chunk.
    head: u32,
    /// Bytes of in-order data.
    len: u32,
    /// Bytes beyond the end of data that `write_at` may have written (0 when none).
    pending: u32,
    /// The pool's chunk size, so the window is known before any chunk is held.
    cap: u32,
}

impl RingBuffer {
    /// An empty ring sized for `pool`'s chunks; it holds no chunk yet.
    pub fn new(pool: &BufferPool) -> RingBuffer {
        RingBuffer {
            chunk: None,
            head: 0,
            len: 0,
            pending: 0,
            cap: pool.chunk_size as u32,
        }
    }

    /// Bytes of in-order data held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no in-order data is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most the ring can hold: the pool's chunk size, whether or not a chunk is held right now.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Room left after the in-order data: the receive window to advertise, or how much more the sender may queue.
    #[inline]
    pub fn free(&self) -> usize {
        (self.cap - self.len) as usize
    }

    /// Same as [`free`](Self::free), named for the receive side.
    #[inline]
    pub fn window(&self) -> usize {
        self.free()
    }

    /// Whether a chunk is held right now (for accounting and invariants: an idle ring should hold none).
    #[inline]
    pub fn has_chunk(&self) -> bool {
        self.chunk.is_some()
    }

    /// How far beyond the end of data out-of-order bytes may have been written (0 when none are pending).
    #[inline]
    pub fn pending(&self) -> usize {
        self.pending as usize
    }

    /// Takes a chunk if none is held; false when the pool is exhausted.
    fn ensure_chunk(&mut self, pool: &mut BufferPool) -> bool {
        if self.chunk.is_none() {
            self.chunk = pool.take();
            self.head = 0;
        }
        self.chunk.is_some()
    }

    /// Gives the chunk back once nothing, in order or pending, needs it.
    fn maybe_give_back(&mut self, pool: &mut BufferPool) {
        if self.len == 0 && self.pending == 0 {
            if let Some(chunk) = self.chunk.take() {
                pool.give(chunk);
            }
            self.head = 0;
        }
    }

    /// The chunk index of the byte `offset` bytes after the head, for `offset <= cap`.
    ///
    /// The head is always below `cap`, so one conditional subtraction wraps: no division per copy (the engine
    /// copies every segment's payload in and out through here).
    #[inline(always)]
    fn index_of(&self, offset: usize) -> usize {
        let pos = self.head as usize + offset;
        let cap = self.cap as usize;
        if pos >= cap { pos - cap } else { pos }
    }

    /// Copies `data` into the chunk starting `offset` bytes after the head, wrapping around the end.
    /// The caller guarantees `offset + data.len() <= cap` and that a chunk is held.
    fn copy_in(&mut self, offset: u32, data: &[u8]) {
        let cap = self.cap as usize;
        let start = self.index_of(offset as usize);
        let Some(chunk) = self.chunk.as_mut() else { return };
        let buf = chunk.as_mut_slice();
        let first = data.len().min(cap.saturating_sub(start));
        let (a, b) = data.split_at(first);
        buf[start..start + first].copy_from_slice(a);
        // Most copies do not wrap: no second (empty) copy for them.
        if !b.is_empty() {
            buf[..b.len()].copy_from_slice(b);
        }
    }

    /// Appends as much of `data` as fits and returns how many bytes were accepted.
    ///
    /// Returns 0 when the ring is full, or when it holds no chunk and the pool has none to give: the caller can
    /// tell the two apart with [`has_chunk`](Self::has_chunk) and should count pool exhaustion.
    /// Overwrites (and so consumes) the first bytes of any pending out-of-order region: on the receive side
    /// those are the same sequence numbers.
    pub fn enqueue_slice(&mut self, pool: &mut BufferPool, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 || !self.ensure_chunk(pool) {
            return 0;
        }
        self.copy_in(self.len, &data[..n]);
        let n32 = n as u32;
        self.len += n32;
        self.pending = self.pending.saturating_sub(n32);
        n
    }

    /// Places `data` at `offset` bytes beyond the end of the in-order data, without making it part of the data.
    ///
    /// Returns the number of bytes placed: a prefix of `data` clipped to the free space (0 if `offset` is at or
    /// past the end of the window, or the pool is exhausted). Make them data later with [`commit`](Self::commit).
    pub fn write_at(&mut self, pool: &mut BufferPool, offset: usize, data: &[u8]) -> usize {
        let free = self.free();
        if offset >= free {
            return 0;
        }
        let n = data.len().min(free - offset);
        if n == 0 || !self.ensure_chunk(pool) {
            return 0;
        }
        // offset < free <= cap fits in u32.
        let offset = offset as u32;
        self.copy_in(self.len + offset, &data[..n]);
        self.pending = self.pending.max(offset + n as u32);
        n
    }

    /// Extends the in-order data over `n` bytes previously placed right after it with [`write_at`](Self::write_at)
    /// (typically the count the assembler's `remove_front` reports). Returns the bytes committed: `n` clipped to
    /// [`pending`](Self::pending), so nothing past the furthest placed byte is ever exposed. Committing over a
    /// gap inside the pending region would expose stale contents; the assembler is what prevents that.
    pub fn commit(&mut self, n: usize) -> usize {
        // pending <= free always holds, and pending is 0 when no chunk is held.
        let n = n.min(self.pending as usize) as u32;
        self.len += n;
        self.pending = self.pending.saturating_sub(n);
        n as usize
    }

    /// The bytes in `offset..offset + len` of the data, clipped to what is held, as the two contiguous parts of
    /// the ring (the second is empty unless the range wraps). Used to copy unacknowledged data into a segment
    /// without removing it.
    pub fn peek(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let Some(chunk) = self.chunk.as_ref() else {
            return (&[], &[]);
        };
        let held = self.len as usize;
        if offset >= held {
            return (&[], &[]);
        }
        let len = len.min(held - offset);
        let cap = self.cap as usize;
        let start = self.index_of(offset);
        let buf = chunk.as_slice();
        let first = len.min(cap.saturating_sub(start));
        (&buf[start..start + first], &buf[..len - first])
    }

    /// Drops up to `n` bytes from the front (data the peer acknowledged) and returns how many were dropped; gives
    /// the chunk back if that empties the ring.
    pub fn discard(&mut self, pool: &mut BufferPool, n: usize) -> usize {
        let n = n.min(self.len as usize) as u32;
        if n > 0 {
            // n <= len <= cap, so the new head is below cap.
            self.head = self.index_of(n as usize) as u32;
            self.len -= n;
        }
        self.maybe_give_back(pool);
        n as usize
    }

    /// Moves up to `out.len()` bytes from the front into `out` and returns how many; gives the chunk back if that
    /// empties the ring.
    #[inline]
    pub fn dequeue_slice(&mut self, pool: &mut BufferPool, out: &mut [u8]) -> usize {
        // The read that finds the ring empty and chunkless (an application reads until it would block) is
        // answered inline: there is nothing to copy or give back, and a chunkless ring's head is already 0.
        if self.len == 0 && self.chunk.is_none() {
            return 0;
        }
        self.dequeue_held(pool, out)
    }

    /// [`RingBuffer::dequeue_slice`] for a ring that holds data or a chunk.
    fn dequeue_held(&mut self, pool: &mut BufferPool, out: &mut [u8]) -> usize {
        if self.len == 0 {
            // What `discard(pool, 0)` would do, without the empty copies: the read that finds nothing is common
            // (an application reads until it would block).
            self.maybe_give_back(pool);
            return 0;
        }
        let (a, b) = self.peek(0, out.len());
        let (la, lb) = (a.len(), b.len());
        out[..la].copy_from_slice(a);
        if lb > 0 {
            out[la..la + lb].copy_from_slice(b);
        }
        self.discard(pool, la + lb)
    }

    /// Empties the ring, drops any pending out-of-order bytes and returns the chunk to the pool (on abort or
    /// close, and before dropping the ring).
    pub fn release(&mut self, pool: &mut BufferPool) {
        self.len = 0;
        self.pending = 0;
        self.maybe_give_back(pool);
    }
}

impl fmt::Debug for RingBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuffer")
            .field("len", &self.len)
            .field("pending", &self.pending)
            .field("capacity", &self.cap)
            .field("has_chunk", &self.chunk.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn contents(ring: &RingBuffer) -> Vec<u8> {
        let (a, b) = ring.peek(0, ring.len());
        [a, b].concat()
    }

    #[test]
    fn pool_new_preallocates_and_take_give_round_trip() {
        let mut pool = BufferPool::new(3, 64);
        assert_eq!((pool.available(), pool.capacity(), pool.chunk_size()), (3, 3, 64));
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        let c = pool.take().unwrap();
        assert_eq!(a.len(), 64);
        assert!(pool.take().is_none());
        assert_eq!(pool.available(), 0);
        pool.give(a);
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.available(), 3);
        assert_eq!(pool.capacity(), 3);
    }

    #[test]
    fn ring_first_write_takes_chunk_and_empty_gives_it_back() {
        let mut pool = BufferPool::new(1, 16);
        let mut ring = RingBuffer::new(&pool);
        assert!(!ring.has_chunk());
        assert_eq!(ring.capacity(), 16);
        assert_eq!(ring.window(), 16);
        assert_eq!(ring.enqueue_slice(&mut pool, &[]), 0);
        assert!(!ring.has_chunk(), "an empty write must not take a chunk");
        assert_eq!(ring.enqueue_slice(&mut pool, b"hello"), 5);
        assert!(ring.has_chunk());
        assert_eq!(pool.available(), 0);
        let mut out = [0u8; 3];
        assert_eq!(ring.dequeue_slice(&mut pool, &mut out), 3);
        assert_eq!(&out, b"hel");
        assert!(ring.has_chunk());
        assert_eq!(ring.discard(&mut pool, 10), 2);
        assert!(!ring.has_chunk());
        assert_eq!(pool.available(), 1);
    }

    #[test]
    fn ring_wraps_around_and_peek_spans_the_wrap() {
        let mut pool = BufferPool::new(1, 8);
        let mut ring = RingBuffer::new(&pool);
        assert_eq!(ring.enqueue_slice(&mut pool, b"abcdef"), 6);
        assert_eq!(ring.discard(&mut pool, 5), 5);
        // head is at 5; "f" then "ghijklm" wraps around the end of the chunk.
        assert_eq!(ring.enqueue_slice(&mut pool, b"ghijklmXYZ"), 7);
        assert_eq!(ring.free(), 0);
        assert_eq!(ring.len(), 8);
        let (a, b) = ring.peek(0, 8);
        assert_eq!((a, b), (&b"fgh"[..], &b"ijklm"[..]));
        let (a, b) = ring.peek(2, 3);
        assert_eq!((a, b), (&b"h"[..], &b"ij"[..]));
        let (a, b) = ring.peek(4, 100);
        assert_eq!((a, b), (&b"jklm"[..], &b""[..]));
        assert_eq!(ring.peek(8, 1), (&b""[..], &b""[..]));
        assert_eq!(contents(&ring), b"fghijklm");
        let mut out = [0u8; 8];
        assert_eq!(ring.dequeue_slice(&mut pool, &mut out), 8);
        assert_eq!(&out, b"fghijklm");
        assert_eq!(pool.available(), 1);
    }

    #[test]
    fn ring_pool_exhausted_enqueue_returns_zero_without_panic() {
        let mut pool = BufferPool::new(1, 8);
        let mut first = RingBuffer::new(&pool);
        let mut second = RingBuffer::new(&pool);
        assert_eq!(first.enqueue_slice(&mut pool, b"x"), 1);
        assert_eq!(second.enqueue_slice(&mut pool, b"y"), 0);
        assert_eq!(second.write_at(&mut pool, 2, b"z"), 0);
        assert_eq!(second.commit(1), 0);
        assert!(!second.has_chunk());
        assert_eq!(second.free(), 8, "the window is still the chunk size");
        let mut out = [0u8; 4];
        assert_eq!(second.dequeue_slice(&mut pool, &mut out), 0);
        assert_eq!(second.discard(&mut pool, 4), 0);
        first.release(&mut pool);
        assert_eq!(second.enqueue_slice(&mut pool, b"y"), 1);
        assert_eq!(contents(&second), b"y");
    }

    #[test]
    fn ring_zero_chunk_pool_accepts_nothing() {
        let mut pool = BufferPool::new(0, 8);
        let mut ring = RingBuffer::new(&pool);
        assert_eq!(ring.enqueue_slice(&mut pool, b"abc"), 0);
        assert!(!ring.has_chunk());
    }

    #[test]
    fn ring_write_at_then_commit_fills_hole_in_order() {
        let mut pool = BufferPool::new(1, 16);
        let mut ring = RingBuffer::new(&pool);
        // Segment 2 ("world", at offset 5) arrives before segment 1 ("hello").
        assert_eq!(ring.write_at(&mut pool, 5, b"world"), 5);
        assert!(ring.has_chunk());
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.pending(), 10);
        assert_eq!(ring.enqueue_slice(&mut pool, b"hello"), 5);
        assert_eq!(ring.pending(), 5);
        assert_eq!(ring.commit(5), 5);
        assert_eq!(ring.pending(), 0);
        assert_eq!(contents(&ring), b"helloworld");
    }

    #[test]
    fn ring_pending_out_of_order_bytes_keep_the_chunk_until_released() {
        let mut pool = BufferPool::new(1, 16);
        let mut ring = RingBuffer::new(&pool);
        assert_eq!(ring.enqueue_slice(&mut pool, b"ab"), 2);
        assert_eq!(ring.write_at(&mut pool, 3, b"xy"), 2);
        assert_eq!(ring.discard(&mut pool, 2), 2);
        assert!(ring.has_chunk(), "pending bytes live in the chunk");
        assert_eq!(pool.available(), 0);
        ring.release(&mut pool);
        assert!(!ring.has_chunk());
        assert_eq!(ring.pending(), 0);
        assert_eq!(pool.available(), 1);
    }

    #[test]
    fn ring_write_at_past_window_is_clipped() {
        let mut pool = BufferPool::new(1, 8);
        let mut ring = RingBuffer::new(&pool);
        assert_eq!(ring.write_at(&mut pool, 8, b"a"), 0);
        assert!(!ring.has_chunk(), "a write that places nothing must not take a chunk");
        assert_eq!(ring.write_at(&mut pool, 6, b"abcd"), 2);
        assert_eq!(ring.pending(), 8);
        let (a, b) = ring.peek(0, 8);
        assert!(
            a.is_empty() && b.is_empty(),
            "placed bytes are not data until committed"
        );
    }

    #[test]
    fn ring_commit_is_clipped_to_placed_bytes() {
        let mut pool = BufferPool::new(1, 8);
        let mut ring = RingBuffer::new(&pool);
        assert_eq!(ring.commit(3), 0, "nothing placed, nothing to commit");
        assert_eq!(ring.write_at(&mut pool, 0, b"abc"), 3);
        assert_eq!(ring.commit(100), 3);
        assert_eq!(contents(&ring), b"abc");
        assert_eq!(ring.pending(), 0);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn ring_size_stays_small_for_a_million_connections() {
        assert_eq!(core::mem::size_of::<RingBuffer>(), 32);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Enqueue(Vec<u8>),
        Dequeue(usize),
        Discard(usize),
        Peek(usize, usize),
        WriteAt(usize, Vec<u8>),
        Commit(usize),
        Release,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(Op::Enqueue),
            3 => (0usize..24).prop_map(Op::Dequeue),
            3 => (0usize..24).prop_map(Op::Discard),
            2 => (0usize..24, 0usize..24).prop_map(|(o, l)| Op::Peek(o, l)),
            3 => (0usize..24, proptest::collection::vec(any::<u8>(), 0..12)).prop_map(|(o, d)| Op::WriteAt(o, d)),
            2 => (0usize..24).prop_map(Op::Commit),
            1 => Just(Op::Release),
        ]
    }

    proptest! {
        #[test]
        fn ring_random_ops_match_vecdeque_model(ops in proptest::collection::vec(op(), 0..64)) {
            const CAP: usize = 19;
            let mut pool = BufferPool::new(1, CAP);
            let mut ring = RingBuffer::new(&pool);
            let mut data: VecDeque<u8> = VecDeque::new();
            // Bytes beyond the end of data placed by write_at; None where nothing was written.
            let mut ooo: Vec<Option<u8>> = Vec::new();
            for op in ops {
                match op {
                    Op::Enqueue(bytes) => {
                        let n = ring.enqueue_slice(&mut pool, &bytes);
                        let expect = bytes.len().min(CAP - data.len());
                        prop_assert_eq!(n, expect);
                        data.extend(&bytes[..n]);
                        ooo.drain(..n.min(ooo.len()));
                    }
                    Op::Dequeue(k) => {
                        let mut out = vec![0u8; k];
                        let n = ring.dequeue_slice(&mut pool, &mut out);
                        prop_assert_eq!(n, k.min(data.len()));
                        let expect: Vec<u8> = data.drain(..n).collect();
                        prop_assert_eq!(&out[..n], &expect[..]);
                    }
                    Op::Discard(k) => {
                        let n = ring.discard(&mut pool, k);
                        prop_assert_eq!(n, k.min(data.len()));
                        data.drain(..n);
                    }
                    Op::Peek(o, l) => {
                        let (a, b) = ring.peek(o, l);
                        let expect: Vec<u8> = data.iter().skip(o).take(l).copied().collect();
                        prop_assert_eq!([a, b].concat(), expect);
                    }
                    Op::WriteAt(o, bytes) => {
                        let n = ring.write_at(&mut pool, o, &bytes);
                        let free = CAP - data.len();
                        let expect = if o >= free { 0 } else { bytes.len().min(free - o) };
                        prop_assert_eq!(n, expect);
                        if n > 0 {
                            if ooo.len() < o + n {
                                ooo.resize(o + n, None);
                            }
                            for (slot, &b) in ooo[o..o + n].iter_mut().zip(&bytes) {
                                *slot = Some(b);
                            }
                        }
                    }
                    Op::Commit(k) => {
                        // Commit only bytes actually written, as the assembler guarantees.
                        let known = ooo.iter().take_while(|b| b.is_some()).count();
                        let k = k.min(known);
                        prop_assert_eq!(ring.commit(k), k);
                        data.extend(ooo.drain(..k).flatten());
                    }
                    Op::Release => {
                        ring.release(&mut pool);
                        data.clear();
                        ooo.clear();
                    }
                }
                prop_assert_eq!(ring.len(), data.len());
                prop_assert_eq!(ring.free(), CAP - data.len());
                prop_assert_eq!(ring.pending(), ooo.len());
                prop_assert_eq!(contents(&ring), data.iter().copied().collect::<Vec<u8>>());
                let busy = !data.is_empty() || !ooo.is_empty();
                prop_assert_eq!(ring.has_chunk(), busy);
                prop_assert_eq!(pool.available(), usize::from(!busy));
            }
        }
    }
}

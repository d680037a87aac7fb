//! The device abstraction between the poll loop, the engine and whatever moves frames.
//!
//! The engine's entry points are `handle_frame(now, frame, tx)` and `handle_timeouts(now, tx)`. A [`Device`]
//! serves both without copying: [`Device::receive`] lends each received frame in place (in the UMEM for
//! AF_XDP) together with a [`TxSink`] that builds replies straight in transmit frames, and
//! [`Device::transmitter`] lends the same kind of sink outside receive (timer output, application sends).
//! Frames given to a sink are queued; [`Device::flush`] hands the batch to the kernel, kicks it only when it
//! asks, reaps completions and refills the receive side. The trait is generic (no `dyn`) so the hot path
//! monomorphises.

use synack::io::TxSink;

/// A source and sink of Ethernet frames, driven by one thread's poll loop.
pub trait Device {
    /// The transmit sink lent out by [`Device::receive`] and [`Device::transmitter`]; it borrows the device's
    /// transmit half so replies are written in place.
    type Tx<'a>: TxSink
    where
        Self: 'a;

    /// Hands up to `max` received frames, one at a time and in arrival order, to `f` together with a transmit
    /// sink, then recycles their buffers. Returns how many frames were handed over (0 when none waited).
    ///
    /// The frame slice is valid only during the call of `f`: over AF_XDP it is the UMEM frame itself.
    fn receive<'a, F>(&'a mut self, max: usize, f: F) -> Result<usize, DeviceError>
    where
        F: FnMut(&[u8], &mut Self::Tx<'a>);

    /// Shows up to `max` of the frames waiting to be received, in order, without taking them: a first pass over
    /// a batch before [`Device::receive`] hands it over, in which the poll loop prefetches each frame's
    /// flow-table line ([`synack::engine::Engine::prefetch_frame`]). The next `receive` gets the same frames
    /// (and possibly more that arrived meanwhile). Only a hint: the default shows nothing, for devices that
    /// cannot look at a frame without taking it.
    fn peek<F>(&mut self, max: usize, f: F)
    where
        F: FnMut(&[u8]),
    {
        let _ = (max, f);
    }

    /// Lends a transmit sink outside receive, for timer output and application sends.
    fn transmitter(&mut self) -> Self::Tx<'_>;

    /// Submits the queued transmit batch, wakes the kernel only if it asks, reaps completed transmit frames and
    /// refills the receive side. Call once per poll-loop turn.
    fn flush(&mut self) -> Result<(), DeviceError>;

    /// Counters since the device was opened.
    fn stats(&self) -> DeviceStats;

    /// The largest frame, in bytes, a [`TxSink::transmit`] on this device can accept.
    fn frame_capacity(&self) -> usize;

    /// What the kernel dropped before the frames reached the device's rings (AF_XDP's `XDP_STATISTICS`), where
    /// there is a kernel: a syscall, so for reports, not for every poll-loop turn.
    fn kernel_stats(&self) -> Option<crate::afxdp::KernelXskStats> {
        None
    }
}

/// Counters a device keeps, so drops and stalls are visible rather than silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames handed to a receive callback.
    pub rx_frames: u64,
    /// Frames queued for transmission (accepted by a [`TxSink`]).
    pub tx_frames: u64,
    /// Times a transmit could not get a ring slot or a free frame (the frame was dropped, see `tx_dropped`).
    pub tx_ring_full: u64,
    /// Times the receive side had no free buffer to offer the kernel (AF_XDP fill ring ran dry).
    pub fill_ring_empty: u64,
    /// Frames a [`TxSink`] refused: no buffer, no ring slot, or longer than [`Device::frame_capacity`].
    pub tx_dropped: u64,
    /// Frames refused because they were longer than a frame buffer (also counted in `tx_dropped`).
    pub tx_oversize: u64,
    /// Wake-up syscalls made for transmit (`sendto`).
    pub tx_kicks: u64,
    /// Wake-up syscalls made for receive (`poll` on the fill ring).
    pub rx_kicks: u64,
    /// Transmit frames the kernel reported done (AF_XDP completion ring).
    pub tx_completed: u64,
    /// Received descriptors that pointed outside the frame area (a kernel or setup bug; the frame is skipped).
    pub rx_invalid: u64,
}

/// Why a device operation failed at run time (opening has its own error types).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A syscall on the device failed with this errno.
    #[error("device syscall {call} failed: {source}")]
    Syscall {
        /// Which call failed.
        call: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The peer of an in-memory link is gone.
    #[error("the other end of the link was dropped")]
    Disconnected,
}

//! The boundary between the sans-IO core and whatever moves frames (AF_XDP rings, the in-memory link, the
//! simulator). The core never owns a buffer it transmits from: it asks the sink for one frame of an exact length
//! and writes the frame straight into it, so over AF_XDP a reply is built in place in a UMEM frame.

/// Why a sink did not take a frame, as smoltcp's `Device::transmit` and s2n-quic's transmit queue tell it: the
/// caller's answer differs. `Full` passes (stop this pass, keep the work for the next poll); `TooLong` never
/// will (drop the frame; the configuration is wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxRefused {
    /// No buffer or ring slot right now: the device frees some as the kernel or the peer catches up.
    #[error("transmit ring full")]
    Full,
    /// The frame is longer than any buffer this sink has: it will never be taken.
    #[error("frame longer than the device's frames")]
    TooLong,
}

/// Where outgoing frames go.
pub trait TxSink {
    /// Asks for a transmit buffer of exactly `len` bytes and lets `fill` write the whole frame into it.
    ///
    /// On `Err` the frame is not sent, and the error says whether trying again later can help. `fill` is
    /// called at most once, and only when this returns `Ok`.
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxRefused>;
}

/// A sink that keeps every frame in memory: for tests and tools, not for the hot path (it allocates).
impl TxSink for Vec<Vec<u8>> {
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxRefused> {
        let mut frame = vec![0u8; len];
        fill(&mut frame);
        self.push(frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_sink_transmit_keeps_frame_of_requested_length() {
        let mut sink: Vec<Vec<u8>> = Vec::new();
        assert_eq!(sink.transmit(3, |b| b.copy_from_slice(&[1, 2, 3])), Ok(()));
        assert_eq!(sink, vec![vec![1, 2, 3]]);
    }
}

//! The boundary between the sans-IO core and whatever moves frames (AF_XDP rings, the in-memory link, the
//! simulator). The core never owns a buffer it transmits from: it asks the sink for one frame of an exact length
//! and writes the frame straight into it, so over AF_XDP a reply is built in place in a UMEM frame.

/// Where outgoing frames go.
pub trait TxSink {
    /// Asks for a transmit buffer of exactly `len` bytes and lets `fill` write the whole frame into it.
    ///
    /// Returns `false` when no buffer can be had (ring full, or `len` larger than a frame); the frame is then
    /// not sent and the caller counts the drop. `fill` is called at most once, and only when this returns `true`.
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> bool;
}

/// A sink that keeps every frame in memory: for tests and tools, not for the hot path (it allocates).
impl TxSink for Vec<Vec<u8>> {
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> bool {
        let mut frame = vec![0u8; len];
        fill(&mut frame);
        self.push(frame);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_sink_transmit_keeps_frame_of_requested_length() {
        let mut sink: Vec<Vec<u8>> = Vec::new();
        assert!(sink.transmit(3, |b| b.copy_from_slice(&[1, 2, 3])));
        assert_eq!(sink, vec![vec![1, 2, 3]]);
    }
}

//! The in-memory link allocates only when it is built: sending, receiving and replying allocate nothing.
//! (Own test binary, because the counting allocator is global.)

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_during;
use synack::io::TxSink;
use synack_driver::{Device, MemoryLink, MemoryLinkConfig};

#[test]
fn memory_link_steady_state_traffic_allocates_nothing() {
    let (mut a, mut b) = MemoryLink::pair(MemoryLinkConfig {
        frames_per_direction: 64,
        frame_size: 128,
    });
    let mut echoed = 0u64;
    let mut back = 0u64;
    // Warm-up turn outside the measured window (nothing should allocate, but be fair to lazy statics).
    assert!(a.transmitter().transmit(60, |f| f.fill(1)).is_ok());
    b.receive(64, |_, _| {}).unwrap();

    let ((), allocations) = allocations_during(|| {
        for round in 0..1000u32 {
            for i in 0..32u8 {
                let ok = a.transmitter().transmit(60, |f| {
                    f.fill(i);
                    f[..4].copy_from_slice(&round.to_be_bytes());
                });
                assert!(ok.is_ok());
            }
            b.receive(64, |frame, tx| {
                echoed += 1;
                assert!(tx.transmit(frame.len(), |out| out.copy_from_slice(frame)).is_ok());
            })
            .unwrap();
            b.flush().unwrap();
            a.receive(64, |frame, _| {
                assert_eq!(frame[..4], round.to_be_bytes());
                back += 1;
            })
            .unwrap();
            a.flush().unwrap();
        }
    });
    assert_eq!(echoed, 32_000);
    assert_eq!(back, 32_000);
    assert_eq!(allocations, 0, "the link allocated in steady state");
}

#[test]
fn memory_link_two_threads_keep_order() {
    let (mut a, mut b) = MemoryLink::pair(MemoryLinkConfig {
        frames_per_direction: 16,
        frame_size: 64,
    });
    const N: u32 = 20_000;
    let sender = std::thread::spawn(move || {
        let mut i = 0u32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while i < N && std::time::Instant::now() < deadline {
            if a.transmitter()
                .transmit(4, |f| f.copy_from_slice(&i.to_be_bytes()))
                .is_ok()
            {
                i += 1;
            } else {
                std::thread::yield_now();
            }
        }
        (i, a.stats().tx_dropped)
    });
    let mut next = 0u32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while next < N && std::time::Instant::now() < deadline {
        let n = b
            .receive(64, |frame, _| {
                assert_eq!(frame, next.to_be_bytes());
                next += 1;
            })
            .unwrap();
        if n == 0 {
            std::thread::yield_now();
        }
    }
    let (sent, refused) = sender.join().unwrap();
    assert_eq!(sent, N);
    assert_eq!(next, N);
    // Refusals happen when the receiver lags; each was counted, and every accepted frame arrived in order.
    assert_eq!(b.stats().rx_frames, u64::from(N));
    assert!(refused < u64::MAX);
}

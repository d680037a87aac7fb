//! The engine's building blocks on their own: flow-table lookup, timer wheel, RFC 6528 ISNs, the Internet
//! checksum, and a listener under a SYN flood (a SYN answered with a SYN cookie, or dropped at a full backlog).
//!
//! `cargo bench -p synack-bench --bench micro -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use synack::engine::flow::{FlowSlot, FlowTable};
use synack::engine::{Engine, EngineConfig, FlowKey, SynCookieMode};
use synack::io::{TxRefused, TxSink};
use synack::isn::{FlowHasher, IsnGenerator, Secret};
use synack::time::Instant;
use synack::timer::{TimerConfig, TimerId, TimerWheel};
use synack::wire::Port;
use synack::wire::checksum;
use synack::wire::ethernet::MacAddr;
use synack_bench::flood::{FloodConfig, FrameBuilder, Mac};

/// Flows held in the table for the lookup benches.
const FLOWS: u32 = 65_536;

fn key(i: u32) -> FlowKey {
    FlowKey {
        local_addr: Ipv4Addr::new(198, 18, 0, 2),
        remote_addr: Ipv4Addr::from(0xc612_0000 | (i >> 16)),
        local_port: Port(80),
        remote_port: Port(i as u16),
    }
}

fn flow_table(c: &mut Criterion) {
    let mut table = FlowTable::new(FLOWS as usize, FlowHasher::new(Secret::from_seed(9)));
    for i in 0..FLOWS {
        table.insert(key(i), FlowSlot::Conn(i)).expect("insert");
    }
    let mut group = c.benchmark_group("flow_table");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    group.bench_function("lookup_hit_64k", |b| {
        b.iter(|| {
            // A stride that visits every key in a cache-unfriendly order.
            i = i.wrapping_add(40_503) % FLOWS;
            black_box(table.get(black_box(&key(i))))
        })
    });
    group.bench_function("lookup_miss_64k", |b| {
        b.iter(|| {
            i = i.wrapping_add(40_503) % FLOWS;
            black_box(table.get(black_box(&key(i + FLOWS))))
        })
    });
    group.bench_function("insert_remove_64k", |b| {
        b.iter(|| {
            i = i.wrapping_add(40_503) % FLOWS;
            let k = key(i);
            let slot = table.remove(&k).expect("present");
            table.insert(k, black_box(slot)).expect("room");
        })
    });
    group.finish();

    // A table of 1M flows (64 MiB, beyond the caches): lookups of random present keys in batches of 64, as a
    // receive batch makes them, without and with a prefetch pass over the batch first.
    const BIG: u32 = 1 << 20;
    const BATCH: usize = 64;
    let mut big = FlowTable::new(BIG as usize, FlowHasher::new(Secret::from_seed(10)));
    for i in 0..BIG {
        big.insert(key(i), FlowSlot::Conn(i)).expect("insert");
    }
    let mut group = c.benchmark_group("flow_table");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut n = 0u32;
    let mut batch = move || {
        core::array::from_fn::<FlowKey, BATCH, _>(|_| {
            n = n.wrapping_add(1);
            key(n.wrapping_mul(2_654_435_761) % BIG)
        })
    };
    group.bench_function("lookup_1m_batch64", |b| {
        b.iter_batched_ref(
            &mut batch,
            |keys| {
                for k in keys.iter() {
                    black_box(big.get(k));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("lookup_1m_batch64_prefetched", |b| {
        b.iter_batched_ref(
            &mut batch,
            |keys| {
                for k in keys.iter() {
                    big.prefetch(k);
                }
                for k in keys.iter() {
                    black_box(big.get(k));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn timer_wheel(c: &mut Criterion) {
    const IDS: u32 = 65_536;
    let start = Instant::from_millis(1);
    let mut group = c.benchmark_group("timer_wheel");
    group.throughput(Throughput::Elements(1));

    // Reschedule one of 64K armed timers to a new deadline within 200 ms..13 s (RTO and delayed-ACK range).
    let mut wheel = TimerWheel::new(IDS as usize, TimerConfig::default(), start);
    for id in 0..IDS {
        wheel.schedule(TimerId(id), start + Duration::from_millis(200 + u64::from(id % 4096)));
    }
    let mut n = 0u32;
    group.bench_function("schedule_64k_armed", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let id = TimerId(n % IDS);
            let at = start + Duration::from_millis(200 + u64::from(n.wrapping_mul(2_654_435_761) % 13_000));
            wheel.schedule(black_box(id), at);
        })
    });
    group.bench_function("cancel_then_schedule_64k_armed", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let id = TimerId(n % IDS);
            wheel.cancel(black_box(id));
            wheel.schedule(id, start + Duration::from_millis(200 + u64::from(n % 4096)));
        })
    });

    // Advance by 1 ms ticks through a wheel where 16 timers are due each tick: 1,024 ticks per iteration,
    // throughput counted per fired timer.
    group.throughput(Throughput::Elements(16 * 1024));
    group.bench_function("advance_1ms_16_due", |b| {
        b.iter_batched_ref(
            || {
                let mut w = TimerWheel::new(IDS as usize, TimerConfig::default(), start);
                for id in 0..IDS {
                    w.schedule(TimerId(id), start + Duration::from_millis(1 + u64::from(id / 16)));
                }
                (w, start)
            },
            |(w, now)| {
                for _ in 0..1024 {
                    *now += Duration::from_millis(1);
                    let mut fired = 0u32;
                    w.advance(*now, |_| fired += 1);
                    black_box(fired);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn isn(c: &mut Criterion) {
    let isn = IsnGenerator::new(Secret::from_seed(7));
    let mut group = c.benchmark_group("isn");
    group.throughput(Throughput::Elements(1));
    let mut port = 0u16;
    let mut now = Instant::from_millis(1);
    group.bench_function("rfc6528", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            now += Duration::from_micros(1);
            black_box(isn.isn(
                (Ipv4Addr::new(198, 18, 0, 1), Port(port)),
                (Ipv4Addr::new(198, 18, 0, 2), Port(80)),
                now,
            ))
        })
    });
    group.finish();
}

fn checksums(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    let buf: Vec<u8> = (0..1460u32).map(|i| (i * 7 + 3) as u8).collect();
    for len in [64usize, 512, 1460] {
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("data_{len}"), |b| {
            b.iter(|| checksum::data(black_box(&buf[..len])))
        });
    }
    group.finish();
}

/// A sink that keeps only the last frame: what a flood's answers cost the engine, not the harness.
struct LastFrame {
    sent: u64,
    frame: [u8; 2048],
}

impl TxSink for LastFrame {
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxRefused> {
        let frame = self.frame.get_mut(..len).ok_or(TxRefused::TooLong)?;
        fill(frame);
        self.sent += 1;
        Ok(())
    }
}

/// 4,096 SYNs as the flood generator sends them (Linux's options, random spoofed sources in 198.19.0.0/16), to
/// port 80 of the engine's address and MAC.
fn syn_frames() -> Vec<Vec<u8>> {
    let cfg = FloodConfig {
        target: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80),
        target_mac: Some(Mac(SERVER_MAC.0)),
        ..FloodConfig::default()
    };
    let mut builder = FrameBuilder::new(&cfg, [2, 0, 0, 0, 0, 1], 1).expect("a valid flood configuration");
    (0..4096)
        .map(|_| {
            let mut frame = vec![0u8; builder.frame_len()];
            builder.write(&mut frame);
            frame
        })
        .collect()
}

/// The engine's MAC in the flood benches.
const SERVER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

fn syn_flood(c: &mut Criterion) {
    let mut frames = syn_frames();
    // One SYN takes the backlog's one slot; the rest meet it full.
    let first = frames.pop().expect("frames");
    let mut group = c.benchmark_group("syn_flood");
    group.throughput(Throughput::Elements(1));
    for (name, mode) in [
        ("syn_cookie_answered", SynCookieMode::Always),
        ("syn_dropped_backlog_full", SynCookieMode::Never),
    ] {
        let config = EngineConfig {
            mac: SERVER_MAC,
            addresses: vec![Ipv4Addr::new(198, 18, 0, 2)],
            syn_cookies: mode,
            ..EngineConfig::default()
        };
        let start = Instant::from_millis(1000);
        let mut engine =
            Engine::with_secrets(config, start, Secret::from_seed(1), Secret::from_seed(2)).expect("engine");
        // Backlog 1, held by one half-open connection: every other SYN meets a full queue.
        engine.listen(Port(80), 1).expect("listen");
        let mut sink = LastFrame {
            sent: 0,
            frame: [0; 2048],
        };
        engine.handle_frame(start, &first, &mut sink);
        let mut k = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                k += 1;
                engine.handle_frame(start, black_box(&frames[k % frames.len()]), &mut sink);
            })
        });
        black_box(sink.sent);
    }
    group.finish();
}

criterion_group!(benches, flow_table, timer_wheel, isn, checksums, syn_flood);
criterion_main!(benches);

//! An interface's own packet and drop counters (`/proc/thread-self/net/dev`, so the calling thread's network
//! namespace). A frame the AF_XDP ring completes has left the socket, not necessarily the link: veth drops
//! what its peer's queue cannot take and counts it here, as the sender's `tx_dropped`.

/// The counters of one interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets dropped on transmit (veth: the peer could not take them).
    pub tx_dropped: u64,
}

impl LinkCounters {
    /// The counts since `before`.
    pub fn since(&self, before: &LinkCounters) -> LinkCounters {
        LinkCounters {
            rx_packets: self.rx_packets.saturating_sub(before.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(before.rx_dropped),
            tx_packets: self.tx_packets.saturating_sub(before.tx_packets),
            tx_dropped: self.tx_dropped.saturating_sub(before.tx_dropped),
        }
    }
}

/// `ifname`'s counters in the calling thread's namespace, if it has that interface.
pub fn link_counters(ifname: &str) -> Option<LinkCounters> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
    parse(&text, ifname)
}

/// Finds `ifname`'s line in the text of `/proc/net/dev`: "name: rx_bytes rx_packets rx_errs rx_drop rx_fifo
/// rx_frame rx_compressed rx_multicast tx_bytes tx_packets tx_errs tx_drop ...".
fn parse(text: &str, ifname: &str) -> Option<LinkCounters> {
    let line = text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        (name.trim() == ifname).then_some(rest)
    })?;
    let v: Vec<u64> = line.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    Some(LinkCounters {
        rx_packets: *v.get(1)?,
        rx_dropped: *v.get(3)?,
        tx_packets: *v.get(9)?,
        tx_dropped: *v.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
snk12x0k: 1234567   8901    0    5    0     0          0         0  7654321  99999    0   17    0     0       0          0
";

    #[test]
    fn parse_finds_the_interface_line_and_its_drop_columns() {
        let c = parse(SAMPLE, "snk12x0k").unwrap();
        assert_eq!(
            c,
            LinkCounters {
                rx_packets: 8901,
                rx_dropped: 5,
                tx_packets: 99999,
                tx_dropped: 17,
            }
        );
        assert_eq!(parse(SAMPLE, "lo").unwrap().tx_packets, 0);
        assert!(parse(SAMPLE, "eth0").is_none());
        assert!(parse(SAMPLE, "snk12x0").is_none());
    }
}

//! The request/response protocol both programs speak, independent of the stack underneath: the responder
//! counts complete requests in a byte stream, the load generator counts complete responses. Shared by the synack
//! and the kernel backends so both measure exactly the same work.

use crate::config::{CloseFirst, Protocol};

const HEADER_END: &[u8; 4] = b"\r\n\r\n";

/// The bytes of one request.
pub fn request_bytes(protocol: Protocol, size: usize) -> Vec<u8> {
    match protocol {
        Protocol::Fixed => vec![b'q'; size],
        Protocol::Http => b"GET / HTTP/1.1\r\nHost: synack\r\nUser-Agent: synack-loadgen\r\n\r\n".to_vec(),
    }
}

/// The bytes of one response.
pub fn response_bytes(protocol: Protocol, size: usize, close: CloseFirst) -> Vec<u8> {
    match protocol {
        Protocol::Fixed => vec![b'r'; size],
        Protocol::Http => {
            let connection = if close == CloseFirst::Server {
                "close"
            } else {
                "keep-alive"
            };
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nServer: synack\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n\
                 Connection: {connection}\r\n\r\n"
            )
            .into_bytes();
            r.resize(r.len() + size, b'x');
            r
        }
    }
}

/// Finds the ends of "\r\n\r\n" in a stream fed piecewise (a match may straddle two reads).
#[derive(Clone, Copy, Debug, Default)]
struct BlankLine {
    matched: u8,
}

impl BlankLine {
    /// Feeds one byte; true when it completes a blank line.
    fn feed(&mut self, b: u8) -> bool {
        let m = self.matched as usize;
        if b == HEADER_END[m] {
            self.matched += 1;
            if self.matched == 4 {
                self.matched = 0;
                return true;
            }
        } else {
            self.matched = u8::from(b == b'\r');
        }
        false
    }
}

/// Server side: counts complete requests in what a connection receives.
#[derive(Clone, Copy, Debug)]
pub struct RequestCounter {
    protocol: Protocol,
    size: usize,
    partial: usize,
    blank: BlankLine,
}

impl RequestCounter {
    /// A counter for requests of `size` bytes (fixed) or ending at a blank line (http).
    pub fn new(protocol: Protocol, size: usize) -> RequestCounter {
        RequestCounter {
            protocol,
            size: size.max(1),
            partial: 0,
            blank: BlankLine::default(),
        }
    }

    /// Feeds received bytes; returns how many requests they completed.
    pub fn feed(&mut self, data: &[u8]) -> u32 {
        match self.protocol {
            Protocol::Fixed => {
                let total = self.partial + data.len();
                self.partial = total % self.size;
                (total / self.size) as u32
            }
            Protocol::Http => data.iter().filter(|&&b| self.blank.feed(b)).count() as u32,
        }
    }

    /// Whether part of a request has arrived.
    pub fn has_partial(&self) -> bool {
        self.partial > 0 || self.blank.matched > 0
    }
}

/// Client side: counts complete responses (fixed size, or HTTP with a Content-Length).
#[derive(Clone, Debug)]
pub struct ResponseCounter {
    protocol: Protocol,
    size: usize,
    partial: usize,
    blank: BlankLine,
    header: Vec<u8>,
    in_body: Option<usize>,
    malformed: bool,
}

impl ResponseCounter {
    /// A counter for responses of `size` bytes (fixed) or HTTP responses (any body length).
    pub fn new(protocol: Protocol, size: usize) -> ResponseCounter {
        ResponseCounter {
            protocol,
            size: size.max(1),
            partial: 0,
            blank: BlankLine::default(),
            header: Vec::with_capacity(256),
            in_body: None,
            malformed: false,
        }
    }

    /// Forgets any partial response (a new connection).
    pub fn reset(&mut self) {
        self.partial = 0;
        self.blank = BlankLine::default();
        self.header.clear();
        self.in_body = None;
        self.malformed = false;
    }

    /// Whether an HTTP response had no usable Content-Length (the counter then gives up on the connection).
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    /// Feeds received bytes; returns how many responses they completed.
    pub fn feed(&mut self, data: &[u8]) -> u32 {
        match self.protocol {
            Protocol::Fixed => {
                let total = self.partial + data.len();
                self.partial = total % self.size;
                (total / self.size) as u32
            }
            Protocol::Http => {
                let mut done = 0;
                let mut rest = data;
                while !rest.is_empty() && !self.malformed {
                    match self.in_body {
                        Some(left) => {
                            let take = left.min(rest.len());
                            rest = &rest[take..];
                            if take == left {
                                self.in_body = None;
                                done += 1;
                            } else {
                                self.in_body = Some(left - take);
                            }
                        }
                        None => {
                            let mut consumed = rest.len();
                            for (i, &b) in rest.iter().enumerate() {
                                if self.header.len() < 8192 {
                                    self.header.push(b);
                                }
                                if self.blank.feed(b) {
                                    consumed = i + 1;
                                    match content_length(&self.header) {
                                        Some(0) => done += 1,
                                        Some(n) => self.in_body = Some(n),
                                        None => self.malformed = true,
                                    }
                                    self.header.clear();
                                    break;
                                }
                            }
                            rest = &rest[consumed..];
                        }
                    }
                }
                done
            }
        }
    }
}

/// The Content-Length of an HTTP header block.
fn content_length(header: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(header).ok()?;
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counter_http_split_blank_line_counts_once() {
        let mut c = RequestCounter::new(Protocol::Http, 0);
        assert_eq!(c.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), 0);
        assert_eq!(c.feed(b"\nGET / HTTP/1.1\r\n\r\n"), 2);
    }

    #[test]
    fn request_counter_fixed_chunks_count_whole_requests() {
        let mut c = RequestCounter::new(Protocol::Fixed, 10);
        assert_eq!(c.feed(&[0; 7]), 0);
        assert_eq!(c.feed(&[0; 24]), 3);
        assert!(c.has_partial());
    }

    #[test]
    fn response_counter_http_own_responses_split_anywhere_count_exactly() {
        let one = response_bytes(Protocol::Http, 100, CloseFirst::Client);
        let two = [one.clone(), one].concat();
        for cut in 0..two.len() {
            let mut c = ResponseCounter::new(Protocol::Http, 0);
            let n = c.feed(&two[..cut]) + c.feed(&two[cut..]);
            assert_eq!(n, 2, "cut at {cut}");
        }
    }

    #[test]
    fn response_counter_http_without_length_is_malformed() {
        let mut c = ResponseCounter::new(Protocol::Http, 0);
        assert_eq!(c.feed(b"HTTP/1.1 200 OK\r\n\r\nabc"), 0);
        assert!(c.malformed());
    }
}

//! Reading a `/metrics` endpoint (the controller's or an agent's) as a
//! scraper would: one plain HTTP/1.1 GET, and sums over its lines.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `GET /metrics` from `addr` (host:port): the body, or `None` when
/// nothing answers. Anything but `200 OK` fails the test.
pub fn scrape(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The sum of the values of the lines of `text` starting `prefix` (a
/// metric name and the start of its labels).
pub fn sum_lines(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

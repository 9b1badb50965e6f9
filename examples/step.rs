//! A host loop that owns the thread: it has its own `mio::Poll` with its own
//! socket (a UDP port where devices drop readings), does its own work each
//! tick, and gives ssehub a turn with `poll_once` in between — no second
//! thread. The server's poll is nested in the host's: its file descriptor
//! is registered there and becomes readable whenever the server has work.
//!
//! ```text
//! cargo run --example step                        # ticks forever on 127.0.0.1:8082
//! cargo run --example step -- 127.0.0.1:0 30      # stop after 30 ticks
//! echo 'temp=21' | nc -u -w0 127.0.0.1 8083       # a reading, live in room 'udp'
//! ```

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use ssehub::{Config, Server, Status};

/// The host's tokens: its own, on its own poll; the server's tokens live on
/// the server's poll and never mix with these.
const SERVER: Token = Token(0);
const READINGS: Token = Token(1);

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8082".to_string());
    let ticks: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);

    let mut server = Server::bind(Config {
        bind: bind.parse().expect("ADDR:PORT"),
        ..Config::default()
    })?;
    let addr = server.local_addr()?;
    // The port after the server's (any free port when the server's is 0).
    let udp_port = match addr.port() {
        0 => 0,
        port => port.wrapping_add(1),
    };
    let mut readings = UdpSocket::bind((addr.ip(), udp_port).into())?;
    println!(
        "game on http://{addr}/ (room 'game'); UDP readings to {} go to room 'udp'",
        readings.local_addr()?
    );

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(64);
    poll.registry().register(
        &mut SourceFd(&server.as_raw_fd()),
        SERVER,
        Interest::READABLE,
    )?;
    poll.registry()
        .register(&mut readings, READINGS, Interest::READABLE)?;

    let tick = Duration::from_millis(50);
    let mut next_tick = Instant::now() + tick;
    let mut frame: u64 = 0;
    let mut datagram = [0u8; 1500];
    loop {
        // Sleep until the next tick, the server's next deadline, or a socket.
        let until_tick = next_tick.saturating_duration_since(Instant::now());
        poll.poll(&mut events, Some(until_tick.min(server.timeout())))?;
        for event in events.iter() {
            if event.token() == READINGS {
                // Edge-triggered: drain the socket.
                while let Ok(n) = readings.recv(&mut datagram) {
                    let text = String::from_utf8_lossy(&datagram[..n]);
                    // Publishing on the loop's thread needs no handle.
                    let _ = server.publish("udp", Some("reading"), text.trim_end());
                }
            }
        }
        // The server's turn: zero timeout, it never blocks the host.
        if server.poll_once(Some(Duration::ZERO))? == Status::Stopped {
            return Ok(());
        }
        if Instant::now() < next_tick {
            continue;
        }
        // The host's own work: advance a pretend game world one frame.
        next_tick += tick;
        frame += 1;
        if frame.is_multiple_of(20) {
            let id = server
                .publish("game", Some("score"), &format!("{{\"frame\":{frame}}}"))
                .expect("room and event names are valid");
            println!(
                "frame {frame}: event {id}, {} streams",
                server.stats().streams
            );
        }
        if ticks != 0 && frame >= ticks {
            server.shutdown();
        }
    }
}

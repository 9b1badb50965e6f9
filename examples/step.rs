//! A host loop that owns the thread: it does its own work each tick and
//! gives ssehub a turn with `poll_once` in between — no second thread.
//!
//! ```text
//! cargo run --example step                    # ticks forever on 127.0.0.1:8082
//! cargo run --example step -- 127.0.0.1:0 30  # stop after 30 ticks
//! ```

use std::time::{Duration, Instant};

use ssehub::{Config, Server};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8082".to_string());
    let ticks: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);

    let mut server = Server::bind(Config {
        bind: bind.parse().expect("ADDR:PORT"),
        ..Config::default()
    })?;
    println!("game on http://{}/ (room 'game')", server.local_addr()?);

    let tick = Duration::from_millis(50);
    let mut next_tick = Instant::now();
    let mut frame: u64 = 0;
    loop {
        // The host's own work: advance a pretend game world one frame.
        frame += 1;
        if frame.is_multiple_of(20) {
            // Publishing on the loop's thread needs no handle.
            let id = server
                .publish("game", Some("score"), &format!("{{\"frame\":{frame}}}"))
                .expect("room and event names are valid");
            println!(
                "frame {frame}: event {id}, {} streams",
                server.stats().streams
            );
        }
        if ticks != 0 && frame >= ticks {
            break;
        }
        // Give the server the rest of the tick; it returns early when
        // sockets are ready, and never blocks past the deadline.
        next_tick += tick;
        while let Some(left) = next_tick.checked_duration_since(Instant::now()) {
            server.poll_once(Some(left))?;
        }
    }
    server.shutdown();
    while !server.is_finished() {
        server.poll_once(Some(Duration::from_millis(100)))?;
    }
    Ok(())
}

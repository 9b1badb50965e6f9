//! A sensor daemon embedding ssehub: a host thread publishes a reading
//! every 100 ms while browsers watch them live.
//!
//! ```text
//! cargo run --example sensor                 # then open http://127.0.0.1:8081/
//! cargo run --example sensor -- 127.0.0.1:0 50   # any free port, stop after 50 readings
//! ```
//!
//! The bundled page shows the `sensors` room; `curl -N
//! 'http://127.0.0.1:8081/events?room=sensors'` shows the raw stream.

use std::time::Duration;

use ssehub::{Config, Server};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8081".to_string());
    // How many readings to publish before shutting down (0: forever).
    let count: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);

    let mut server = Server::bind(Config {
        bind: bind.parse().expect("ADDR:PORT"),
        ..Config::default()
    })?;
    println!(
        "sensor page on http://{}/ (room 'sensors')",
        server.local_addr()?
    );
    server.on_stream(|notice| {
        let verb = if notice.opened { "watching" } else { "left" };
        println!("{} {verb}", notice.peer);
    });

    // The host's own thread: it owns the sensor and publishes through a handle.
    let handle = server.handle();
    let sensor = std::thread::spawn(move || {
        let mut n: u64 = 0;
        loop {
            n += 1;
            // A pretend temperature that wanders between 20 and 22 °C.
            let temp = 21.0 + ((n as f64) / 10.0).sin();
            let reading = format!("{{\"n\":{n},\"temp\":{temp:.2}}}");
            if handle
                .publish("sensors", Some("reading"), &reading)
                .is_err()
            {
                return; // the server has stopped
            }
            if count != 0 && n >= count {
                let _ = handle.shutdown();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    server.run()?;
    let _ = sensor.join();
    println!(
        "published readings, delivered {} events",
        server.stats().events_delivered
    );
    Ok(())
}

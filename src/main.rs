//! The `ssehub` binary: parse flags, bind, run (or print a token). Nothing else.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use ssehub::config::{self, Command, USAGE};
use ssehub::{Server, Status};

mod logger;
mod signals;

fn main() -> ExitCode {
    let command = match config::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("ssehub: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match command {
        Command::Help => {
            print_out(USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            print_out(&format!("ssehub {}", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Command::Token(request) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            print_out(&request.mint(now));
            return ExitCode::SUCCESS;
        }
        Command::Run(config) => *config,
    };
    if let Err(e) = logger::init(config.log_level) {
        eprintln!("ssehub: cannot start logging: {e}");
    }
    let bind = config.bind;
    let listener = match ssehub::server::listen(&config) {
        Ok(listener) => listener,
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "address already in use (is another ssehub running?)".to_string()
                }
                _ => e.to_string(),
            };
            eprintln!("ssehub: cannot listen on {bind}: {why}");
            return ExitCode::from(1);
        }
    };
    let mut server = match Server::from_listener(listener, config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("ssehub: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = server.local_addr().map_or(bind, |a| a);
    let started =
        format!("listening on http://{addr}/ (page: http://{addr}/, stream: http://{addr}/events)");
    // The one line a person looks for is there whatever the log level.
    if log::log_enabled!(log::Level::Info) {
        log::info!("{started}");
    } else {
        eprintln!("ssehub: {started}");
    }
    signals::install();
    let mut stopping = false;
    loop {
        if !stopping && signals::stop_requested() {
            stopping = true;
            log::info!("signal received: stopping (a second one exits at once)");
            server.shutdown();
        }
        match server.poll_once(None) {
            Ok(Status::Running) => {}
            Ok(Status::Stopped) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ssehub: event loop failed: {e}");
                return ExitCode::from(1);
            }
        }
    }
}

/// Prints a line on stdout. A reader that went away (`ssehub --help | head
/// -1`) is not an error worth a panic.
fn print_out(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

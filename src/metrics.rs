//! Counters of the server, and their Prometheus text form.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Counters kept by the loop. Gauges (open streams, rooms…) are read from
/// the server when the page is rendered.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Events published (messages and custom events).
    pub events_published: u64,
    /// Events appended to streams, replays included (heartbeats and presence not).
    pub events_delivered: u64,
    /// Heartbeat frames appended to streams.
    pub heartbeats_sent: u64,
    /// Bytes written to sockets.
    pub bytes_written: u64,
    /// Stream requests answered `busy` because the house was full.
    pub busy_answers: u64,
    /// Streams opened since start.
    pub streams_opened: u64,
    /// Responses by status code.
    pub responses: BTreeMap<u16, u64>,
}

/// Point-in-time values shown beside the counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Open event streams.
    pub streams: usize,
    /// Open connections of every kind.
    pub connections: usize,
    /// Rooms known to the hub.
    pub rooms: usize,
    /// Events retained across all rooms.
    pub retained: usize,
    /// Newest id of the sequence.
    pub last_id: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
}

impl Metrics {
    /// Counts one response.
    pub fn count_response(&mut self, status: u16) {
        *self.responses.entry(status).or_insert(0) += 1;
    }

    /// The Prometheus text exposition of the counters, `gauges` and the
    /// connections `closed` per reason.
    pub fn render(&self, gauges: Gauges, closed: &[(&str, u64)]) -> String {
        let slow_consumers = closed
            .iter()
            .find(|(reason, _)| *reason == crate::conn::Close::SlowConsumer.label())
            .map_or(0, |(_, n)| *n);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP ssehub_{name} {help}\n# TYPE ssehub_{name} {kind}\nssehub_{name} {value}\n"
            );
        };
        metric(
            "streams_open",
            "gauge",
            "Open event streams.",
            gauges.streams as u64,
        );
        metric(
            "connections_open",
            "gauge",
            "Open connections of every kind.",
            gauges.connections as u64,
        );
        metric(
            "rooms",
            "gauge",
            "Rooms with a retained event or an open stream.",
            gauges.rooms as u64,
        );
        metric(
            "retained_events",
            "gauge",
            "Events retained across all rooms.",
            gauges.retained as u64,
        );
        metric(
            "last_event_id",
            "gauge",
            "Newest id of the event sequence.",
            gauges.last_id,
        );
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            gauges.uptime_secs,
        );
        metric(
            "connections_accepted_total",
            "counter",
            "Connections accepted.",
            self.connections_accepted,
        );
        metric(
            "streams_opened_total",
            "counter",
            "Event streams opened.",
            self.streams_opened,
        );
        metric(
            "messages_total",
            "counter",
            "Events published (messages and custom events).",
            self.events_published,
        );
        metric(
            "events_delivered_total",
            "counter",
            "Events queued to streams, replays included.",
            self.events_delivered,
        );
        metric(
            "heartbeats_sent_total",
            "counter",
            "Heartbeats queued to streams.",
            self.heartbeats_sent,
        );
        metric(
            "bytes_written_total",
            "counter",
            "Bytes written to sockets.",
            self.bytes_written,
        );
        metric(
            "slow_consumers_dropped_total",
            "counter",
            "Streams cut because the client did not read.",
            slow_consumers,
        );
        metric(
            "busy_total",
            "counter",
            "Stream requests answered busy (full house).",
            self.busy_answers,
        );
        out.push_str("# HELP ssehub_connections_closed_total Connections closed, by reason.\n# TYPE ssehub_connections_closed_total counter\n");
        for (reason, count) in closed {
            let _ = writeln!(
                out,
                "ssehub_connections_closed_total{{reason=\"{reason}\"}} {count}"
            );
        }
        out.push_str("# HELP ssehub_requests_total Responses by status code.\n# TYPE ssehub_requests_total counter\n");
        for (status, count) in &self.responses {
            let _ = writeln!(out, "ssehub_requests_total{{code=\"{status}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut m = Metrics::default();
        m.count_response(200);
        m.count_response(200);
        m.count_response(404);
        let closed = [("client_closed", 5), ("slow_consumer", 3)];
        let text = m.render(
            Gauges {
                streams: 2,
                ..Default::default()
            },
            &closed,
        );
        assert!(text.contains("# TYPE ssehub_streams_open gauge\nssehub_streams_open 2\n"));
        assert!(text.contains("ssehub_slow_consumers_dropped_total 3\n"));
        assert!(text.contains("ssehub_connections_closed_total{reason=\"client_closed\"} 5\n"));
        assert!(text.contains("ssehub_requests_total{code=\"200\"} 2\n"));
        assert!(text.contains("ssehub_requests_total{code=\"404\"} 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("ssehub_"), "{line}");
        }
    }
}

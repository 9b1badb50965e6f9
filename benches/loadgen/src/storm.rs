//! Scenario S5, the reconnect storm (`--restart-after SECS -- SERVER COMMAND…`).
//!
//! Every stream is open and a publisher sends at `--rate`; after
//! `--restart-after` seconds of publishing the load generator sends the
//! server (`--pid`) SIGTERM, waits until the process is gone, and starts the
//! command given after `--` (the same server, same port, same `--journal`).
//! Meanwhile each stream behaves as a browser's `EventSource`: when its
//! connection ends (or a connect fails) it waits its last `retry:` and
//! reconnects with `Last-Event-ID: <the last id it saw>`; the publisher keeps
//! its rate, and reconnects its connections every 100 ms while they are down
//! (a message due while none is up is skipped, counted in `pub_skipped`).
//!
//! A stream is *back* at its first `hello` from the new server, and *whole*
//! when it also has the replay: an id at least the `last_id` of that `hello`
//! (the last replayed event or the id-only block after it), and — checked at
//! the end against every id acknowledged `201` for its room — no acknowledged
//! id missing. Time to whole = the last stream's whole − the restart (the new
//! process's spawn).

use crate::close::{self, HealthProbe};
use crate::stats::{self, ProcSample};
use crate::{now_ns, sample, Args, Runner};
use serde_json::{json, Value};
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the storm measured (times in ns of `now_ns`, 0 = never).
#[derive(Default)]
pub struct StormRun {
    pub ran: bool,
    pub failed: Option<String>,
    pub id_base: u64,
    pub t_term_ns: u64,
    pub t_gone_ns: u64,
    pub t_restart_ns: u64,
    pub t_all_back_ns: u64,
    pub t_all_whole_seen_ns: u64,
    pub t_pub_stop_ns: u64,
    pub whole_timeout: bool,
    pub new_pid: u32,
    /// The new server's CPU at spawn and when every stream was whole (or the time-out).
    pub s0: Option<ProcSample>,
    pub s1: Option<ProcSample>,
    pub ns0: Option<u64>,
    pub ns1: Option<u64>,
    pub self0: Option<ProcSample>,
    pub self1: Option<ProcSample>,
    pub m0: Option<stats::CpuTotals>,
    pub m1: Option<stats::CpuTotals>,
    /// The new server at the end (its peak RSS is `hwm_kb`).
    pub s_end: Option<ProcSample>,
    pub drained: bool,
    /// Deliveries (all, replayed) from the restart until every stream was whole.
    pub deliveries_window: u64,
    pub replayed_window: u64,
    /// Streams closed with a shutdown `retry:` at the first stop: count, min, max ms.
    pub stop_retry: (u64, u64, u64),
    /// The same at the new server's stop at the end.
    pub end_retry: (u64, u64, u64),
    pub new_exit: Option<i32>,
    pub new_stop_ms: Option<f64>,
    pub new_alive_at_end: bool,
    /// The old server from the start of publishing until SIGTERM, and the
    /// deliveries meanwhile: its CPU per live delivery (heartbeats included).
    pub pre_s0: Option<ProcSample>,
    pub pre_s1: Option<ProcSample>,
    pub pre_deliveries: u64,
    /// Machine-wide accept-queue overflows and SYN resends from the restart
    /// until every stream was whole (a resent SYN costs a stream 1 s).
    pub listen0: Option<(u64, u64, u64)>,
    pub listen1: Option<(u64, u64, u64)>,
}

impl StormRun {
    pub fn ms(&self, from: u64, to: u64) -> Option<f64> {
        (from > 0 && to >= from).then(|| (to - from) as f64 / 1e6)
    }
}

/// Whether process `pid` is gone (no /proc entry, or a zombie).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid)) {
        Ok(text) => matches!(proc_state(&text), Some('Z') | Some('X') | None),
        Err(_) => true,
    }
}

/// The state letter of a /proc/PID/stat line.
pub fn proc_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn signal(pid: u32, sig: libc::c_int) -> bool {
    // SAFETY: kill(2) with a pid we were given or started; no memory involved.
    pid > 0 && unsafe { libc::kill(pid as libc::pid_t, sig) } == 0
}

fn spawn(a: &Args) -> Result<Child, String> {
    let stderr = if a.restart_log.is_empty() {
        Stdio::inherit()
    } else {
        File::create(&a.restart_log)
            .map(Stdio::from)
            .map_err(|e| format!("{}: {}", a.restart_log, e))?
    };
    Command::new(&a.restart_cmd[0])
        .args(&a.restart_cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {}", a.restart_cmd[0], e))
}

#[derive(PartialEq)]
enum Phase {
    Before,
    Stopping(Instant),
    Restarted(Instant),
    After(Instant),
}

/// Runs the storm on the open streams (`open` of them had their hello).
pub fn run(r: &mut Runner, a: &Args, open: u64) -> StormRun {
    let mut st = StormRun {
        ran: true,
        ..StormRun::default()
    };
    // Ids are one sequence; everything published from here is above it.
    match HealthProbe::new(a.server).last_id() {
        Ok(id) => st.id_base = id,
        Err(e) => {
            st.failed = Some(format!("/healthz before publishing: {}", e));
            return st;
        }
    }
    r.id_base = st.id_base;
    r.reconnect = true;
    r.publishing = true;
    st.pre_s0 = sample(a.pid);
    let pre_mark = r.c.deliveries;
    let t_pub = Instant::now();
    let stop_at = t_pub + Duration::from_secs_f64(a.restart_after);
    let mut phase = Phase::Before;
    let mut child: Option<Child> = None;
    let mut last_reopen = Instant::now();
    let mut deliv_mark = (0, 0);
    loop {
        if r.timed_out {
            st.failed.get_or_insert_with(|| "hit the --deadline".into());
            break;
        }
        let wait = if r.next_seq < a.messages {
            r.send_due(t_pub)
        } else {
            Duration::from_millis(5)
        };
        let now = Instant::now();
        match phase {
            Phase::Before => {
                if now >= stop_at {
                    st.pre_s1 = sample(a.pid);
                    st.pre_deliveries = r.c.deliveries - pre_mark;
                    st.t_term_ns = now_ns();
                    if !signal(a.pid, libc::SIGTERM) {
                        st.failed = Some(format!("cannot signal the server (pid {})", a.pid));
                        break;
                    }
                    phase = Phase::Stopping(now);
                }
            }
            Phase::Stopping(since) => {
                if process_gone(a.pid) {
                    st.t_gone_ns = now_ns();
                    st.m0 = stats::machine_cpu();
                    st.self0 = stats::sample(0);
                    st.listen0 = stats::listen_counters();
                    st.t_restart_ns = now_ns();
                    match spawn(a) {
                        Ok(c) => {
                            st.new_pid = c.id();
                            // run.sh reads this line to clean up after a killed run.
                            eprintln!("loadgen: restarted the server: pid {}", st.new_pid);
                            child = Some(c);
                        }
                        Err(e) => {
                            st.failed = Some(e);
                            break;
                        }
                    }
                    st.s0 = sample(st.new_pid);
                    st.ns0 = close::sched_ns(st.new_pid);
                    deliv_mark = (r.c.deliveries, r.c.replayed);
                    r.restarted = true;
                    phase = Phase::Restarted(Instant::now());
                } else if now >= since + Duration::from_secs(10) {
                    st.failed = Some("the server had not exited 10 s after SIGTERM".into());
                    break;
                }
            }
            Phase::Restarted(since) => {
                let all_back = r.c.backs >= open;
                if all_back && st.t_all_back_ns == 0 {
                    st.t_all_back_ns = r.c.last_back_ns;
                }
                let timed_out = now >= since + Duration::from_secs_f64(a.whole_timeout);
                if (all_back && r.c.wholes >= open) || timed_out {
                    st.s1 = sample(st.new_pid);
                    st.ns1 = close::sched_ns(st.new_pid);
                    st.self1 = stats::sample(0);
                    st.m1 = stats::machine_cpu();
                    st.listen1 = stats::listen_counters();
                    st.t_all_whole_seen_ns = now_ns();
                    st.whole_timeout = timed_out && !(all_back && r.c.wholes >= open);
                    st.deliveries_window = r.c.deliveries - deliv_mark.0;
                    st.replayed_window = r.c.replayed - deliv_mark.1;
                    phase = Phase::After(now + Duration::from_secs_f64(a.after_whole));
                }
                if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
                    st.new_exit = status.code();
                    st.failed = Some(format!("the new server exited early ({})", status));
                    child = None;
                    break;
                }
            }
            Phase::After(until) => {
                if now >= until {
                    break;
                }
            }
        }
        if !matches!(phase, Phase::Before) && now >= last_reopen + Duration::from_millis(100) {
            r.reopen_pubs();
            last_reopen = now;
        }
        r.fire_timers();
        r.start_connects(true);
        let next_timer = r
            .next_timer()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(5));
        r.step(wait.min(next_timer).min(Duration::from_millis(5)));
    }
    r.publishing = false;
    st.t_pub_stop_ns = now_ns();

    // Drain: every answer, and every acknowledged message on every stream.
    if st.failed.is_none() {
        let until = Instant::now() + Duration::from_secs_f64(a.drain);
        let mut next_check = Instant::now();
        loop {
            if r.timed_out {
                break;
            }
            let now = Instant::now();
            if now >= next_check {
                if r.outstanding() == 0 && r.every_stream_has_every_ack() {
                    st.drained = true;
                    break;
                }
                next_check = now + Duration::from_millis(20);
            }
            if now >= until {
                break;
            }
            r.fire_timers();
            r.start_connects(true);
            r.step(Duration::from_millis(5));
        }
    }
    st.s_end = sample(st.new_pid);

    // Stop the new server as the first one was stopped; no more reconnects.
    r.reconnect = false;
    if let Some(mut c) = child {
        st.new_alive_at_end = matches!(c.try_wait(), Ok(None));
        let t0 = Instant::now();
        signal(st.new_pid, libc::SIGTERM);
        let until = t0 + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                st.new_exit = status.code();
                st.new_stop_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
                // Read the closes still in the sockets (1 s at most).
                let until = Instant::now() + Duration::from_secs(1);
                while Instant::now() < until && r.streams_in_body() > 0 {
                    r.step(Duration::from_millis(5));
                }
                break;
            }
            if Instant::now() >= until {
                eprintln!("loadgen: the new server had not exited 10 s after SIGTERM; killing it");
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            // Keep reading, so the streams see their `retry:` and the close.
            r.step(Duration::from_millis(2));
        }
    }
    st.stop_retry = r.c.stop_retry;
    st.end_retry = r.c.end_retry;
    st
}

/// A quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The storm's figures for the JSON line, from the streams' records.
pub fn figures(r: &Runner, st: &StormRun) -> Vec<(String, Value)> {
    let mut lost = 0u64;
    let mut streams_lost = 0u64;
    let mut unacked_received = 0u64;
    let mut opened = 0u64;
    let mut whole = Vec::new();
    let mut back = Vec::new();
    let mut late = Vec::new();
    let mut catchup = Vec::new();
    let t0 = st.t_restart_ns;
    for s in r.subs.iter().filter(|s| s.tr.hello) {
        opened += 1;
        let acked = &r.acked_ids[s.room];
        let m = acked.missing_from(&s.tr.seen_ids);
        lost += m;
        if m > 0 {
            streams_lost += 1;
        }
        unacked_received += s.tr.seen_ids.count - (acked.count - m);
        if s.tr.back && t0 > 0 {
            back.push(s.tr.back_ns.saturating_sub(t0) as f64 / 1e6);
            if s.tr.whole_ns > 0 && m == 0 {
                whole.push(s.tr.whole_ns.saturating_sub(t0) as f64 / 1e6);
                // After its own retry: delay (the part the server controls).
                late.push((s.tr.whole_ns as f64 - s.tr.due_ns as f64) / 1e6);
                catchup.push(s.tr.whole_ns.saturating_sub(s.tr.back_ns) as f64 / 1e6);
            }
        }
    }
    whole.sort_by(|a, b| a.total_cmp(b));
    back.sort_by(|a, b| a.total_cmp(b));
    late.sort_by(|a, b| a.total_cmp(b));
    catchup.sort_by(|a, b| a.total_cmp(b));
    let not_whole = opened - whole.len() as u64;
    let not_back = opened - back.len() as u64;
    let r3 = |v: Option<f64>| {
        v.map(|x| json!((x * 10.0).round() / 10.0))
            .unwrap_or(Value::Null)
    };
    let whole_all = if not_whole == 0 && opened > 0 {
        whole.last().copied()
    } else {
        None
    };
    let back_all = if not_back == 0 && opened > 0 {
        back.last().copied()
    } else {
        None
    };
    let cpu_us = match (st.s0, st.s1) {
        (Some(a), Some(b)) => Some(b.cpu_us.saturating_sub(a.cpu_us) as f64),
        _ => None,
    };
    let sched_us = match (st.ns0, st.ns1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1000.0),
        _ => None,
    };
    let backs = r.c.backs;
    // The old server's CPU per live delivery before the stop (heartbeats
    // included), to take the live fan-out out of the window's CPU.
    let pre_us_per_delivery = match (st.pre_s0, st.pre_s1) {
        (Some(a), Some(b)) if st.pre_deliveries > 0 => {
            Some(b.cpu_us.saturating_sub(a.cpu_us) as f64 / st.pre_deliveries as f64)
        }
        _ => None,
    };
    let window_ms = st.ms(st.t_restart_ns, st.t_all_whole_seen_ns);
    let live_window = st.deliveries_window.saturating_sub(st.replayed_window);
    let self_pct = match (st.self0, st.self1, window_ms) {
        (Some(a), Some(b), Some(w)) if w > 0.0 => {
            Some(((b.cpu_us.saturating_sub(a.cpu_us) as f64 / 10.0 / w) * 10.0).round() / 10.0)
        }
        _ => None,
    };
    let listen = |k: usize| match (st.listen0, st.listen1) {
        (Some(a), Some(b)) => {
            let (a, b) = ([a.0, a.1, a.2], [b.0, b.1, b.2]);
            json!(b[k].saturating_sub(a[k]))
        }
        _ => Value::Null,
    };
    let per = |us: Option<f64>| match us {
        Some(us) if backs > 0 => json!((us / backs as f64 * 100.0).round() / 100.0),
        _ => Value::Null,
    };
    let retry = |x: (u64, u64, u64)| {
        if x.0 == 0 {
            (Value::Null, Value::Null)
        } else {
            (json!(x.1), json!(x.2))
        }
    };
    let (stop_min, stop_max) = retry(st.stop_retry);
    let (end_min, end_max) = retry(st.end_retry);
    let mut out: Vec<(&str, Value)> = vec![
        ("storm", json!(true)),
        ("storm_failed", json!(st.failed)),
        ("id_base", json!(st.id_base)),
        ("stop_ms", r3(st.ms(st.t_term_ns, st.t_gone_ns))),
        ("stop_streams_retry", json!(st.stop_retry.0)),
        ("stop_retry_min_ms", stop_min),
        ("stop_retry_max_ms", stop_max),
        ("new_server_pid", json!(st.new_pid)),
        ("first_back_ms", r3(back.first().copied())),
        ("back_p50_ms", r3(quantile(&back, 0.5))),
        ("back_all_ms", r3(back_all)),
        ("not_back", json!(not_back)),
        ("whole_p50_ms", r3(quantile(&whole, 0.5))),
        ("whole_p99_ms", r3(quantile(&whole, 0.99))),
        ("whole_all_ms", r3(whole_all)),
        ("not_whole", json!(not_whole)),
        ("whole_timeout", json!(st.whole_timeout)),
        ("whole_within_5s", json!(whole_all.map(|w| w <= 5000.0))),
        ("reconnections", json!(backs)),
        ("reconnects_scheduled", json!(r.c.reconnects)),
        ("reconnect_failures", json!(r.c.reconnect_failures)),
        ("lost", json!(lost)),
        ("streams_lost", json!(streams_lost)),
        ("dup_ids", json!(r.c.dup_ids)),
        ("bad_ids", json!(r.c.bad_ids)),
        ("unacked_received", json!(unacked_received)),
        ("replayed", json!(r.c.replayed)),
        ("window_ms", r3(window_ms)),
        ("window_deliveries", json!(st.deliveries_window)),
        ("window_replayed", json!(st.replayed_window)),
        (
            "restart_cpu_ms",
            cpu_us.map(|u| json!(u / 1000.0)).unwrap_or(Value::Null),
        ),
        (
            "restart_cpu_ms_sched",
            sched_us
                .map(|u| json!((u / 10.0).round() / 100.0))
                .unwrap_or(Value::Null),
        ),
        ("restart_us_per_reconnect", per(cpu_us)),
        ("restart_us_per_reconnect_sched", per(sched_us)),
        (
            "pre_us_per_delivery",
            pre_us_per_delivery
                .map(|u| json!((u * 1000.0).round() / 1000.0))
                .unwrap_or(Value::Null),
        ),
        ("window_live_deliveries", json!(live_window)),
        ("window_loadgen_cpu_pct", json!(self_pct)),
        ("window_listen_overflows", listen(0)),
        ("window_syn_retrans", listen(2)),
        ("late_p50_ms", r3(quantile(&late, 0.5))),
        ("late_p99_ms", r3(quantile(&late, 0.99))),
        ("late_max_ms", r3(late.last().copied())),
        ("catchup_p99_ms", r3(quantile(&catchup, 0.99))),
        ("catchup_max_ms", r3(catchup.last().copied())),
        ("restart_rss_kb_whole", json!(st.s1.map(|s| s.rss_kb))),
        ("restart_rss_kb_end", json!(st.s_end.map(|s| s.rss_kb))),
        (
            "restart_peak_rss_kb",
            json!(st.s_end.or(st.s1).map(|s| s.hwm_kb)),
        ),
        ("storm_drained", json!(st.drained)),
        ("pub_skipped", json!(r.c.pub_skipped)),
        ("pub_reconnects", json!(r.c.pub_reconnects)),
        ("new_server_alive_at_end", json!(st.new_alive_at_end)),
        ("new_server_exit", json!(st.new_exit)),
        ("new_server_stop_ms", r3(st.new_stop_ms)),
        ("end_streams_retry", json!(st.end_retry.0)),
        ("end_retry_min_ms", end_min),
        ("end_retry_max_ms", end_max),
    ];
    out.push(("rehellos", json!(r.c.rehellos)));
    out.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_states() {
        assert_eq!(
            proc_state("42 (ss (h) ub) S 1 42 42 0 -1 4194560"),
            Some('S')
        );
        assert_eq!(proc_state("42 (ssehub) Z 1 42"), Some('Z'));
        assert_eq!(proc_state("garbage"), None);
        assert!(!process_gone(std::process::id()));
        assert!(process_gone(0x3fff_fff0));
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.99), Some(4.0));
    }
}

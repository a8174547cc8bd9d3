//! A host serving one gate's Prometheus exposition at `/metrics`, through the C ABI as a C host
//! would call it (`pgate_metrics_prometheus` with a caller-owned buffer). Used by
//! `tests/prometheus/test.sh`, which points a real Prometheus at it.
//!
//! ```text
//! metrics_server --print              print the exposition of a gate with some traffic
//! metrics_server PORT_FILE            serve on 127.0.0.1 (a free port, written to PORT_FILE):
//!   GET /metrics   the exposition
//!   GET /fail      fail canary requests until the gate rolls back by itself
//! ```
//!
//! The gate is `prometheus-test`, a canary at 100 % with automatic rollback.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::ptr::{null, null_mut};

use promotion_gates_ffi::*;

const CONFIG: &str = r#"{"gate": "prometheus-test", "environment": {"canary": {"traffic_percent": 100}}, "auto_rollback_enabled": true}"#;

/// The gate, made through the C ABI.
struct Gate(*mut pgate_gate);

impl Gate {
    fn new() -> Result<Self, String> {
        let mut gate = null_mut();
        // SAFETY: CONFIG is a live slice; gate is a valid out-pointer; err may be NULL.
        let status = unsafe {
            pgate_gate_new(
                CONFIG.as_ptr(),
                CONFIG.len(),
                null(),
                0,
                &mut gate,
                null_mut(),
            )
        };
        ok(status).map(|()| Gate(gate))
    }

    /// The exposition, read as a C host reads it: the length first, then the text.
    fn exposition(&self) -> Result<String, String> {
        let mut len = 0;
        // SAFETY: live gate; NULL buffer of capacity 0 asks only for the length.
        let status = unsafe { pgate_metrics_prometheus(self.0, null_mut(), 0, &mut len) };
        if status != pgate_status::BufferTooSmall {
            return Err(format!("length query: {status:?}"));
        }
        // Slack: the text may grow between the two calls.
        let mut buf = vec![0u8; len + 4096];
        // SAFETY: live gate; buf is valid for buf.len() bytes; len is a valid out-pointer.
        let status = unsafe {
            pgate_metrics_prometheus(self.0, buf.as_mut_ptr().cast(), buf.len(), &mut len)
        };
        ok(status)?;
        buf.truncate(len);
        String::from_utf8(buf).map_err(|e| e.to_string())
    }

    /// Records one request's outcome, routed by `id`.
    fn record(&self, id: &str, success: bool, latency_ns: u64) -> Result<(), String> {
        // SAFETY: live gate and id slice; recorded may be NULL.
        let status = unsafe {
            pgate_record_by_id(
                self.0,
                id.as_ptr(),
                id.len(),
                success,
                latency_ns,
                null_mut(),
            )
        };
        ok(status)
    }

    fn environment(&self) -> Result<pgate_environment, String> {
        let (mut environment, mut traffic_percent, mut stage) =
            (pgate_environment::Production, 0.0, 0);
        // SAFETY: live gate; the three outputs are valid for writes.
        ok(unsafe { pgate_state(self.0, &mut environment, &mut traffic_percent, &mut stage) })?;
        Ok(environment)
    }

    /// Fails canary requests until the judge rolls the canary back.
    fn fail_until_rollback(&self) -> Result<(), String> {
        for i in 0..1000 {
            if self.environment()? == pgate_environment::Production {
                return Ok(());
            }
            self.record(&format!("failing-{i}"), false, 5_000_000)?;
        }
        Err("no rollback after 1000 failures".into())
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // SAFETY: the gate is live and no call is in flight.
        let _ = unsafe { pgate_gate_free(self.0) };
    }
}

fn ok(status: pgate_status) -> Result<(), String> {
    match status {
        pgate_status::Ok => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

fn serve(gate: &Gate, mut stream: TcpStream) -> Result<(), String> {
    let mut request_line = String::new();
    BufReader::new(&stream)
        .read_line(&mut request_line)
        .map_err(|e| e.to_string())?;
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let (status, body) = match path {
        "/metrics" => ("200 OK", gate.exposition()?),
        "/fail" => (
            "200 OK",
            gate.fail_until_rollback()
                .map(|()| "rolled back\n".into())?,
        ),
        _ => ("404 Not Found", "not found\n".into()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())
}

fn main() -> Result<(), String> {
    let gate = Gate::new()?;
    for i in 0..200u64 {
        gate.record(&format!("user-{i}"), i % 40 != 0, (1 + i % 9) * 1_000_000)?;
    }
    let arg = std::env::args()
        .nth(1)
        .ok_or("usage: metrics_server --print | PORT_FILE")?;
    if arg == "--print" {
        print!("{}", gate.exposition()?);
        return Ok(());
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::fs::write(&arg, format!("{port}\n")).map_err(|e| e.to_string())?;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = serve(&gate, stream) {
                    eprintln!("metrics_server: {e}");
                }
            }
            Err(e) => eprintln!("metrics_server: accept: {e}"),
        }
    }
    Ok(())
}

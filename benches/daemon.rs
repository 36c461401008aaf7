//! Durable appends through the daemon: 64 concurrent clients over loopback, each sending
//! `POST /v1/entries` one after another; every 201 is an fsynced append (group commit).
//! Prints appends/s and p50/p99/max latency, the writer's batch sizes, and as a baseline the
//! rate of the same clients and server answering `GET /metrics` (no storage at all).
//!
//! Target (DESIGN §11): ≥ 20k appends/s, p99 ≤ 25 ms on a 2-core machine.
//! `DJAUDIT_BENCH_N` sets the number of appends (default 50 000).

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use djaudit::daemon::{self, auth, Config};
use djaudit::ledger::{Actor, Ledger};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const CLIENTS: u64 = 64;

/// Runs [`CLIENTS`] clients, each sending `per_client` requests made by `make(client, i)` one
/// after another; every answer must be a success. Returns each request's latency and the
/// wall time of the whole run.
async fn load<F>(per_client: u64, make: F) -> (Vec<Duration>, Duration)
where
    F: Fn(u64, u64) -> hyper::Request<Full<Bytes>> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let mut lat = Vec::with_capacity(per_client as usize);
            for i in 0..per_client {
                let req = make(c, i);
                let t = Instant::now();
                let resp = client.request(req).await.expect("response");
                let status = resp.status();
                let _ = resp.into_body().collect().await.expect("body");
                assert!(status.is_success(), "request refused: {status}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client"));
    }
    (lat, start.elapsed())
}

fn main() {
    let n = common::env_n(50_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let mut l = Ledger::init(&data, "bench.example/ledger", Actor::cli("bench")).expect("init");
    let token = auth::create(&mut l, "bench", None, false, Actor::cli("bench"))
        .expect("token")
        .token;
    drop(l);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let config = Config::from_toml(
            "[schedule.verify]\nevery = \"off\"\n[schedule.checkpoint]\nevery = \"off\"\n",
        )
        .expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(daemon::run(listener, config, data.clone(), async {
            let _ = stopped.await;
        }));
        // Wait until it serves.
        let probe = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        loop {
            let req = hyper::Request::get(format!("http://{addr}/v1/health"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            if let Ok(r) = probe.request(req).await {
                if r.status().is_success() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let token = Arc::new(token);
        let per_client = n.div_ceil(CLIENTS);
        let (mut lat, wall) = load(per_client, move |c, i| {
            let body =
                format!(r#"{{"kind":"bench.append","subject":"client/{c}","data":{{"i":{i}}}}}"#);
            hyper::Request::post(format!("http://{addr}/v1/entries"))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("request")
        })
        .await;
        lat.sort_unstable();
        let pct = |p: f64| {
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat.get(i).copied().unwrap_or_default()
        };
        let metrics = {
            let req = hyper::Request::get(format!("http://{addr}/metrics"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let r = probe.request(req).await.expect("metrics");
            String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes())
                .into_owned()
        };
        let batches = metrics
            .lines()
            .find_map(|l| l.strip_prefix("djaudit_writer_batches_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        println!(
            "daemon: {CLIENTS} clients, {} durable appends over loopback",
            lat.len()
        );
        println!(
            "  {:.0} appends/s (target >= 20000), wall {:.2}s",
            common::rate(lat.len() as u64, wall),
            wall.as_secs_f64()
        );
        println!(
            "  latency p50 {:.2} ms, p99 {:.2} ms (target <= 25 ms), max {:.2} ms",
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            pct(1.0).as_secs_f64() * 1e3
        );
        if batches > 0.0 {
            println!(
                "  {batches:.0} transactions, {:.1} appends per commit on average",
                lat.len() as f64 / batches
            );
        }
        // Baseline: the same clients and server answering `GET /metrics` (rendered from
        // memory: no token, no storage, no fsync) — what the HTTP round trip alone allows.
        let (base, base_wall) = load(per_client, move |_, _| {
            hyper::Request::get(format!("http://{addr}/metrics"))
                .body(Full::new(Bytes::new()))
                .expect("request")
        })
        .await;
        println!(
            "  baseline, same clients and server, GET /metrics (no storage): {:.0} requests/s",
            common::rate(base.len() as u64, base_wall)
        );
        let _ = stop.send(());
        let _ = server.await;
    });
}

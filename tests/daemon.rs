//! The daemon against a real server on 127.0.0.1: every error status for its cause,
//! decisions recorded for reads, service accounts acting for end users, graceful
//! shutdown, scheduled scans, and durability across SIGKILL (the real binary).
//!
//! The HTTP client is hyper-util's, the stack axum itself runs on; the 413 case writes raw
//! HTTP/1.1 so that it can send headers without ever sending the body.

mod util;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use djaudit::daemon::{self, auth, Config};
use djaudit::ledger::{Actor, Entry, Ledger};
use djaudit::records::import;
use djaudit::records::parse::ImportOptions;
use djaudit::records::RecordKind;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use util::TestDir;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Writes raw bytes on a new connection and returns the first answer read within 5 s
/// (empty if none came).
async fn raw_exchange(addr: SocketAddr, request: String) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        sock.write_all(request.as_bytes()).expect("write");
        let mut buf = vec![0u8; 4096];
        let n = sock.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("raw exchange")
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One response: status, content type, body text.
struct Resp {
    status: u16,
    content_type: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A GET without extra headers or body.
async fn get(c: &HttpClient, addr: SocketAddr, path: &str, token: Option<&str>) -> Resp {
    call(c, addr, "GET", path, token, &[], None).await
}

async fn call(
    c: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .expect("request");
    let resp = c.request(req).await.expect("http request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A ledger with the policy fixture tree imported (C1 > G1 > {B1, B2}, two members, five
/// users) and tokens for its users.
struct Fixture {
    dir: TestDir,
    /// user → bearer token
    tokens: std::collections::BTreeMap<&'static str, String>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TestDir::new();
        dir.init();
        let mut l = Ledger::open(&dir.data()).expect("open");
        let files = [
            (
                RecordKind::Org,
                "orgs.csv",
                "org_id,name,kind,parent_id\nC1,C1,committee,\nG1,G1,general_branch,C1\nB1,B1,branch,G1\nB2,B2,branch,G1\n",
            ),
            (
                RecordKind::Member,
                "members.csv",
                "member_id,name,org_id,phone,id_number\nM1,Zhang,B1,13900000001,230102199001011234\nM3,Li,B2,13900000003,\n",
            ),
            (
                RecordKind::User,
                "users.csv",
                "user_id,role,org_id\ndept-c1,org_dept,C1\nprov-b1,provider,B1\nprov-b2,provider,B2\naud,auditor,\nsvc,sysadmin,\n",
            ),
        ];
        for (kind, name, text) in files {
            let path = dir.write(name, text);
            import::import(
                &mut l,
                kind,
                &path,
                ImportOptions::default(),
                &Actor::cli("ops"),
                &mut |_| {},
            )
            .expect("import fixture");
        }
        let mut tokens = std::collections::BTreeMap::new();
        for (user, service) in [
            ("dept-c1", false),
            ("prov-b1", false),
            ("prov-b2", false),
            ("aud", false),
            ("svc", true),
        ] {
            let t = auth::create(&mut l, user, None, service, Actor::cli("ops")).expect("token");
            tokens.insert(user, t.token);
        }
        Fixture { dir, tokens }
    }

    fn token(&self, user: &str) -> &str {
        self.tokens.get(user).map(String::as_str).expect("token")
    }

    fn ledger(&self) -> Ledger {
        Ledger::open(&self.dir.data()).expect("open")
    }

    fn entries(&self) -> Vec<Entry> {
        let l = self.ledger();
        let mut out = Vec::new();
        l.for_each_entry(0, None, |s| {
            out.push(Entry::parse(s.body.as_bytes()).expect("entry"));
            Ok(())
        })
        .expect("entries");
        out
    }
}

/// A server running in this process.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

impl Server {
    async fn start(data: &Path, config: &str) -> Server {
        let config = Config::from_toml(config).expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run(listener, config, data.to_owned(), async {
            let _ = rx.await;
        }));
        // Ready when it answers (startup opens the ledger before it serves).
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&c, addr, "/v1/health", None).await.status != 200 {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let r = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops in time")
            .expect("server task");
        r.expect("server ends cleanly");
    }
}

const QUIET: &str = "[schedule.verify]\nevery = \"off\"\n[schedule.checkpoint]\nevery = \"off\"\n";

/// A token revoked while the daemon runs is refused: at once with `token_cache = "off"`, and
/// within the cache's lifetime (not before it has been used from the cache) otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_refused_within_the_token_cache_lifetime() {
    let f = Fixture::new();
    let c = client();
    for (cache, lifetime) in [("off", Duration::ZERO), ("2s", Duration::from_secs(2))] {
        let s = Server::start(
            &f.dir.data(),
            &format!("token_cache = \"{cache}\"\n{QUIET}"),
        )
        .await;
        let t = {
            let mut l = f.ledger();
            auth::create(&mut l, "aud", None, false, Actor::cli("ops")).unwrap()
        };
        assert_eq!(
            get(&c, s.addr, "/v1/checkpoint", Some(&t.token))
                .await
                .status,
            200
        );
        let revoked = {
            let mut l = f.ledger();
            auth::revoke(&mut l, t.info.id, Actor::cli("ops")).unwrap();
            Instant::now()
        };
        let mut answers = Vec::new();
        loop {
            let r = get(&c, s.addr, "/v1/checkpoint", Some(&t.token)).await;
            answers.push(r.status);
            if r.status == 401 {
                assert!(r.json()["detail"].as_str().unwrap().ends_with("is revoked"));
                break;
            }
            assert_eq!(r.status, 200, "{cache}: {}", r.body);
            assert!(
                revoked.elapsed() < lifetime + Duration::from_secs(1),
                "{cache}: still accepted {:?} after revocation",
                revoked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if cache == "off" {
            assert_eq!(
                answers,
                [401],
                "without a cache the next request is refused"
            );
        } else {
            // The cache answered for a while: the lifetime is honoured both ways.
            assert!(answers.len() > 1, "{cache}: {answers:?}");
        }
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_status_for_its_cause() {
    let f = Fixture::new();
    let s = Server::start(&f.dir.data(), QUIET).await;
    let c = client();
    let a = s.addr;
    let entry = r#"{"kind":"note.added","subject":"case/1","data":{"text":"hello"}}"#;

    // 401: no token, a wrong token, a revoked token.
    let r = call(&c, a, "POST", "/v1/entries", None, &[], Some(entry)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unauthorized");
    assert_eq!(r.json()["detail"], "missing bearer token");
    let r = call(
        &c,
        a,
        "POST",
        "/v1/entries",
        Some("not-a-token"),
        &[],
        Some(entry),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["detail"].clone()),
        (401, json!("unknown token"))
    );
    {
        let mut l = f.ledger();
        let t = auth::create(&mut l, "aud", None, false, Actor::cli("ops")).unwrap();
        auth::revoke(&mut l, t.info.id, Actor::cli("ops")).unwrap();
        let r = get(&c, a, "/v1/checkpoint", Some(&t.token)).await;
        assert_eq!(r.status, 401);
        assert!(r.json()["detail"].as_str().unwrap().ends_with("is revoked"));
    }

    // 400: malformed JSON, a missing field, a reserved kind, a bad kind, bad query values.
    let tok = f.token("prov-b1");
    for (body, want) in [
        ("{\"kind\":", "truncated JSON"),
        (
            r#"{"kind":"note.added","subject":"s"}"#,
            "missing field `data`",
        ),
        (
            r#"{"kind":"member.update","subject":"member/M1","data":{}}"#,
            "is written by djaudit itself",
        ),
        (
            r#"{"kind":"Note","subject":"s","data":{}}"#,
            "invalid kind `Note`",
        ),
        (
            r#"{"kind":"note.added","subject":"s","data":[1]}"#,
            "must be a JSON object",
        ),
    ] {
        let r = call(&c, a, "POST", "/v1/entries", Some(tok), &[], Some(body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["error"], "malformed");
        assert!(
            r.json()["detail"].as_str().unwrap().contains(want),
            "{}",
            r.body
        );
    }
    let r = get(&c, a, "/v1/proof/inclusion?seq=x", Some(tok)).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("malformed"))
    );
    let r = get(&c, a, "/v1/log?limit=0", Some(f.token("aud"))).await;
    assert_eq!(r.status, 400);

    // 201: a free entry; its actor is the token's user, via the API.
    let r = call(&c, a, "POST", "/v1/entries", Some(tok), &[], Some(entry)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let seq = r.json()["seq"].as_u64().unwrap();

    // 403: an end user the policy refuses; the refusal is recorded.
    let before = f.entries().len();
    let r = get(&c, a, "/v1/log", Some(tok)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "forbidden");
    let after = f.entries();
    assert_eq!(after.len(), before + 1);
    let d = after.last().unwrap();
    assert_eq!(d.kind, "access.decision");
    assert_eq!(d.actor.user, "prov-b1");
    assert_eq!(d.data["decision"], "deny");
    assert_eq!(d.data["action"], "read");
    assert_eq!(d.subject, "ledger");
    // 403: a token that is not a service token cannot act for someone else.
    let r = call(
        &c,
        a,
        "GET",
        "/v1/checkpoint",
        Some(tok),
        &[("x-on-behalf-of", "dept-c1")],
        None,
    )
    .await;
    assert_eq!(r.status, 403);

    // 404: unknown seq, unknown record, unknown endpoint, unknown record kind.
    let r = get(&c, a, "/v1/proof/inclusion?seq=99999", Some(tok)).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("not_found"))
    );
    let r = get(&c, a, "/v1/records/member/M404", Some(tok)).await;
    assert_eq!(r.status, 404);
    let r = get(&c, a, "/v2/nothing", Some(tok)).await;
    assert_eq!(r.status, 404);
    let r = get(&c, a, "/v1/records/cats/1", Some(tok)).await;
    assert_eq!(r.status, 404);

    // The auditor reads the log; the free entry is there.
    let r = get(
        &c,
        a,
        "/v1/log?kind=note.added&limit=10",
        Some(f.token("aud")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["entries"][0]["seq"], json!(seq));
    assert_eq!(
        v["entries"][0]["actor"],
        json!({"user": "prov-b1", "via": "api"})
    );
    assert_eq!(v["next"], Value::Null);

    // Metrics count the statuses.
    let r = get(&c, a, "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/plain"));
    for want in [
        "djaudit_http_requests_total{status=\"401\"} 3",
        "djaudit_http_requests_total{status=\"403\"} 2",
        "djaudit_http_requests_total{status=\"201\"} 1",
        "djaudit_ledger_appends_total ",
    ] {
        assert!(r.body.contains(want), "{want} not in\n{}", r.body);
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_read_as_the_caller_and_every_read_is_recorded() {
    let f = Fixture::new();
    let s = Server::start(&f.dir.data(), QUIET).await;
    let c = client();
    let a = s.addr;

    // The provider of B1 reads M1, masked: it may read but not read_sensitive.
    let r = get(&c, a, "/v1/records/member/M1", Some(f.token("prov-b1"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["masked"], true);
    assert_eq!(v["record"]["phone"], "139****0001");
    assert_eq!(v["record"]["id_number"], "2301**********1234");
    assert_eq!(v["record"]["name"], "Zhang");
    assert!(!r.body.contains("13900000001"));
    let es = f.entries();
    let n = es.len();
    assert_eq!(
        (
            es[n - 2].data["action"].clone(),
            es[n - 2].data["decision"].clone()
        ),
        (json!("read_sensitive"), json!("deny"))
    );
    assert_eq!(
        (
            es[n - 1].data["action"].clone(),
            es[n - 1].data["decision"].clone()
        ),
        (json!("read"), json!("allow"))
    );
    assert_eq!(es[n - 1].data["request"], "GET /v1/records/member/M1");
    // Masked: the read shows no sensitive field.
    assert_eq!(es[n - 1].data.get("fields"), None);
    assert_eq!(v["decision_seq"], json!(es[n - 1].seq));

    // The organisation department reads it unmasked.
    let r = get(&c, a, "/v1/records/member/M1", Some(f.token("dept-c1"))).await;
    assert_eq!(r.json()["masked"], false);
    assert_eq!(r.json()["record"]["phone"], "13900000001");
    // The read's decision names the sensitive fields it showed, never their values.
    let read = f.entries().pop().unwrap();
    assert_eq!(read.data["fields"], json!(["id_number", "phone"]));
    assert!(!serde_json::to_string(&read)
        .unwrap()
        .contains("13900000001"));

    // The provider of B2 may not read it: 403, the denial recorded, nothing of the record.
    let r = get(&c, a, "/v1/records/member/M1", Some(f.token("prov-b2"))).await;
    assert_eq!(r.status, 403);
    assert!(
        !r.body.contains("Zhang") && !r.body.contains("139"),
        "{}",
        r.body
    );
    let last = f.entries().pop().unwrap();
    assert_eq!(
        (last.actor.user.as_str(), last.data["decision"].as_str()),
        ("prov-b2", Some("deny"))
    );

    // A service account acting for an end user: the end user is judged, both recorded.
    let svc = f.token("svc");
    let r = call(
        &c,
        a,
        "GET",
        "/v1/records/member/M3",
        Some(svc),
        &[("x-on-behalf-of", "dept-c1")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let last = f.entries().pop().unwrap();
    assert_eq!(
        last.actor,
        Actor {
            user: "dept-c1".into(),
            via: "api".into(),
            os_user: None,
            service: Some("svc".into())
        }
    );
    // The service account itself (a sysadmin) may not read member data.
    let r = get(&c, a, "/v1/records/member/M3", Some(svc)).await;
    assert_eq!(r.status, 403);
    // Acting for an unknown user: refused and recorded with the reason.
    let r = call(
        &c,
        a,
        "GET",
        "/v1/records/member/M3",
        Some(svc),
        &[("x-on-behalf-of", "ghost")],
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("unknown user"));

    // access/check: decided and recorded, 200 either way.
    let body = r#"{"action":"update","resource":"member/M1"}"#;
    let r = call(
        &c,
        a,
        "POST",
        "/v1/access/check",
        Some(f.token("prov-b1")),
        &[],
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["allowed"], true);
    assert_eq!(
        r.json()["policy_ids"],
        json!(["provider.own_branch_members"])
    );
    let r = call(
        &c,
        a,
        "POST",
        "/v1/access/check",
        Some(f.token("prov-b2")),
        &[],
        Some(body),
    )
    .await;
    assert_eq!(r.json()["allowed"], false);
    let seq = r.json()["seq"].as_u64().unwrap();
    assert_eq!(f.entries()[seq as usize].kind, "access.decision");
    let r = call(
        &c,
        a,
        "POST",
        "/v1/access/check",
        Some(f.token("prov-b2")),
        &[],
        Some(r#"{"action":"fly","resource":"member/M1"}"#),
    )
    .await;
    assert_eq!(r.status, 400);

    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_changes_are_decided_recorded_and_projected() {
    let f = Fixture::new();
    let s = Server::start(&f.dir.data(), QUIET).await;
    let c = client();
    let a = s.addr;
    let prov = f.token("prov-b1");

    // The provider of B1 creates a member of B1: its decision and the create entry.
    let m5 = r#"{"op":"create","record":{"member_id":"M5","name":"Wang","org_id":"B1","phone":"13900000005"}}"#;
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/members",
        Some(prov),
        &[],
        Some(m5),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["results"][0]["subject"], "member/M5");
    assert_eq!(v["results"][0]["result"], "created");
    let created = v["results"][0]["seq"].as_u64().unwrap();
    let es = f.entries();
    assert_eq!(es[created as usize].kind, "member.create");
    assert_eq!(es[created as usize - 1].data["decision"], "allow");
    assert_eq!(es[created as usize - 1].data["action"], "create");

    // Creating it again: 409, nothing written.
    let size = f.ledger().size().unwrap();
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(prov),
        &[],
        Some(m5),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (409, json!("conflict"))
    );
    // A stale `expect_seq`: 409.
    let stale = r#"{"record":{"member_id":"M5","name":"Wang","org_id":"B1","phone":"13900000009"},"expect_seq":1}"#;
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(prov),
        &[],
        Some(stale),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // An invalid record: 400, and the detail does not echo the value.
    let bad = r#"{"record":{"member_id":"M6","gender":"13900000006"}}"#;
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(prov),
        &[],
        Some(bad),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.body.contains("13900000006"), "{}", r.body);
    // Removing what does not exist: 404.
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(prov),
        &[],
        Some(r#"{"op":"remove","id":"M404"}"#),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        f.ledger().size().unwrap(),
        size,
        "refused requests wrote nothing"
    );

    // An update with the right `expect_seq`; sending the same again changes nothing.
    let upd = format!(
        r#"{{"record":{{"member_id":"M5","name":"Wang","org_id":"B1","phone":"13900000009"}},"expect_seq":{created}}}"#
    );
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(prov),
        &[],
        Some(&upd),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["results"][0]["result"], "updated");
    let updated = r.json()["results"][0]["seq"].as_u64().unwrap();
    let e = &f.entries()[updated as usize];
    assert_eq!(e.kind, "member.update");
    assert_eq!(e.actor.user, "prov-b1");
    let again =
        r#"{"record":{"member_id":"M5","name":"Wang","org_id":"B1","phone":"13900000009"}}"#;
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(prov),
        &[],
        Some(again),
    )
    .await;
    assert_eq!(r.json()["results"][0]["result"], "unchanged");

    // A denied change leaves only its access.decision entry.
    let size = f.ledger().size().unwrap();
    let hijack =
        r#"{"record":{"member_id":"M1","name":"Zhang","org_id":"B1","phone":"13911111111"}}"#;
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(f.token("prov-b2")),
        &[],
        Some(hijack),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let es = f.entries();
    assert_eq!(es.len() as u64, size + 1);
    let last = es.last().unwrap();
    assert_eq!(last.kind, "access.decision");
    assert_eq!(
        (
            last.data["action"].as_str(),
            last.data["decision"].as_str(),
            last.subject.as_str()
        ),
        (Some("update"), Some("deny"), "member/M1")
    );
    let r = get(&c, a, "/v1/records/member/M1", Some(f.token("dept-c1"))).await;
    assert_eq!(r.json()["record"]["phone"], "13900000001");

    // A batch with one refused change writes none of its changes, only the decisions.
    let size = f.ledger().size().unwrap();
    let batch = r#"{"batch":[
        {"record":{"member_id":"M5","name":"Wang Wu","org_id":"B1"}},
        {"op":"create","record":{"member_id":"M7","org_id":"B2"}}]}"#;
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(prov),
        &[],
        Some(batch),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let es = f.entries();
    assert_eq!(es.len() as u64, size + 2);
    assert!(es[size as usize..]
        .iter()
        .all(|e| e.kind == "access.decision"));
    // A batch that is allowed: all of it.
    let batch = r#"{"batch":[
        {"record":{"member_id":"M5","name":"Wang Wu","org_id":"B1"}},
        {"op":"create","record":{"member_id":"M8","org_id":"B1"}}]}"#;
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(prov),
        &[],
        Some(batch),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let results: Vec<Value> = r.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["result"].clone())
        .collect();
    assert_eq!(results, ["updated", "created"]);
    // The department removes a member of its subtree.
    let r = call(
        &c,
        a,
        "POST",
        "/v1/records/member",
        Some(f.token("dept-c1")),
        &[],
        Some(r#"{"op":"remove","id":"M8"}"#),
    )
    .await;
    assert_eq!(r.json()["results"][0]["result"], "removed", "{}", r.body);

    s.shutdown().await;
    // The projection is exactly what the ledger says.
    f.dir.cmd(&["verify", "--replay"]).assert().success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_and_checkpoints_verify_offline() {
    let f = Fixture::new();
    let s = Server::start(&f.dir.data(), QUIET).await;
    let c = client();
    let a = s.addr;
    let tok = f.token("aud");
    for i in 0..5 {
        let body = format!(r#"{{"kind":"note.added","subject":"case/{i}","data":{{}}}}"#);
        assert_eq!(
            call(&c, a, "POST", "/v1/entries", Some(tok), &[], Some(&body))
                .await
                .status,
            201
        );
    }
    let size = f.ledger().size().unwrap();
    let r = get(
        &c,
        a,
        &format!("/v1/proof/inclusion?seq=3&size={size}"),
        Some(tok),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p = djaudit::ledger::proof::Proof::parse(&r.body).expect("inclusion proof parses");
    assert!(p.verify());
    let r = get(
        &c,
        a,
        &format!("/v1/proof/consistency?old=2&new={size}"),
        Some(tok),
    )
    .await;
    let p = djaudit::ledger::proof::Proof::parse(&r.body).expect("consistency proof parses");
    assert!(p.verify());
    let r = get(&c, a, "/v1/proof/consistency?old=0", Some(tok)).await;
    assert_eq!(r.status, 400);
    let r = get(&c, a, "/v1/checkpoint", Some(tok)).await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/plain"));
    assert!(r.body.starts_with("test.example/ledger\n"), "{}", r.body);
    s.shutdown().await;
    // The final checkpoint of the shutdown covers every entry.
    let l = f.ledger();
    assert_eq!(
        l.latest_checkpoint().unwrap().unwrap().size,
        l.size().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_413_from_content_length_without_reading_the_body() {
    let f = Fixture::new();
    let s = Server::start(&f.dir.data(), &format!("body_limit = 1024\n{QUIET}")).await;
    let size = f.ledger().size().unwrap();
    let head = format!(
        "POST /v1/entries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
        f.token("aud")
    );
    // No body is ever sent: an answer can only come from the header.
    let text = raw_exchange(s.addr, head).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#""error":"too_large""#), "{text}");
    // A chunked body over the limit (no Content-Length) is refused when it passes the limit.
    let chunk = "a".repeat(1500);
    let req = format!(
        "POST /v1/entries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        f.token("aud"),
        chunk.len()
    );
    let text = raw_exchange(s.addr, req).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#""error":"too_large""#), "{text}");
    assert_eq!(f.ledger().size().unwrap(), size, "nothing was appended");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_requests_and_finishes_those_in_flight() {
    let f = Fixture::new();
    let s = Server::start(&f.dir.data(), QUIET).await;
    let a = s.addr;
    let tok = f.token("aud").to_owned();
    // Another process holds the write lock, so the append below stays in flight.
    let blocker = rusqlite::Connection::open(f.dir.data().join("ledger.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let t2 = tok.clone();
    let pending = tokio::spawn(async move {
        let c = client();
        call(
            &c,
            a,
            "POST",
            "/v1/entries",
            Some(&t2),
            &[],
            Some(r#"{"kind":"note.added","subject":"late","data":{}}"#),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    let Server { stop, task, .. } = s;
    let _ = stop.unwrap().send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New requests are refused while the one in flight finishes.
    let c = client();
    let r = get(&c, a, "/v1/health", None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "shutting_down");
    blocker.execute_batch("COMMIT").unwrap();
    let r = pending.await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let seq = r.json()["seq"].as_u64().unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let l = f.ledger();
    assert_eq!(l.size().unwrap(), seq + 1);
    // The final checkpoint includes the last acknowledged entry.
    assert_eq!(l.latest_checkpoint().unwrap().unwrap().size, seq + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_verifies_and_checkpoints_and_reports_failures() {
    let f = Fixture::new();
    let config = "[schedule.verify]\nevery = \"200ms\"\n[schedule.checkpoint]\nevery = \"200ms\"\n[schedule.checks]\nevery = \"200ms\"\n";
    let s = Server::start(&f.dir.data(), config).await;
    let c = client();
    let a = s.addr;
    let body = r#"{"kind":"note.added","subject":"case/1","data":{}}"#;
    let r = call(
        &c,
        a,
        "POST",
        "/v1/entries",
        Some(f.token("aud")),
        &[],
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201);
    let note_seq = r.json()["seq"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = get(&c, a, "/v1/health", None).await.json();
        let v = &h["scans"]["verify"];
        let cp = &h["scans"]["checkpoint"];
        let ck = &h["scans"]["checks"];
        if v["last_ok"] == json!(true)
            && cp["last_ok"] == json!(true)
            && ck["last_ok"] == json!(true)
            && h["checkpoint_size"].as_u64() > Some(note_seq)
        {
            assert_eq!(h["status"], "ok");
            break;
        }
        assert!(Instant::now() < deadline, "no scans ran: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verify = f
        .entries()
        .into_iter()
        .find(|e| e.kind == "scan.verify")
        .expect("scan.verify recorded");
    assert_eq!(verify.data["ok"], true);
    assert_eq!(verify.actor.user, "system");
    let checks = f
        .entries()
        .into_iter()
        .find(|e| e.kind == "scan.checks")
        .expect("scan.checks recorded");
    assert_eq!(checks.actor.via, "scheduler");
    assert!(checks.data["findings_sha256"]
        .as_str()
        .is_some_and(|h| h.len() == 64));

    // Tamper with an entry behind the triggers' back: the next verify fails, and says so.
    {
        let db = rusqlite::Connection::open(f.dir.data().join("ledger.db")).unwrap();
        db.execute_batch(
            "DROP TRIGGER entry_no_update;
             UPDATE entry SET body = replace(body, 'ops', 'eve') WHERE seq = 1;",
        )
        .unwrap();
    }
    loop {
        let h = get(&c, a, "/v1/health", None).await.json();
        if h["status"] == "failing" {
            assert_eq!(h["scans"]["verify"]["last_ok"], false);
            assert!(
                h["scans"]["verify"]["last_message"]
                    .as_str()
                    .unwrap()
                    .contains("FAILED at seq 1"),
                "{h}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "verify did not fail: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = get(&c, a, "/metrics", None).await.body;
    assert!(m.contains("djaudit_scan_last_ok{scan=\"verify\"} 0"), "{m}");
    assert!(
        !m.contains("djaudit_scan_failures_total{scan=\"verify\"} 0"),
        "{m}"
    );
    let failed = f
        .entries()
        .into_iter()
        .rev()
        .find(|e| e.kind == "scan.verify")
        .unwrap();
    assert_eq!(failed.data["ok"], false);
    assert_eq!(failed.data["failure"]["seq"], 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_reconciles_the_drop_folder() {
    let f = Fixture::new();
    let drop = f.dir.path().join("drop");
    std::fs::create_dir(&drop).unwrap();
    // The source system changed M3's phone without telling djaudit.
    std::fs::write(
        drop.join("members.csv"),
        "member_id,name,org_id,phone\nM1,Zhang,B1,13900000001\nM3,Li,B2,13900000099\n",
    )
    .unwrap();
    std::fs::write(drop.join("notes.txt"), "left alone").unwrap();
    // A snapshot exported without its header row: its first row reads as the header, and
    // nothing of it may reach the log, the metrics or the unauthenticated health endpoint.
    std::fs::write(
        drop.join("users.csv"),
        "u-9,13900000077,abc\"def,member\nu-8,13900000066,x,member\n",
    )
    .unwrap();
    let config = format!(
        "[schedule.verify]\nevery = \"off\"\n[schedule.checkpoint]\nevery = \"off\"\n[schedule.reconcile]\nevery = \"200ms\"\ndir = \"{}\"\n",
        drop.display()
    );
    let s = Server::start(&f.dir.data(), &config).await;
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    let h = loop {
        let h = call(&c, s.addr, "GET", "/v1/health", None, &[], None)
            .await
            .json();
        if h["scans"]["reconcile"]["runs"].as_u64() >= Some(1) {
            break h;
        }
        assert!(Instant::now() < deadline, "reconcile did not run: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(h["status"], "failing");
    let msg = h["scans"]["reconcile"]["last_message"].as_str().unwrap();
    assert!(
        msg.starts_with("members.csv: 0 added, 0 missing, 1 changed"),
        "{msg}"
    );
    assert!(!msg.contains("13900000099"));
    assert!(msg.contains("; users.csv: "), "{msg}");
    assert!(msg.contains("bad rows"), "{msg}");
    for value in ["13900000077", "u-9", "abc"] {
        assert!(!msg.contains(value), "{msg}");
    }
    assert_eq!(std::fs::read_dir(drop.join("failed")).unwrap().count(), 1);
    let rec = f
        .entries()
        .into_iter()
        .find(|e| e.kind == "scan.reconcile")
        .expect("scan.reconcile recorded");
    assert_eq!(rec.actor.user, "system");
    assert!(!drop.join("members.csv").exists());
    assert_eq!(std::fs::read_dir(drop.join("done")).unwrap().count(), 1);
    assert!(drop.join("notes.txt").exists());
    s.shutdown().await;
}

/// The real binary, serving on a port it chose, with its stderr read for the address.
struct Process {
    child: Child,
    addr: SocketAddr,
}

fn spawn_server(dir: &TestDir) -> Process {
    let cfg = dir.write(
        "djaudit.toml",
        &format!("listen = \"127.0.0.1:0\"\n{QUIET}"),
    );
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("djaudit"))
        .arg("--data")
        .arg(dir.data())
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .env_remove("DJAUDIT_DATA")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn djaudit serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server announces its address")
        .parse()
        .expect("address");
    Process { child, addr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_append_survives_sigkill() {
    let f = Fixture::new();
    let mut p = spawn_server(&f.dir);
    let addr = p.addr;
    let tok = f.token("aud").to_owned();
    let mut clients = Vec::new();
    for client_no in 0..16u32 {
        let tok = tok.clone();
        clients.push(tokio::spawn(async move {
            let c = client();
            let mut acked = Vec::new();
            // Bounded: at most 2000 requests each, and the first error (the kill) ends it.
            for i in 0..2000u32 {
                let subject = format!("c{client_no}/{i}");
                let body =
                    format!(r#"{{"kind":"note.added","subject":"{subject}","data":{{"i":{i}}}}}"#);
                let req = hyper::Request::builder()
                    .method("POST")
                    .uri(format!("http://{addr}/v1/entries"))
                    .header("authorization", format!("Bearer {tok}"))
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let Ok(resp) = c.request(req).await else {
                    break;
                };
                if resp.status().as_u16() != 201 {
                    break;
                }
                let Ok(b) = resp.into_body().collect().await else {
                    break;
                };
                let v: Value = serde_json::from_slice(&b.to_bytes()).unwrap();
                acked.push((v["seq"].as_u64().unwrap(), subject));
            }
            acked
        }));
    }
    // Let appends flow, then kill the server mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.child.kill().expect("SIGKILL");
    let _ = p.child.wait();
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.unwrap());
    }
    assert!(
        acked.len() > 50,
        "only {} appends acknowledged",
        acked.len()
    );

    // Every acknowledged append is there, at the seq it was acknowledged with.
    let entries = f.entries();
    for (seq, subject) in &acked {
        let e = entries
            .get(*seq as usize)
            .unwrap_or_else(|| panic!("entry {seq} lost"));
        assert_eq!(&e.subject, subject, "entry {seq}");
    }
    f.dir.cmd(&["verify", "--replay"]).assert().success();

    // The server starts again on the same ledger and appends after the crash.
    let p2 = spawn_server(&f.dir);
    let c = client();
    let r = call(
        &c,
        p2.addr,
        "POST",
        "/v1/entries",
        Some(&tok),
        &[],
        Some(r#"{"kind":"note.added","subject":"after","data":{}}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut child = p2.child;
    // SIGTERM: a graceful stop with a final checkpoint.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let l = f.ledger();
    assert_eq!(
        l.latest_checkpoint().unwrap().unwrap().size,
        l.size().unwrap()
    );
    f.dir.cmd(&["verify"]).assert().success();
}

#[test]
fn config_example_is_printed_and_parses() {
    let dir = TestDir::new();
    let out = dir.cmd(&["config", "example"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
}

#[test]
fn token_commands_print_the_token_once_and_list_without_it() {
    let dir = TestDir::new();
    dir.init();
    let out = dir.run(&[
        "token",
        "create",
        "--user",
        "svc-portal",
        "--service",
        "--expires",
        "30",
    ]);
    assert!(out.status.success(), "{}", util::stderr(&out));
    let token = util::stdout(&out).trim().to_owned();
    assert_eq!(token.len(), 43);
    assert!(util::stderr(&out).contains("created token 1 for service account `svc-portal`"));
    let list = dir.run(&["token", "list", "--json"]);
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["user"], "svc-portal");
    assert_eq!(v[0]["service"], true);
    assert!(!util::stdout(&list).contains(&token));
    assert!(dir.run(&["token", "revoke", "1"]).status.success());
    let again = dir.run(&["token", "revoke", "1"]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        util::stderr(&again).trim(),
        "djaudit: token 1 is already revoked"
    );
    let export = dir.run(&["export"]);
    let text = util::stdout(&export);
    assert!(text.contains("\"kind\":\"token.create\""));
    assert!(text.contains("\"kind\":\"token.revoke\""));
    assert!(!text.contains(&token));
}

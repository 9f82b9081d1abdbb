//! `accord run` with a Kubernetes source, end to end, against a Kubernetes
//! API server emulator (tests/kube-emulator, one Python file) driven with
//! the real `kubectl`: CRDs and the bundled example manifests applied, rows
//! in the database, statuses and Events read back the way a kubectl user
//! reads them, pruning across a restart, no writes on a no-op sync, and a
//! follower taking over when the leader dies.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::controller::{eventually, Controller};
use common::db::{Backend, TestDb};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const EXAMPLES: usize = 6;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A running emulator; killed when dropped.
struct Cluster {
    child: Child,
    kubeconfig: PathBuf,
    requests: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        Self::start_with(dir, &[])
    }

    /// An emulator preloaded with the CRDs and `objects` (a JSON `List`).
    fn preloaded(dir: &Path, objects: &[Value]) -> Cluster {
        use kube::core::CustomResourceExt;
        let crds = serde_json::json!({"kind": "List", "items": [
            accord::source::kubernetes::resources::OrganizationResource::crd(),
            accord::source::kubernetes::resources::PermitResource::crd(),
            accord::source::kubernetes::resources::EnrollmentResource::crd(),
        ]});
        let crd_file = dir.join("crds.json");
        std::fs::write(&crd_file, crds.to_string()).expect("write");
        let mut namespaces: Vec<&str> = objects
            .iter()
            .filter_map(|o| o["metadata"]["namespace"].as_str())
            .filter(|n| *n != "default")
            .collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        let mut items: Vec<Value> = namespaces
            .into_iter()
            .map(|n| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
            .collect();
        items.extend(objects.iter().cloned());
        let object_file = dir.join("objects.json");
        let list = serde_json::json!({"kind": "List", "items": items});
        std::fs::write(&object_file, list.to_string()).expect("write");
        Self::start_with(dir, &[&crd_file, &object_file])
    }

    fn start_with(dir: &Path, preload: &[&Path]) -> Cluster {
        let kubeconfig = dir.join("kubeconfig");
        let requests = dir.join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg(repo_path("tests/kube-emulator/emulator.py"))
            .args(["--port", "0", "--bookmark-interval", "5"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--request-log")
            .arg(&requests)
            .args(preload.iter().flat_map(|p| [Path::new("--load"), p]))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the emulator");
        let mut port = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut port)
            .expect("the emulator prints its port");
        assert!(port.trim().parse::<u16>().is_ok(), "no port: {port:?}");
        let cluster = Cluster {
            child,
            kubeconfig,
            requests,
        };
        cluster.kubectl_ok(&["apply", "-f", repo_path("crds").to_str().expect("utf-8")]);
        cluster.kubectl_ok(&[
            "wait",
            "--for",
            "condition=established",
            "crd/permits.accord.dev",
            "crd/enrollments.accord.dev",
            "crd/organizations.accord.dev",
        ]);
        cluster
    }

    /// `kubectl apply -f examples/kubernetes/`: the bundled manifests.
    fn apply_examples(&self) {
        self.kubectl_ok(&[
            "apply",
            "-f",
            repo_path("examples/kubernetes").to_str().expect("utf-8"),
        ]);
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl(args);
        assert!(ok, "kubectl {args:?} failed: {stderr}");
        stdout
    }

    /// Every accord object in every namespace, as JSON.
    fn objects(&self) -> Vec<Value> {
        let text = self.kubectl_ok(&[
            "get",
            "organizations,permits,enrollments",
            "-A",
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&text).expect("json");
        list["items"].as_array().cloned().unwrap_or_default()
    }

    fn object(&self, kind: &str, name: &str) -> Value {
        let text = self.kubectl_ok(&["get", kind, name, "-o", "json"]);
        serde_json::from_str(&text).expect("json")
    }

    fn object_in(&self, kind: &str, name: &str, namespace: &str) -> Value {
        let text = self.kubectl_ok(&["get", kind, name, "-n", namespace, "-o", "json"]);
        serde_json::from_str(&text).expect("json")
    }

    /// Status writes accord made so far (server-side applies of `/status`).
    fn status_writes(&self) -> usize {
        std::fs::read_to_string(&self.requests)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| {
                r["method"] == "PATCH" && r["path"].as_str().is_some_and(|p| p.ends_with("/status"))
            })
            .count()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cell of `kubectl get`'s table in the row named `name` under
/// `column`, read by the header's column offsets (a cell may be blank).
fn cell(table: &str, name: &str, column: &str) -> String {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header[..i].ends_with("  ")))
        .map(|(i, _)| i)
        .collect();
    let index = starts
        .iter()
        .position(|&i| header[i..].split("  ").next() == Some(column))
        .unwrap_or_else(|| panic!("no {column} column:\n{table}"));
    let row = lines
        .find(|l| l.split_whitespace().any(|word| word == name))
        .unwrap_or_else(|| panic!("no row {name}:\n{table}"));
    let end = starts
        .get(index + 1)
        .copied()
        .unwrap_or(row.len())
        .min(row.len());
    row.get(starts[index].min(row.len())..end)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn condition(object: &Value, type_: &str) -> Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

fn synced(object: &Value) -> bool {
    condition(object, "Synced")["status"] == "True"
        && object["status"]["observedGeneration"] == object["metadata"]["generation"]
}

fn config(dir: &Path, cluster: &Cluster, database: &str, lease: &str) -> PathBuf {
    let path = dir.join("accord.yaml");
    let kubeconfig = cluster.kubeconfig.display();
    std::fs::write(
        &path,
        format!(
            "database: {database}
leaderElection:
  namespace: default
  leaseDuration: {lease}
  kubeconfig: {kubeconfig}
sources:
  - name: kubernetes
    kubernetes:
      kubeconfig: {kubeconfig}
    interval: 1h
"
        ),
    )
    .expect("config");
    path
}

async fn rows(url: &str) -> Vec<(String, String)> {
    let store = accord::store::AnyStore::connect(url).await.expect("store");
    let live = accord::store::Store::load(&store, None)
        .await
        .expect("load");
    let mut rows: Vec<(String, String)> = live
        .rows
        .iter()
        .filter(|(_, r)| r.managed_by.as_deref() == Some("kubernetes"))
        .map(|(k, _)| (k.kind.to_string(), k.id.to_string()))
        .collect();
    rows.sort();
    rows
}

const BOTH_SUBJECTS: &str = "apiVersion: accord.dev/v1alpha1
kind: Enrollment
metadata:
  name: both-subjects
  namespace: default
spec:
  role: payment-svc:processor
  userId: u-1
  contactId: someone@example.com
";

#[tokio::test]
async fn kubectl_users_see_their_objects_applied_with_status_and_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path());
    let db = TestDb::new(Backend::Sqlite).await;
    cluster.apply_examples();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, BOTH_SUBJECTS).expect("write");
    cluster.kubectl_ok(&["apply", "-f", bad.to_str().expect("utf-8")]);
    let config = config(dir.path(), &cluster, &db.url, "5s");
    let accord = Controller::start(dir.path(), &config).await;

    let settled = eventually(WAIT, || async {
        let objects = cluster.objects();
        objects.len() == EXAMPLES + 1
            && objects
                .iter()
                .filter(|o| o["metadata"]["name"] != "both-subjects")
                .all(synced)
            && condition(&cluster.object("enrollment", "both-subjects"), "Ready")["reason"]
                == "Invalid"
    })
    .await;
    assert!(
        settled,
        "objects not synced: {:#?}\n{}",
        cluster.objects(),
        accord.log_text()
    );

    // The database holds the six examples, owned by the Kubernetes source.
    let applied = rows(&db.url).await;
    assert_eq!(applied.len(), EXAMPLES, "{applied:?}");
    assert!(applied.contains(&("Enrollment".into(), "prod-admin".into())));

    // `kubectl get` shows the printer columns.
    let table = cluster.kubectl_ok(&["get", "permits"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "APP", "PERMISSION", "READY", "SYNCED", "AGE"] {
        assert!(header.contains(column), "{column} missing from {header}");
    }
    assert!(
        table.contains("order-service-payments") && table.contains("True"),
        "{table}"
    );

    // The invalid object says why (Synced) and that nothing of it is in
    // the database (Ready), on the object and in an Event.
    let both = cluster.object("enrollment", "both-subjects");
    let (ready, accepted) = (condition(&both, "Ready"), condition(&both, "Synced"));
    assert_eq!(
        (&ready["status"], &accepted["status"]),
        (&"False".into(), &"False".into())
    );
    assert!(
        accepted["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not both"),
        "{accepted}"
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not applied"),
        "{ready}"
    );
    let events: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "events", "-o", "json"])).expect("json");
    let source = accord.source("kubernetes").await;
    assert!(
        source["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1 object(s) rejected"),
        "{source:#}"
    );
    assert!(source["errors"][0]
        .as_str()
        .unwrap_or_default()
        .starts_with("default/Enrollment/both-subjects:"));
    let invalid = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["reason"] == "Invalid" && e["involvedObject"]["name"] == "both-subjects");
    assert!(invalid, "no Invalid event: {events:#}");

    // A sync with nothing new writes no status.
    let writes = cluster.status_writes();
    assert!(writes > EXAMPLES, "each object got its status ({writes})");
    let (code, _) = accord.post("/api/v1/sources/kubernetes/sync", None).await;
    assert_eq!(code, 200);
    accord.post("/api/v1/sources/kubernetes/sync", None).await;
    assert_eq!(
        cluster.status_writes(),
        writes,
        "a no-op sync made API writes"
    );

    // A spec edit is applied and the new generation observed.
    cluster.kubectl_ok(&[
        "patch",
        "permit",
        "order-service-payments",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"slugs":["order-service","refund-service"]}}"#,
    ]);
    let applied = eventually(WAIT, || async {
        let object = cluster.object("permit", "order-service-payments");
        object["metadata"]["generation"] == 2 && synced(&object)
    })
    .await;
    assert!(applied, "{}", accord.log_text());
    let (_, audit) = accord.get("/api/v1/audit?limit=5").await;
    assert!(
        audit.to_string().contains("refund-service"),
        "the update is audited: {audit:#}"
    );
    // The audit row names the object, its uid and who changed it.
    let uid = cluster.object("permit", "order-service-payments")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let update = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["action"] == "update" && e["id"] == "order-service-payments")
        .cloned()
        .expect("the update's audit row");
    // The version applied: accord's own status write comes after it.
    let origin = update["origin"].as_str().unwrap_or_default();
    assert!(
        origin.starts_with(&format!(
            "default/Permit/order-service-payments uid={uid} resourceVersion="
        )),
        "{update:#}"
    );
    assert_eq!(
        update["actor"], "kubectl-patch (field manager)",
        "{update:#}"
    );

    // A deleted object's row is pruned (one of seven is under the guard's 25 %).
    cluster.kubectl_ok(&["delete", "enrollment", "payment-processor"]);
    let pruned = eventually(WAIT, || async {
        !rows(&db.url)
            .await
            .contains(&("Enrollment".into(), "payment-processor".into()))
    })
    .await;
    assert!(pruned, "{}", accord.log_text());
}

#[tokio::test]
async fn an_object_deleted_while_accord_was_down_is_pruned_on_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path());
    let db = TestDb::new(Backend::Sqlite).await;
    cluster.apply_examples();
    let config = config(dir.path(), &cluster, &db.url, "3s");
    let mut accord = Controller::start(dir.path(), &config).await;
    let first = eventually(WAIT, || async { rows(&db.url).await.len() == EXAMPLES }).await;
    assert!(first, "{}", accord.log_text());
    assert!(accord.terminate().success());

    cluster.kubectl_ok(&["delete", "permit", "org-admins-add-members"]);
    let accord = Controller::start(dir.path(), &config).await;

    let pruned = eventually(WAIT, || async { rows(&db.url).await.len() == EXAMPLES - 1 }).await;
    assert!(pruned, "{}", accord.log_text());
    assert!(!rows(&db.url)
        .await
        .contains(&("Permit".into(), "org-admins-add-members".into())));
}

#[tokio::test]
async fn a_follower_takes_over_within_one_lease_period_when_the_leader_dies() {
    const LEASE: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path());
    let db = TestDb::new(Backend::Postgres).await;
    cluster.apply_examples();
    let config = config(dir.path(), &cluster, &db.url, "4s");
    let mut replicas = vec![
        Controller::start(dir.path(), &config).await,
        Controller::start(dir.path(), &config).await,
    ];
    let holder = || {
        let lease: Value = serde_json::from_str(&cluster.kubectl_ok(&[
            "get",
            "lease",
            "accord-leader",
            "-o",
            "json",
        ]))
        .unwrap_or(Value::Null);
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    };
    let elected = eventually(WAIT, || async {
        holder().is_some() && rows(&db.url).await.len() == EXAMPLES
    })
    .await;
    assert!(elected, "{}", replicas[0].log_text());
    let leader = holder().expect("a holder");
    let pids: Vec<String> = replicas.iter().map(|r| r.child.id().to_string()).collect();
    let leading = pids
        .iter()
        .position(|pid| leader.ends_with(&format!("-{pid}")))
        .expect("the holder is one of the replicas");
    let follower = &replicas[1 - leading];
    let standby = follower.source("kubernetes").await;
    assert!(
        standby["message"]
            .as_str()
            .unwrap_or_default()
            .contains("standing by"),
        "the follower does not sync: {standby:#}"
    );
    let (ready, _) = follower.get("/readyz").await;
    assert_eq!(
        ready, 200,
        "a follower is ready, or rolling updates would stall"
    );

    // The leader dies without releasing the lease.
    replicas[leading].child.kill().expect("kill");
    let killed = Instant::now();
    let mut new_leader = None;
    while killed.elapsed() < LEASE * 3 {
        if let Some(h) = holder().filter(|h| *h != leader) {
            new_leader = Some(h);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = killed.elapsed();
    let new_leader = new_leader.expect("a follower took over");
    assert!(new_leader.ends_with(&format!("-{}", pids[1 - leading])));
    eprintln!("takeover after {took:?} (lease {LEASE:?})");
    assert!(
        took <= LEASE + Duration::from_secs(1),
        "takeover took {took:?}, lease is {LEASE:?}"
    );

    // The new leader applies what changes next.
    cluster.kubectl_ok(&["delete", "permit", "org-admins-add-members"]);
    let follower = replicas.swap_remove(1 - leading);
    let applied = eventually(WAIT, || async { rows(&db.url).await.len() == EXAMPLES - 1 }).await;
    assert!(applied, "{}", follower.log_text());
}

#[tokio::test]
async fn a_no_op_sync_of_ten_thousand_objects_makes_no_api_writes() {
    const COUNT: usize = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Vec<Value> = (0..COUNT)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "accord.dev/v1alpha1",
                "kind": "Permit",
                "metadata": {"name": format!("p{i:05}"), "namespace": format!("team-{}", i % 10)},
                "spec": {"permissionId": format!("svc{}:act{i}", i % 50), "slugs": [format!("caller-{}", i % 300)]},
            })
        })
        .collect();
    let cluster = Cluster::preloaded(dir.path(), &objects);
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(dir.path(), &cluster, &db.url, "15s");
    let accord = Controller::start(dir.path(), &config).await;

    // The first sync writes every status once.
    let first = eventually(Duration::from_secs(300), || async {
        cluster.status_writes() >= COUNT
    })
    .await;
    assert!(
        first,
        "{} statuses written\n{}",
        cluster.status_writes(),
        accord.log_text()
    );
    let status = accord
        .wait_for("kubernetes", WAIT, |s| {
            s["state"] == "Synced" && s["counts"]["managed"] == COUNT
        })
        .await;
    assert_eq!(status["counts"]["created"], COUNT);
    // The source's status settles after the sync has written every
    // object's status, so the count is final here.
    let writes = cluster.status_writes();
    assert_eq!(writes, COUNT, "one status write per object");

    let (code, status) = accord.post("/api/v1/sources/kubernetes/sync", None).await;
    assert_eq!(code, 200, "{status:#}");
    assert_eq!(status["state"], "Synced");
    assert_eq!(
        cluster.status_writes(),
        writes,
        "a no-op sync made API writes"
    );
}

/// `count` permits `<namespace>-p000`… in `namespace`.
fn permits_in(namespace: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "accord.dev/v1alpha1",
                "kind": "Permit",
                "metadata": {"name": format!("{namespace}-p{i:03}"), "namespace": namespace},
                "spec": {"permissionId": "svc:act", "slugs": [format!("{namespace}-caller-{i}")]},
            })
        })
        .collect()
}

fn refusal_events(cluster: &Cluster) -> Vec<Value> {
    let events: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "events", "-A", "-o", "json"]))
            .expect("json");
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "DeletionRefused" && e["type"] == "Warning")
        .cloned()
        .collect()
}

#[tokio::test]
async fn kubectl_deletes_one_at_a_time_are_refused_once_they_add_up_and_approved_as_a_set() {
    const MANAGED: usize = 36;
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::preloaded(dir.path(), &permits_in("team-a", MANAGED));
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(dir.path(), &cluster, &db.url, "15s");
    let accord = Controller::start(dir.path(), &config).await;
    let first = eventually(WAIT, || async { rows(&db.url).await.len() == MANAGED }).await;
    assert!(first, "{}", accord.log_text());

    // Twelve deletes, one kubectl call each; 25 % of 36 is nine.
    for i in 0..12 {
        cluster.kubectl_ok(&[
            "delete",
            "permit",
            &format!("team-a-p{i:03}"),
            "-n",
            "team-a",
        ]);
    }
    let status = accord
        .wait_for("kubernetes", WAIT, |s| {
            let refused = &s["deletionRefused"];
            refused["deletes"].as_u64().unwrap_or(0) + refused["earlier"].as_u64().unwrap_or(0)
                == 12
        })
        .await;
    let kept = rows(&db.url).await.len();
    assert!(
        kept >= MANAGED - 9,
        "pruned beyond the threshold: {kept} rows left\n{status:#}"
    );
    assert_eq!(
        kept,
        MANAGED - status["deletionRefused"]["earlier"].as_u64().unwrap_or(0) as usize
    );
    // The refusal is where a kubectl user looks: a Warning Event on the Lease.
    let events = refusal_events(&cluster);
    assert!(
        events.iter().any(|e| e["involvedObject"]["kind"] == "Lease"
            && e["involvedObject"]["name"] == "accord-leader"),
        "no DeletionRefused event on the Lease: {events:#?}"
    );
    let note = events[0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(note.contains("accord approve"), "{note}");

    // Approval applies exactly the refused set.
    let set = status["deletionRefused"]["set"]
        .as_str()
        .expect("set")
        .to_owned();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/sources/kubernetes/approve-deletions",
            accord.url
        ))
        .json(&serde_json::json!({"set": set, "approvedBy": "oncall"}))
        .send()
        .await
        .expect("approve");
    assert_eq!(response.status().as_u16(), 200);
    let approved = eventually(WAIT, || async { rows(&db.url).await.len() == MANAGED - 12 }).await;
    assert!(approved, "{}", accord.log_text());
    let status = accord
        .wait_for("kubernetes", WAIT, |s| s["state"] == "Synced")
        .await;
    assert!(status.get("deletionRefused").is_none(), "{status:#}");
}

#[tokio::test]
async fn a_namespace_deletion_streaming_in_is_refused_before_anything_beyond_the_threshold_is_pruned(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut objects = permits_in("team-a", 300);
    objects.extend(permits_in("team-b", 100));
    let cluster = Cluster::preloaded(dir.path(), &objects);
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(dir.path(), &cluster, &db.url, "15s");
    let accord = Controller::start(dir.path(), &config).await;
    let first = eventually(WAIT, || async { rows(&db.url).await.len() == 400 }).await;
    assert!(first, "{}", accord.log_text());

    cluster.kubectl_ok(&["delete", "namespace", "team-a", "--wait=false"]);
    let gone = eventually(WAIT, || async {
        let (ok, _, _) = cluster.kubectl(&["get", "namespace", "team-a"]);
        !ok
    })
    .await;
    assert!(gone, "the emulator did not finish deleting the namespace");
    // Every one of the 300 deletions is seen: pruned, or refused.
    let status = accord
        .wait_for("kubernetes", WAIT, |s| {
            let refused = &s["deletionRefused"];
            refused["deletes"].as_u64().unwrap_or(0) + refused["earlier"].as_u64().unwrap_or(0)
                == 300
        })
        .await;
    let kept = rows(&db.url).await.len();
    assert!(
        kept >= 300,
        "more than 25 % of 400 pruned: {kept} rows left\n{status:#}"
    );
    // The other namespace's objects keep being applied meanwhile.
    cluster.kubectl_ok(&[
        "patch",
        "permit",
        "team-b-p000",
        "-n",
        "team-b",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"slugs":["changed"]}}"#,
    ]);
    let applied = eventually(WAIT, || async {
        synced(&cluster.object_in("permit", "team-b-p000", "team-b"))
            && cluster.object_in("permit", "team-b-p000", "team-b")["metadata"]["generation"] == 2
    })
    .await;
    assert!(applied, "{}", accord.log_text());
    assert!(rows(&db.url).await.len() >= 300);
}

#[tokio::test]
async fn sigterm_releases_the_leader_lease_every_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path());
    let db = TestDb::new(Backend::Sqlite).await;
    // A long lease: only a release, not expiry, frees it within the test.
    let config = config(dir.path(), &cluster, &db.url, "60s");
    let holder = || {
        let lease: Value = serde_json::from_str(&cluster.kubectl_ok(&[
            "get",
            "lease",
            "accord-leader",
            "-o",
            "json",
        ]))
        .unwrap_or(Value::Null);
        lease["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
    };
    for round in 0..3 {
        let mut accord = Controller::start(dir.path(), &config).await;
        let pid = accord.child.id();
        let elected = eventually(WAIT, || async {
            holder().is_some_and(|h| h.ends_with(&format!("-{pid}")))
        })
        .await;
        assert!(elected, "round {round}: {}", accord.log_text());
        let status = accord.terminate();
        assert!(status.success(), "round {round}: {status:?}");
        assert_eq!(
            holder(),
            None,
            "round {round}: the lease is still held after SIGTERM\n{}",
            accord.log_text()
        );
    }
}

#[tokio::test]
async fn a_deleted_crd_prunes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::preloaded(dir.path(), &permits_in("team-a", 10));
    let db = TestDb::new(Backend::Sqlite).await;
    let config = config(dir.path(), &cluster, &db.url, "15s");
    let accord = Controller::start(dir.path(), &config).await;
    let first = eventually(WAIT, || async { rows(&db.url).await.len() == 10 }).await;
    assert!(first, "{}", accord.log_text());

    // Deleting the CRD deletes every Permit with it: the whole source at once.
    cluster.kubectl_ok(&["delete", "crd", "permits.accord.dev"]);
    let status = accord
        .wait_for("kubernetes", WAIT, |s| {
            s["deletionRefused"]["deletes"].as_u64() == Some(10)
        })
        .await;
    assert!(
        status["deletionRefused"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("all 10 rows"),
        "{status:#}"
    );
    assert_eq!(rows(&db.url).await.len(), 10, "nothing pruned");
}

#[tokio::test]
async fn kubectl_explain_describes_every_field_down_to_the_conditions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path());

    let conditions = cluster.kubectl_ok(&["explain", "permit.status.conditions"]);
    for text in [
        "`Ready` or `Synced`",
        "Why, in one CamelCase word",
        "The `metadata.generation` this condition describes",
    ] {
        assert!(conditions.contains(text), "{text:?} missing:\n{conditions}");
    }
    let budget = cluster.kubectl_ok(&["explain", "organization.spec.budget"]);
    assert!(
        budget.contains("token budget") && budget.contains("Tokens the organization may use"),
        "{budget}"
    );
}

const SUSPENDED_ORG: &str = "apiVersion: accord.dev/v1alpha1
kind: Organization
metadata:
  name: paused
  namespace: default
spec:
  name: Paused Inc
  gitops: false
";

#[tokio::test]
async fn a_suspended_organization_reads_as_suspended_not_as_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path());
    let db = TestDb::new(Backend::Sqlite).await;
    let manifest = dir.path().join("paused.yaml");
    std::fs::write(&manifest, SUSPENDED_ORG).expect("write");
    cluster.kubectl_ok(&["apply", "-f", manifest.to_str().expect("utf-8")]);
    let config = config(dir.path(), &cluster, &db.url, "5s");
    let accord = Controller::start(dir.path(), &config).await;

    let seen = eventually(WAIT, || async {
        condition(&cluster.object("organization", "paused"), "Ready")["reason"] == "Suspended"
    })
    .await;
    assert!(seen, "{:#?}\n{}", cluster.objects(), accord.log_text());

    // `kubectl get -o wide`: READY Unknown, SYNCED True, REASON Suspended.
    let table = cluster.kubectl_ok(&["get", "organization", "paused", "-o", "wide"]);
    let cell = |column: &str| cell(&table, "paused", column);
    assert_eq!(
        [cell("READY"), cell("SYNCED"), cell("REASON")],
        ["Unknown", "True", "Suspended"],
        "{table}"
    );
    // No Warning Event: nothing is wrong.
    let events: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "events", "-o", "json"])).expect("json");
    let warnings: Vec<&Value> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "Warning" && e["involvedObject"]["name"] == "paused")
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert!(
        rows(&db.url).await.is_empty(),
        "a suspended org is not written"
    );
}

const TEAM_A_PERMIT: &str = "apiVersion: accord.dev/v1alpha1
kind: Permit
metadata:
  name: team-a-reports
  namespace: team-a
spec:
  permissionId: report-svc:report:read
  slugs: [reporting-job]
";

#[tokio::test]
async fn kubectl_get_shows_the_app_from_the_namespace_annotation_or_the_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path());
    let db = TestDb::new(Backend::Sqlite).await;
    cluster.apply_examples();
    cluster.kubectl_ok(&["create", "namespace", "team-a"]);
    cluster.kubectl_ok(&[
        "annotate",
        "namespace",
        "team-a",
        "accord.dev/app=team-a.example.com",
    ]);
    let manifest = dir.path().join("team-a.yaml");
    std::fs::write(&manifest, TEAM_A_PERMIT).expect("write");
    cluster.kubectl_ok(&["apply", "-f", manifest.to_str().expect("utf-8")]);
    let config = config(dir.path(), &cluster, &db.url, "5s");
    let accord = Controller::start(dir.path(), &config).await;

    let settled = eventually(WAIT, || async {
        let objects = cluster.objects();
        objects.len() == EXAMPLES + 1 && objects.iter().all(synced)
    })
    .await;
    assert!(settled, "{:#?}\n{}", cluster.objects(), accord.log_text());

    let permits = cluster.kubectl_ok(&["get", "permits", "-A", "-o", "wide"]);
    assert_eq!(
        cell(&permits, "team-a-reports", "APP"),
        "team-a.example.com",
        "from the namespace annotation:\n{permits}"
    );
    assert_eq!(cell(&permits, "team-a-reports", "ID"), "team-a-reports");
    assert_eq!(
        cell(&permits, "order-service-payments", "APP"),
        "unnamed",
        "the default:\n{permits}"
    );
    let enrollments = cluster.kubectl_ok(&["get", "enrollments"]);
    assert_eq!(
        cell(&enrollments, "payment-processor", "APP"),
        "shop.example.com",
        "from the spec:\n{enrollments}"
    );
    let organizations = cluster.kubectl_ok(&["get", "organizations", "-o", "wide"]);
    assert_eq!(cell(&organizations, "acme", "APP"), "unnamed");
    assert_eq!(cell(&organizations, "acme", "ID"), "acme", "the slug");
}

#[tokio::test]
async fn kubectl_annotate_asks_for_a_sync_and_kubectl_wait_sees_it_handled() {
    const REQUEST: &str = "accord.dev/reconcile-requested-at";
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path());
    let db = TestDb::new(Backend::Sqlite).await;
    cluster.apply_examples();
    // The interval is an hour: only a change can start a sync in this test.
    let config = config(dir.path(), &cluster, &db.url, "5s");
    let accord = Controller::start(dir.path(), &config).await;
    let settled = eventually(WAIT, || async {
        let objects = cluster.objects();
        objects.len() == EXAMPLES && objects.iter().all(synced)
    })
    .await;
    assert!(settled, "{}", accord.log_text());
    // Whatever the start queued is served by this sync.
    let (code, _) = accord.post("/api/v1/sources/kubernetes/sync", None).await;
    assert_eq!(code, 200);

    // A hand edit only a sync puts back; no spec changes, so no sync yet.
    let store = accord::store::AnyStore::connect(&db.url)
        .await
        .expect("store");
    let accord::store::AnyStore::Sqlite(sqlite) = &store else {
        panic!("a SQLite database");
    };
    let permission = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT permission_id FROM permits WHERE id = 'order-service-payments'",
        )
        .fetch_one(sqlite.pool())
        .await
        .expect("the row")
    };
    sqlx::query(
        "UPDATE permits SET permission_id = 'payment-svc:payment:refund' WHERE id = 'order-service-payments'",
    )
    .execute(sqlite.pool())
    .await
    .expect("hand edit");

    for (object, requested) in [
        ("permit/order-service-payments", "1767225600"),
        ("organization/acme", "1767225601"),
    ] {
        let annotation = format!("{REQUEST}={requested}");
        cluster.kubectl_ok(&["annotate", object, &annotation, "--overwrite"]);
        let condition = format!("jsonpath={{.status.lastHandledReconcileAt}}={requested}");
        let (handled, _, stderr) =
            cluster.kubectl(&["wait", object, "--for", &condition, "--timeout=60s"]);
        assert!(handled, "{object}: {stderr}\n{}", accord.log_text());
    }
    assert_eq!(
        permission().await,
        "payment-svc:payment:process",
        "the requested sync put the row back"
    );
    let again = cluster.object("permit", "order-service-payments");
    assert_eq!(again["status"]["lastHandledReconcileAt"], "1767225600");
    assert_eq!(condition(&again, "Ready")["status"], "True");
}

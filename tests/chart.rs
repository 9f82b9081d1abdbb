//! The Helm chart in charts/accord, rendered by a real helm 3 (scripts/test
//! installs one and names it in ACCORD_TEST_HELM) with several sets of
//! values, and checked on the parsed objects: RBAC grants exactly what accord
//! needs, the pods run unprivileged on a read-only root, the config file is
//! one accord accepts, secrets come from Secrets, SQLite stays on a volume
//! and on one replica, the schema rejects typos, and the optional
//! NetworkPolicy, PodDisruptionBudget and PrometheusRule (its alerts run
//! through promtool) say what they should.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use accord::config::{self, Overrides, SourceKind};
use accord::model::de::from_node;
use accord::model::yaml::{self, Limits};
use accord::policy::DriftPolicy;
use serde_json::{json, Value};

const RELEASE: &str = "accord";
const NAMESPACE: &str = "accord";
const POSTGRES_URL: &str = "postgres://accord:secret@db.example:5432/accord";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/accord")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tool the tests run: `$var`, else `name` on PATH. Missing, the test
/// fails: a chart test that skipped would pass on a machine that checks nothing.
fn tool(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return path.into();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "no {name}: run the tests through scripts/test, which installs {name} and \
                 sets {var} (or put {name} on PATH)"
            )
        })
}

fn helm() -> PathBuf {
    tool("ACCORD_TEST_HELM", "helm")
}

fn promtool() -> PathBuf {
    tool("ACCORD_TEST_PROMTOOL", "promtool")
}

/// Runs a tool; its stdout, or its stderr as the error.
fn run(program: &Path, args: &[&std::ffi::OsStr], dir: Option<&Path>) -> Result<String, String> {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run the tests through scripts/test, which installs it)",
            program.display()
        )
    });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The non-empty YAML documents of a text, as JSON values.
fn documents(what: &str, text: &str) -> Vec<Value> {
    let docs = yaml::load(text, Limits::default())
        .unwrap_or_else(|e| panic!("{what}:{}: {}\n{text}", e.mark, e.message));
    docs.into_iter()
        .filter_map(|d| d.root)
        .filter(|root| !root.is_null())
        .map(|root| from_node::<Value>(&root).unwrap_or_else(|e| panic!("{what}: {e:?}")))
        .collect()
}

/// `helm template` of the chart, with `values` over values.yaml: the
/// objects it renders, or helm's error.
fn try_render(values: &Value) -> Result<Rendered, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.json");
    fs::write(&file, serde_json::to_vec_pretty(values).unwrap()).unwrap();
    let chart = chart();
    let args = [
        "template".as_ref(),
        RELEASE.as_ref(),
        chart.as_os_str(),
        "--namespace".as_ref(),
        NAMESPACE.as_ref(),
        "--values".as_ref(),
        file.as_os_str(),
    ];
    let output = run(&helm(), &args, None)?;
    Ok(Rendered(documents("helm template", &output)))
}

fn render(values: Value) -> Rendered {
    try_render(&values).unwrap_or_else(|e| panic!("helm template with {values}:\n{e}"))
}

/// helm's error for values the chart must refuse.
fn render_error(values: Value) -> String {
    match try_render(&values) {
        Ok(_) => panic!("helm template with {values} rendered; it must fail"),
        Err(e) => e,
    }
}

fn postgres(replicas: u32) -> Value {
    json!({"replicas": replicas, "database": {"url": POSTGRES_URL}})
}

/// The objects of one rendering.
struct Rendered(Vec<Value>);

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn only(&self, kind: &str) -> &Value {
        let found = self.of_kind(kind);
        assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
        found[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.of_kind(kind)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} named {name}"))
    }

    fn has(&self, kind: &str) -> bool {
        !self.of_kind(kind).is_empty()
    }

    fn deployment(&self) -> &Value {
        self.only("Deployment")
    }

    fn pod(&self) -> &Value {
        at(self.deployment(), "/spec/template/spec")
    }

    fn container(&self) -> &Value {
        let containers = list(self.pod(), "/containers");
        assert_eq!(containers.len(), 1, "one container");
        &containers[0]
    }

    /// The volume mounted at `path`.
    fn volume_at(&self, path: &str) -> &Value {
        let mount = item(list(self.container(), "/volumeMounts"), "mountPath", path);
        item(list(self.pod(), "/volumes"), "name", text(mount, "/name"))
    }

    /// The config file in the ConfigMap, as text.
    fn config_text(&self) -> &str {
        text(self.only("ConfigMap"), "/data/accord.yaml")
    }

    /// The config file, parsed by accord itself.
    fn config(&self) -> config::Config {
        config::parse("accord.yaml", self.config_text(), &Overrides::default())
            .unwrap_or_else(|e| panic!("accord rejects the chart's config file: {e:?}"))
    }
}

/// The value at a JSON pointer, which must be there.
fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    value
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {value}"))
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    at(value, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string in {value}"))
}

fn list<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    at(value, pointer)
        .as_array()
        .unwrap_or_else(|| panic!("{pointer} is not a list in {value}"))
}

fn strings(value: &Value, pointer: &str) -> Vec<String> {
    list(value, pointer)
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// The item of a list whose `key` is `value`.
fn item<'a>(items: &'a [Value], key: &str, value: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i[key] == value)
        .unwrap_or_else(|| panic!("no item with {key}: {value} in {items:?}"))
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let digit = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("`{text}` is not base64"));
        bits = (bits << 6) | digit as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

// ---- helm itself ----------------------------------------------------------------

#[test]
fn the_chart_is_rendered_by_a_real_helm_3() {
    let version = run(&helm(), &["version".as_ref(), "--short".as_ref()], None)
        .unwrap_or_else(|e| panic!("helm version: {e}"));
    assert!(version.starts_with("v3."), "helm {version}");
}

// ---- defaults: one replica, SQLite on a volume ----------------------------------

#[test]
fn defaults_render_one_replica_with_sqlite_on_a_persistent_volume_claim() {
    let chart = render(json!({}));
    let kinds: BTreeMap<String, usize> = chart.0.iter().fold(BTreeMap::new(), |mut m, o| {
        *m.entry(text(o, "/kind").to_owned()).or_default() += 1;
        m
    });
    let expected: BTreeMap<String, usize> = [
        ("ServiceAccount", 1),
        ("Secret", 2), // the database URL and the API token
        ("ConfigMap", 1),
        ("PersistentVolumeClaim", 1),
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        ("Role", 1), // the Lease
        ("RoleBinding", 1),
        ("Service", 1),
        ("Deployment", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(
        kinds, expected,
        "no PDB, NetworkPolicy or monitoring by default"
    );

    let deployment = chart.deployment();
    assert_eq!(deployment["spec"]["replicas"], 1);
    // Never two pods on one SQLite file, nor waiting on a volume still attached.
    assert_eq!(text(deployment, "/spec/strategy/type"), "Recreate");

    let claim = chart.only("PersistentVolumeClaim");
    assert_eq!(strings(claim, "/spec/accessModes"), ["ReadWriteOnce"]);
    assert_eq!(text(claim, "/spec/resources/requests/storage"), "1Gi");
    assert!(
        claim["spec"].get("storageClassName").is_none(),
        "the cluster's default StorageClass"
    );
    let data = chart.volume_at("/var/lib/accord");
    assert_eq!(
        text(data, "/persistentVolumeClaim/claimName"),
        text(claim, "/metadata/name")
    );
    let url = text(chart.named("Secret", "accord-database"), "/stringData/url");
    assert_eq!(url, "sqlite:///var/lib/accord/accord.db", "on the volume");
}

#[test]
fn persistence_takes_an_existing_claim_a_storage_class_or_an_empty_dir() {
    let chart = render(json!({"persistence": {"existingClaim": "accord-db"}}));
    assert!(
        !chart.has("PersistentVolumeClaim"),
        "the claim is the user's"
    );
    assert_eq!(
        text(
            chart.volume_at("/var/lib/accord"),
            "/persistentVolumeClaim/claimName"
        ),
        "accord-db"
    );

    let chart = render(json!({"persistence": {"storageClass": "fast", "size": "5Gi"}}));
    let claim = chart.only("PersistentVolumeClaim");
    assert_eq!(text(claim, "/spec/storageClassName"), "fast");
    assert_eq!(text(claim, "/spec/resources/requests/storage"), "5Gi");
    let chart = render(json!({"persistence": {"storageClass": "-"}}));
    assert_eq!(
        text(
            chart.only("PersistentVolumeClaim"),
            "/spec/storageClassName"
        ),
        "",
        "`-` asks for no dynamic provisioning"
    );

    let chart = render(json!({"persistence": {"enabled": false}}));
    assert!(!chart.has("PersistentVolumeClaim"));
    assert!(chart.volume_at("/var/lib/accord").get("emptyDir").is_some());
}

#[test]
fn sqlite_with_more_than_one_replica_fails_rendering_and_says_why() {
    let error = render_error(json!({"replicas": 2}));
    assert!(
        error.contains(
            "replicas: 2 needs PostgreSQL: with SQLite each pod would have its own database"
        ),
        "{error}"
    );
    // A Secret the chart cannot read: the kind says which database it is.
    let error = render_error(json!({
        "replicas": 3,
        "database": {"existingSecret": "accord-db", "kind": "sqlite"},
    }));
    assert!(error.contains("replicas: 3 needs PostgreSQL"), "{error}");
    let error = render_error(json!({"database": {"existingSecret": "accord-db"}}));
    assert!(
        error.contains("database.kind: set it to sqlite or postgres"),
        "{error}"
    );

    let error = render_error(json!({"database": {"url": "sqlite:///data/accord.db"}}));
    assert!(
        error.contains("the SQLite file must be under /var/lib/accord"),
        "{error}"
    );
    let error = render_error(
        json!({"database": {"url": "sqlite:///var/lib/accord/a.db", "kind": "postgres"}}),
    );
    assert!(
        error.contains("database.kind is postgres but database.url is a sqlite URL"),
        "{error}"
    );
    let error = render_error(json!({"database": {"url": "mysql://db/accord"}}));
    assert!(
        error.contains("must start with sqlite: or postgres://"),
        "{error}"
    );
}

#[test]
fn postgresql_with_two_replicas_renders_a_lease_a_disruption_budget_and_no_volume() {
    for values in [
        postgres(2),
        json!({"replicas": 2, "database": {"existingSecret": "accord-db", "kind": "postgres"}}),
    ] {
        let chart = render(values);
        let deployment = chart.deployment();
        assert_eq!(deployment["spec"]["replicas"], 2);
        assert!(
            deployment["spec"].get("strategy").is_none(),
            "rolling updates"
        );
        assert!(!chart.has("PersistentVolumeClaim"));
        assert!(list(chart.container(), "/volumeMounts")
            .iter()
            .all(|m| m["mountPath"] != "/var/lib/accord"));

        let election = chart
            .config()
            .leader_election
            .expect("replicas elect a leader");
        assert_eq!(election.namespace, NAMESPACE);
        assert_eq!(election.lease_name, "accord-leader");

        let budget = chart.only("PodDisruptionBudget");
        assert_eq!(budget["spec"]["minAvailable"], 1);
        assert_eq!(
            at(budget, "/spec/selector/matchLabels"),
            at(deployment, "/spec/selector/matchLabels")
        );
    }
}

#[test]
fn leader_election_stays_on_for_several_replicas_without_the_kubernetes_source() {
    let git = json!([{"name": "platform", "git": {"url": "https://git.example.com/access.git"}}]);
    let one = render(json!({"kubernetes": {"enabled": false}, "extraSources": git}));
    assert!(
        one.config().leader_election.is_none(),
        "one replica, no Lease"
    );
    assert!(
        !one.has("Role") && !one.has("ClusterRole"),
        "no cluster access"
    );

    let mut two = postgres(2);
    two["kubernetes"] = json!({"enabled": false});
    two["extraSources"] = git;
    let two = render(two);
    let config = two.config();
    assert!(config.leader_election.is_some());
    assert!(matches!(config.sources[0].kind, SourceKind::Git(_)));
    let lease = two.only("Role");
    assert_eq!(granted(lease), lease_grants());
}

// ---- RBAC -----------------------------------------------------------------------

type Grant = (String, String, String);

fn grants(of: &[(&str, &[&str], &[&str])]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in of {
        for r in *resources {
            for v in *verbs {
                out.insert((group.to_string(), r.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// Every (apiGroup, resource, verb) a role grants; a rule may carry nothing
/// but those and resourceNames, and no wildcard.
fn granted(role: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in list(role, "/rules") {
        for key in rule.as_object().expect("a rule is a mapping").keys() {
            assert!(
                ["apiGroups", "resources", "verbs", "resourceNames"].contains(&key.as_str()),
                "rule field `{key}` is not allowed: {rule}"
            );
        }
        for g in strings(rule, "/apiGroups") {
            for r in strings(rule, "/resources") {
                for v in strings(rule, "/verbs") {
                    for part in [&g, &r, &v] {
                        assert!(!part.contains('*'), "wildcard `{part}` in {rule}");
                    }
                    out.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn crd_grants() -> BTreeSet<Grant> {
    grants(&[
        (
            "accord.dev",
            &["organizations", "permits", "enrollments"],
            &["get", "list", "watch"],
        ),
        (
            "accord.dev",
            &[
                "organizations/status",
                "permits/status",
                "enrollments/status",
            ],
            &["get", "patch", "update"],
        ),
        ("events.k8s.io", &["events"], &["create", "patch"]),
    ])
}

fn namespace_grants() -> BTreeSet<Grant> {
    grants(&[("", &["namespaces"], &["get", "list", "watch"])])
}

fn lease_grants() -> BTreeSet<Grant> {
    grants(&[(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    )])
}

/// Every rule of `role` that grants a verb other than `create` (which
/// Kubernetes cannot narrow by name) is limited to `names`.
fn assert_limited_to(role: &Value, names: &[&str]) {
    for rule in list(role, "/rules") {
        if strings(rule, "/verbs").iter().any(|v| v != "create") {
            assert_eq!(strings(rule, "/resourceNames"), names, "{rule}");
        }
    }
}

/// Each role is bound once, to the pods' ServiceAccount alone.
fn assert_bound_to_the_service_account(chart: &Rendered) {
    let account = text(chart.pod(), "/serviceAccountName");
    chart.named("ServiceAccount", account);
    let mut bound = BTreeSet::new();
    for (binding_kind, role_kind) in [
        ("ClusterRoleBinding", "ClusterRole"),
        ("RoleBinding", "Role"),
    ] {
        for binding in chart.of_kind(binding_kind) {
            assert_eq!(text(binding, "/roleRef/kind"), role_kind, "{binding}");
            let role = (
                binding["metadata"]["namespace"].as_str(),
                text(binding, "/roleRef/name"),
            );
            assert!(
                chart.of_kind(role_kind).iter().any(|r| {
                    (
                        r["metadata"]["namespace"].as_str(),
                        text(r, "/metadata/name"),
                    ) == role
                }),
                "{binding}: binds a {role_kind} the chart does not render"
            );
            assert!(bound.insert((role_kind, role)), "bound twice: {binding}");
            assert_eq!(
                at(binding, "/subjects"),
                &json!([{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}])
            );
        }
    }
    assert_eq!(
        bound.len(),
        chart.of_kind("ClusterRole").len() + chart.of_kind("Role").len(),
        "every role is bound"
    );
}

#[test]
fn watching_every_namespace_grants_the_crds_events_and_namespaces_and_the_lease() {
    let chart = render(json!({}));
    let mut expected = crd_grants();
    expected.extend(namespace_grants());
    assert_eq!(granted(chart.only("ClusterRole")), expected);

    let lease = chart.only("Role");
    assert_eq!(text(lease, "/metadata/namespace"), NAMESPACE);
    assert_eq!(granted(lease), lease_grants());
    assert_limited_to(lease, &["accord-leader"]);
    assert_bound_to_the_service_account(&chart);
}

#[test]
fn watching_listed_namespaces_grants_the_crds_there_and_reads_those_namespaces_alone() {
    let chart = render(json!({"kubernetes": {"namespaces": ["team-a", "team-b"]}}));
    let reader = chart.only("ClusterRole");
    assert_eq!(granted(reader), namespace_grants());
    assert_limited_to(reader, &["team-a", "team-b"]);

    let roles: BTreeMap<&str, &Value> = chart
        .of_kind("Role")
        .into_iter()
        .map(|r| (text(r, "/metadata/namespace"), r))
        .collect();
    assert_eq!(
        roles.keys().copied().collect::<Vec<_>>(),
        [NAMESPACE, "team-a", "team-b"]
    );
    assert_eq!(granted(roles[NAMESPACE]), lease_grants());
    for namespace in ["team-a", "team-b"] {
        assert_eq!(granted(roles[namespace]), crd_grants(), "{namespace}");
    }
    assert_bound_to_the_service_account(&chart);

    let config = chart.config();
    let SourceKind::Kubernetes(kubernetes) = &config.sources[0].kind else {
        panic!("the kubernetes source")
    };
    assert_eq!(kubernetes.namespaces, ["team-a", "team-b"]);
}

// ---- the pod ----------------------------------------------------------------------

#[test]
fn deployment_probes_health_and_runs_unprivileged_on_a_read_only_root() {
    let chart = render(json!({}));
    let deployment = chart.deployment();
    assert!(
        at(deployment, "/spec/template/metadata/annotations")
            .get("checksum/config")
            .is_some(),
        "config changes must roll the pods"
    );
    assert_eq!(
        at(deployment, "/spec/template/metadata/labels"),
        at(deployment, "/spec/selector/matchLabels")
    );
    let pod = chart.pod();
    assert_eq!(
        at(pod, "/securityContext"),
        &json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );

    let c = chart.container();
    assert_eq!(
        strings(c, "/args"),
        ["run", "--config", "/etc/accord/accord.yaml"]
    );
    assert_eq!(
        item(list(c, "/ports"), "name", "http")["containerPort"],
        8080
    );
    assert_eq!(
        at(c, "/livenessProbe/httpGet"),
        &json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        at(c, "/readinessProbe/httpGet"),
        &json!({"path": "/readyz", "port": "http"})
    );
    assert_eq!(
        at(c, "/securityContext"),
        &json!({
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        })
    );
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            text(
                item(list(c, "/env"), "name", name),
                "/valueFrom/fieldRef/fieldPath"
            ),
            field
        );
    }

    // Writable places on the read-only root: the Git cache and /tmp (each an
    // emptyDir) and the database's volume.
    for path in ["/var/cache/accord", "/tmp"] {
        assert!(chart.volume_at(path).get("emptyDir").is_some(), "{path}");
    }
    assert!(chart
        .volume_at("/var/lib/accord")
        .get("persistentVolumeClaim")
        .is_some());
    assert_eq!(
        text(
            chart.volume_at("/etc/accord/accord.yaml"),
            "/configMap/name"
        ),
        text(chart.only("ConfigMap"), "/metadata/name")
    );
}

#[test]
fn config_map_holds_a_config_accord_accepts_with_the_kubernetes_source_and_the_api_token() {
    let chart = render(json!({}));
    let file = &documents("accord.yaml", chart.config_text())[0];
    // The URL comes from the Secret (ACCORD_DATABASE_URL), never from the ConfigMap.
    assert!(
        file.get("database").is_none(),
        "the database URL belongs in a Secret"
    );

    let config = chart.config();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(
        item(list(chart.container(), "/ports"), "name", "http")["containerPort"],
        config.listen.port()
    );
    assert!(chart
        .volume_at(config.cache_dir.to_str().unwrap())
        .get("emptyDir")
        .is_some());
    assert_eq!(
        config.api_token_file.as_deref(),
        Some(Path::new("/etc/accord/api/token")),
        "POST endpoints always need the token"
    );
    let election = config.leader_election.as_ref().expect("leaderElection");
    assert_eq!(
        (
            election.lease_name.as_str(),
            election.namespace.as_str(),
            election.lease_duration.as_str()
        ),
        ("accord-leader", NAMESPACE, "15s")
    );

    assert_eq!(config.sources.len(), 1);
    let source = &config.sources[0];
    assert_eq!(source.name, "kubernetes");
    let SourceKind::Kubernetes(kubernetes) = &source.kind else {
        panic!("the kubernetes source")
    };
    assert!(kubernetes.namespaces.is_empty(), "every namespace");
    assert_eq!(source.interval, Duration::from_secs(300));
    assert_eq!(source.drift, DriftPolicy::Correct);
    assert_eq!(source.max_delete_percent, 25);
    assert_eq!(source.deletion_window, Duration::from_secs(600));

    let chart = render(json!({"kubernetes": {"drift": "report", "deletionWindow": "1h"}}));
    let source = &chart.config().sources[0];
    assert_eq!(source.drift, DriftPolicy::Report);
    assert_eq!(source.deletion_window, Duration::from_secs(3600));
}

#[test]
fn the_database_url_reaches_the_pod_from_a_secret_key() {
    let chart = render(json!({}));
    let env = list(chart.container(), "/env");
    let url = at(
        item(env, "name", "ACCORD_DATABASE_URL"),
        "/valueFrom/secretKeyRef",
    );
    assert_eq!(url, &json!({"name": "accord-database", "key": "url"}));
    let secret = chart.named("Secret", "accord-database");
    assert_eq!(
        text(secret, "/stringData/url"),
        "sqlite:///var/lib/accord/accord.db"
    );

    let chart = render(json!({
        "database": {"existingSecret": "accord-db", "secretKey": "dsn", "kind": "postgres"},
    }));
    let env = list(chart.container(), "/env");
    let url = at(
        item(env, "name", "ACCORD_DATABASE_URL"),
        "/valueFrom/secretKeyRef",
    );
    assert_eq!(url, &json!({"name": "accord-db", "key": "dsn"}));
    assert!(
        chart
            .of_kind("Secret")
            .iter()
            .all(|s| s["metadata"]["name"] != "accord-database"),
        "the chart makes no database Secret beside the user's"
    );
}

/// The Secret and key the pod reads the API token from.
fn api_token_source(chart: &Rendered) -> (String, String) {
    let file = chart.config().api_token_file.expect("apiTokenFile");
    let volume = chart.volume_at(file.parent().unwrap().to_str().unwrap());
    let item = item(
        list(volume, "/secret/items"),
        "path",
        file.file_name().unwrap().to_str().unwrap(),
    );
    (
        text(volume, "/secret/secretName").to_owned(),
        text(item, "/key").to_owned(),
    )
}

#[test]
fn the_api_token_is_a_random_secret_the_chart_makes_unless_one_is_given() {
    let first = render(json!({}));
    let (name, key) = api_token_source(&first);
    assert_eq!((name.as_str(), key.as_str()), ("accord-api-token", "token"));
    let token = |chart: &Rendered| {
        let encoded = text(chart.named("Secret", &name), &format!("/data/{key}"));
        String::from_utf8(base64_decode(encoded)).unwrap()
    };
    let made = token(&first);
    assert_eq!(made.len(), 32, "{made}");
    assert!(made.bytes().all(|b| b.is_ascii_alphanumeric()), "{made}");
    // `helm template` has no cluster to look the old token up in, so each
    // rendering makes a new one: proof that it is not a constant.
    assert_ne!(token(&render(json!({}))), made);

    let given = render(json!({"apiToken": {"existingSecret": "accord-token"}}));
    assert_eq!(
        api_token_source(&given),
        ("accord-token".to_owned(), "token".to_owned())
    );
    assert!(
        given
            .of_kind("Secret")
            .iter()
            .all(|s| s["metadata"]["name"] != "accord-api-token"),
        "no token of the chart's beside the user's"
    );
}

/// tests/kube-emulator serving `objects`, killed when dropped: the
/// cluster that helm's `lookup` reads from.
struct Emulator {
    child: Child,
    kubeconfig: PathBuf,
}

impl Emulator {
    fn start(dir: &Path, objects: Value) -> Emulator {
        let preload = dir.join("objects.json");
        fs::write(&preload, objects.to_string()).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        let mut child = Command::new("python3")
            .arg(repo().join("tests/kube-emulator/emulator.py"))
            .args(["--port", "0", "--kubeconfig"])
            .arg(&kubeconfig)
            .arg("--load")
            .arg(&preload)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the emulator");
        // It prints its port once it serves (and has written the kubeconfig).
        let mut port = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut port)
            .expect("the emulator prints its port");
        assert!(port.trim().parse::<u16>().is_ok(), "no port: {port:?}");
        Emulator { child, kubeconfig }
    }

    /// The API token Secret as `helm template --dry-run=server` renders it
    /// against this cluster, as an upgrade would.
    fn rendered_token(&self) -> String {
        let chart = chart();
        let args = [
            "template".as_ref(),
            RELEASE.as_ref(),
            chart.as_os_str(),
            "--namespace".as_ref(),
            NAMESPACE.as_ref(),
            "--dry-run=server".as_ref(),
            "--kubeconfig".as_ref(),
            self.kubeconfig.as_os_str(),
        ];
        let output = run(&helm(), &args, None).unwrap_or_else(|e| panic!("helm template:\n{e}"));
        let rendered = Rendered(documents("helm template", &output));
        text(rendered.named("Secret", "accord-api-token"), "/data/token").to_owned()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_upgrade_keeps_the_api_token_it_finds_in_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    let kept = "a2VwdC10b2tlbg=="; // "kept-token"
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "accord-api-token", "namespace": NAMESPACE},
        "data": {"token": kept},
    });
    let cluster = Emulator::start(
        dir.path(),
        json!({"kind": "List", "items": [namespace, secret]}),
    );
    assert_eq!(cluster.rendered_token(), kept);
    drop(cluster);

    // The first install finds none, and makes one.
    let dir = tempfile::tempdir().unwrap();
    let cluster = Emulator::start(dir.path(), json!({"kind": "List", "items": [namespace]}));
    let made = cluster.rendered_token();
    assert_ne!(made, kept);
    assert_eq!(base64_decode(&made).len(), 32);
}

// ---- the values schema -------------------------------------------------------------

#[test]
fn the_values_schema_rejects_misspelled_and_out_of_range_values() {
    for (values, names) in [
        (json!({"replicaz": 2}), "replicaz"),
        (json!({"kubernetes": {"drif": "report"}}), "drif"),
        (json!({"persistence": {"enabeld": false}}), "enabeld"),
        (json!({"kubernetes": {"drift": "fix"}}), "kubernetes.drift"),
        (json!({"replicas": 0}), "replicas"),
        (
            json!({"kubernetes": {"maxDeletePercent": 101}}),
            "maxDeletePercent",
        ),
        (
            json!({"extraSources": [{"name": "platform", "gti": {"url": "https://x"}}]}),
            "gti",
        ),
    ] {
        let error = render_error(values.clone());
        assert!(
            error.contains("don't meet the specifications of the schema") && error.contains(names),
            "{values}: {error}"
        );
    }
    // The same places, spelled right, render.
    render(json!({"kubernetes": {"drift": "report", "maxDeletePercent": 100}}));
    render(
        json!({"extraSources": [{"name": "platform", "git": {"url": "https://x"}}], "persistence": {"enabled": false}}),
    );
}

/// Every key of `values` has a typed schema; a mapping's schema with
/// properties admits no others, so a typo fails.
fn assert_covered(values: &Value, schema: &Value, path: &str) {
    assert!(
        schema.get("type").is_some() || schema.get("enum").is_some(),
        "{path}: no type in the schema"
    );
    let Some(map) = values.as_object() else {
        return;
    };
    let Some(properties) = schema.get("properties") else {
        return; // a map of anything (labels, affinity)
    };
    assert_eq!(
        schema.get("additionalProperties"),
        Some(&json!(false)),
        "{path}: a typo would pass"
    );
    for (key, value) in map {
        let path = format!("{path}.{key}");
        let property = properties
            .get(key)
            .unwrap_or_else(|| panic!("{path} is not in values.schema.json"));
        assert_covered(value, property, &path);
    }
}

#[test]
fn the_values_schema_covers_every_value_in_values_yaml() {
    let values = &documents("values.yaml", &read(&chart().join("values.yaml")))[0];
    let schema: Value =
        serde_json::from_str(&read(&chart().join("values.schema.json"))).expect("JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_covered(values, &schema, "values");
}

// ---- NetworkPolicy ------------------------------------------------------------------

fn ports(rule: &Value) -> BTreeSet<(String, String)> {
    list(rule, "/ports")
        .iter()
        .map(|p| (p["port"].to_string(), text(p, "/protocol").to_owned()))
        .collect()
}

fn port_set(of: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    of.iter()
        .map(|(p, proto)| (p.to_string(), proto.to_string()))
        .collect()
}

#[test]
fn network_policy_admits_http_from_its_sources_and_lets_out_dns_the_api_and_the_database() {
    let chart = render(json!({}));
    assert!(!chart.has("NetworkPolicy"), "off by default");

    let mut values = postgres(2);
    values["networkPolicy"] = json!({"enabled": true});
    let chart = render(values);
    let policy = chart.only("NetworkPolicy");
    assert_eq!(
        at(policy, "/spec/podSelector/matchLabels"),
        at(chart.deployment(), "/spec/selector/matchLabels")
    );
    assert_eq!(strings(policy, "/spec/policyTypes"), ["Ingress", "Egress"]);
    let ingress = list(policy, "/spec/ingress");
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        at(&ingress[0], "/from"),
        &json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
    assert_eq!(ports(&ingress[0]), port_set(&[("\"http\"", "TCP")]));

    let egress = list(policy, "/spec/egress");
    let egress_ports: Vec<_> = egress.iter().map(ports).collect();
    assert_eq!(
        egress_ports,
        [
            port_set(&[("53", "UDP"), ("53", "TCP")]),
            port_set(&[("443", "TCP"), ("6443", "TCP")]),
            port_set(&[("5432", "TCP")]),
        ],
        "DNS, the API server and PostgreSQL, nothing else"
    );

    // SQLite is a file: no database port. Peers and extra rules as given.
    let chart = render(json!({"networkPolicy": {
        "enabled": true,
        "ingressFrom": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}],
        "kubernetesApi": {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]},
        "extraEgress": [{"ports": [{"port": 22, "protocol": "TCP"}]}],
    }}));
    let policy = chart.only("NetworkPolicy");
    assert_eq!(
        at(policy, "/spec/ingress/0/from"),
        &json!([{"podSelector": {"matchLabels": {"app": "prometheus"}}}])
    );
    let egress = list(policy, "/spec/egress");
    assert_eq!(
        egress.iter().map(ports).collect::<Vec<_>>(),
        [
            port_set(&[("53", "UDP"), ("53", "TCP")]),
            port_set(&[("443", "TCP"), ("6443", "TCP")]),
            port_set(&[("22", "TCP")]),
        ]
    );
    assert_eq!(
        at(&egress[1], "/to"),
        &json!([{"ipBlock": {"cidr": "10.0.0.1/32"}}])
    );
}

// ---- monitoring -----------------------------------------------------------------------

#[test]
fn service_and_service_monitor_expose_http_and_metrics() {
    let chart = render(json!({"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}}));
    let service = chart.only("Service");
    assert_eq!(
        at(service, "/spec/selector"),
        at(chart.deployment(), "/spec/selector/matchLabels")
    );
    let port = item(list(service, "/spec/ports"), "name", "http");
    assert_eq!(port["targetPort"], "http");

    let monitor = chart.only("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    for (label, value) in at(monitor, "/spec/selector/matchLabels")
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][label], value, "{label}");
    }
    let endpoint = item(list(monitor, "/spec/endpoints"), "port", "http");
    assert_eq!(endpoint["path"], "/metrics");
}

#[test]
fn prometheus_rule_alerts_parse_in_promtool_and_fire_on_what_they_name() {
    assert!(!render(json!({})).has("PrometheusRule"), "off by default");
    let chart = render(json!({"prometheusRule": {"enabled": true, "labels": {"release": "prom"}}}));
    let rule = chart.only("PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");

    // Each alert reads the metric accord exports (counters with `_total`).
    let alerts: BTreeMap<&str, &str> = list(rule, "/spec/groups/0/rules")
        .iter()
        .map(|r| (text(r, "/alert"), text(r, "/expr")))
        .collect();
    let expected = [
        ("AccordAuditChainBroken", "accord_audit_chain_ok"),
        ("AccordDeletionsRefused", "accord_deletions_refused_total"),
        ("AccordDriftOpen", "accord_drift_open"),
        (
            "AccordLastSuccessTooOld",
            "accord_last_success_timestamp_seconds",
        ),
        ("AccordSyncFailing", "accord_syncs_total{outcome=\"error\"}"),
    ];
    assert_eq!(
        alerts.keys().copied().collect::<Vec<_>>(),
        expected.map(|(alert, _)| alert)
    );
    for (alert, metric) in expected {
        assert!(alerts[alert].contains(metric), "{alert}: {}", alerts[alert]);
    }

    // promtool reads rule groups from YAML, of which JSON is a part.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_vec_pretty(at(rule, "/spec")).unwrap(),
    )
    .unwrap();
    fs::copy(
        repo().join("tests/fixtures/chart-alerts.test.yaml"),
        dir.path().join("alerts.test.yaml"),
    )
    .unwrap();
    let checked = run(
        &promtool(),
        &["check".as_ref(), "rules".as_ref(), "rules.yaml".as_ref()],
        Some(dir.path()),
    )
    .unwrap_or_else(|e| panic!("promtool check rules:\n{e}"));
    assert!(checked.contains("SUCCESS: 5 rules found"), "{checked}");
    run(
        &promtool(),
        &[
            "test".as_ref(),
            "rules".as_ref(),
            "alerts.test.yaml".as_ref(),
        ],
        Some(dir.path()),
    )
    .unwrap_or_else(|e| {
        panic!("promtool test rules (tests/fixtures/chart-alerts.test.yaml):\n{e}")
    });
}

// ---- the whole set ----------------------------------------------------------------------

#[test]
fn with_everything_on_each_object_is_named_labelled_and_in_the_release_namespace() {
    let mut values = postgres(2);
    values["kubernetes"] = json!({"namespaces": ["team-a", "team-b"]});
    values["serviceMonitor"] = json!({"enabled": true});
    values["networkPolicy"] = json!({"enabled": true});
    values["prometheusRule"] = json!({"enabled": true});
    let chart = render(values);
    let kinds: BTreeSet<&str> = chart.0.iter().map(|o| text(o, "/kind")).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ])
    );
    for object in &chart.0 {
        let kind = text(object, "/kind");
        assert!(!text(object, "/apiVersion").is_empty(), "{kind}");
        assert!(!text(object, "/metadata/name").is_empty(), "{kind}");
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/instance"], RELEASE,
            "{kind}"
        );
        let namespace = object["metadata"].get("namespace");
        match kind {
            "ClusterRole" | "ClusterRoleBinding" => assert!(namespace.is_none(), "{kind}"),
            "Role" | "RoleBinding" => assert!(
                [NAMESPACE, "team-a", "team-b"]
                    .iter()
                    .any(|n| namespace == Some(&json!(n))),
                "{kind} in {namespace:?}"
            ),
            _ => assert_eq!(namespace, Some(&json!(NAMESPACE)), "{kind}"),
        }
    }
    assert_bound_to_the_service_account(&chart);
}

#[test]
fn chart_crds_are_the_repository_crds_byte_for_byte() {
    let repo_crds = repo().join("crds/accord.dev.yaml");
    let chart_crds = chart().join("crds/accord.dev.yaml");
    let a = fs::read(&repo_crds).unwrap_or_else(|e| panic!("{}: {e}", repo_crds.display()));
    let b = fs::read(&chart_crds).unwrap_or_else(|e| panic!("{}: {e}", chart_crds.display()));
    assert!(
        a == b,
        "{} differs from {}: copy it over",
        chart_crds.display(),
        repo_crds.display()
    );
}

#[test]
fn chart_metadata_names_the_chart_and_its_version() {
    let chart_yaml = &documents("Chart.yaml", &read(&chart().join("Chart.yaml")))[0];
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["name"], "accord");
    assert_eq!(chart_yaml["version"], "0.1.0");
    assert_eq!(chart_yaml["appVersion"], "0.1.0");
}

/// The `.Values.a.b` paths a text refers to.
fn value_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(".Values.") {
        let path: String = text[at + ".Values.".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        out.insert(path.trim_end_matches('.').to_string());
    }
    out
}

/// The names in `include "name"` or `define "name"`.
fn template_names(text: &str, word: &str) -> BTreeSet<String> {
    let needle = format!("{word} \"");
    text.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &text[at + needle.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// helm renders a misspelled `.Values.x` as nothing, so rendering cannot
/// catch it: every path a template reads must be in values.yaml.
#[test]
fn templates_use_only_declared_values_and_defined_helpers() {
    let values = &documents("values.yaml", &read(&chart().join("values.yaml")))[0];
    let helpers = read(&chart().join("templates/_helpers.tpl"));
    let defined = template_names(&helpers, "define");
    let mut used_values = 0;
    for entry in fs::read_dir(chart().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = read(&path);
        for name in template_names(&text, "include") {
            assert!(
                defined.contains(&name),
                "{file}: includes undefined `{name}`"
            );
        }
        for value in value_paths(&text) {
            let mut node = values;
            for key in value.split('.') {
                node = node
                    .get(key)
                    .unwrap_or_else(|| panic!("{file}: `.Values.{value}` is not in values.yaml"));
            }
            used_values += 1;
        }
    }
    assert!(
        used_values > 20,
        "found only {used_values} value references"
    );
    assert!(chart().join("templates/NOTES.txt").is_file());
}

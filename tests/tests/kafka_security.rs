//! Kafka with TLS and SASL, for real: the whole fleet — ingest with two cameras, a worker and
//! a sink — talks only to the local broker's SASL_SSL listener (SCRAM-SHA-512, the stack's own
//! CA; `scripts/stack/kafka.sh`), as one Kafka user that holds exactly the ACLs the three
//! binaries print with `--print-kafka-acls` for the configurations they run with
//! (docs/kafka-security.md): each printed grant becomes `kafka-acls --add` operations on its
//! resource, and the broker is checked to hold those and no others for the user. A second sink
//! reads the same stats over the mutual-TLS listener as `User:framewire-mtls` (the stack's
//! client certificate), with its own printed ACLs. The services create their topics
//! themselves (their printed ACLs include Create when `topics.create` is on, the default).
//!
//! Checked: every frame ingest published is counted exactly once by both sinks (no decode
//! errors), the dead-letter topic holds only the one record planted for it (a frames record
//! that is no access unit, which both sinks count as a decode error), every service's `/config` shows the TLS settings
//! with the SASL password redacted, no service logs an authorization error, and DescribeConfigs works (the topics' record size check:
//! the frames and stats topics are shrunk after the worker created them, and ingest and both
//! sinks must warn about it). And the authorizer is live: a worker of the same user in a
//! group whose ACL was left out (all its other printed ACLs are granted) is refused by the
//! broker (GroupAuthorizationFailed in its log) and is assigned nothing — so the suite cannot
//! pass against a broker that allows everything, and a grant missing from `--print-kafka-acls`
//! fails the fleet.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use framewire_e2e::{
    KAFKA, RTSP, Service, SinkDb, Topics, bin, camera_toml, eventually, headers_of, metric,
    produce, read_topic, require_stack, sink_section, sink_totals, unique,
};
use rdkafka::message::Message;

/// The local broker's SASL_SSL listener (SCRAM-SHA-512).
const SASL_SSL: &str = "127.0.0.1:9096";
/// The local broker's mutual-TLS listener.
const MTLS: &str = "127.0.0.1:9098";
/// The principal the broker maps the stack's client certificate (CN=framewire-mtls) to.
const MTLS_PRINCIPAL: &str = "User:framewire-mtls";
/// How long ingest streams.
const RUN: Duration = Duration::from_secs(10);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `scripts/stack/certs.sh`'s directory: `$FW_STACK_DIR/certs`.
fn certs() -> PathBuf {
    let stack =
        std::env::var_os("FW_STACK_DIR").map_or_else(|| repo().join(".stack"), PathBuf::from);
    let dir = stack.join("certs");
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}: run `scripts/stack.sh up`", dir.display()))
}

/// Panics unless the broker's secure listeners answer (a stack started before they existed
/// gets them from `scripts/stack.sh up`, which restarts Kafka with the new configuration).
fn require_secure_listeners() {
    for (what, addr) in [("SASL_SSL", SASL_SSL), ("mTLS", MTLS)] {
        let a: SocketAddr = addr.parse().expect("static address");
        assert!(
            TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok(),
            "Kafka's {what} listener is not up on {addr}: run `scripts/stack.sh up`"
        );
    }
}

/// `scripts/stack/kafka.sh ARGS` (Kafka's admin tools as the super user, bounded to 60 s);
/// its output, or a panic with it.
fn kafka_sh(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(repo().join("scripts/stack/kafka.sh"))
        .args(args)
        .output()
        .expect("run scripts/stack/kafka.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kafka.sh {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

/// One grant of `--print-kafka-acls`.
#[derive(Debug, Clone, serde::Deserialize)]
struct Grant {
    resource_type: String,
    pattern_type: String,
    name: String,
    operations: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Printed {
    grants: Vec<Grant>,
}

/// One ACL as the broker lists it: (principal, resource type, pattern type, name, operation),
/// upper case, without `_` (`DESCRIBE_CONFIGS` and `DescribeConfigs` are one).
type Acl = (String, String, String, String, String);

fn norm(s: &str) -> String {
    s.replace('_', "").to_uppercase()
}

impl Grant {
    fn acls(&self, principal: &str) -> Vec<Acl> {
        self.operations
            .iter()
            .map(|op| {
                (
                    principal.to_owned(),
                    norm(&self.resource_type),
                    norm(&self.pattern_type),
                    self.name.clone(),
                    norm(op),
                )
            })
            .collect()
    }
}

/// What `binary --config <config> --print-kafka-acls` prints, run with `env` as the service
/// itself is.
fn printed_acls(binary: &str, config: &str, env: &[(&str, &str)]) -> Vec<Grant> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(bin(binary))
        .arg("--config")
        .arg(&path)
        .arg("--print-kafka-acls")
        .envs(env.iter().copied())
        .output()
        .expect("run --print-kafka-acls");
    assert!(
        out.status.success(),
        "{binary} --print-kafka-acls: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Printed = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{binary} --print-kafka-acls printed no grants ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(!printed.grants.is_empty(), "{binary} printed no grants");
    printed.grants
}

/// `kafka-acls --add` argument lists that create exactly `acls`: the operations of each
/// resource merged, then the resources with the same type, pattern and operations in one
/// command (kafka-acls adds every `--operation` to every resource it names).
fn add_commands(acls: &BTreeSet<Acl>) -> Vec<Vec<String>> {
    let mut ops: BTreeMap<(&str, &str, &str, &str), BTreeSet<&str>> = BTreeMap::new();
    for (principal, rtype, pattern, name, op) in acls {
        ops.entry((principal, rtype, pattern, name))
            .or_default()
            .insert(op);
    }
    let mut commands: BTreeMap<(&str, &str, &str, BTreeSet<&str>), Vec<&str>> = BTreeMap::new();
    for ((principal, rtype, pattern, name), o) in ops {
        commands
            .entry((principal, rtype, pattern, o))
            .or_default()
            .push(name);
    }
    commands
        .into_iter()
        .map(|((principal, rtype, pattern, o), names)| {
            let mut args: Vec<String> = [
                "acl",
                "--add",
                "--allow-principal",
                principal,
                "--resource-pattern-type",
                pattern,
            ]
            .map(str::to_owned)
            .to_vec();
            for name in names {
                args.push(format!("--{}", rtype.to_lowercase()));
                args.push(name.to_owned());
            }
            for op in o {
                args.push("--operation".into());
                // kafka-acls spells them Read, Write, Describe, Create, DescribeConfigs.
                args.push(if op == "DESCRIBECONFIGS" {
                    "DescribeConfigs".to_owned()
                } else {
                    op.to_owned()
                });
            }
            args
        })
        .collect()
}

/// Parses `kafka-acls --list`: every ACL listed with its resource.
fn parse_listed(text: &str) -> Vec<(Acl, String)> {
    let field = |s: &str, key: &str| -> String {
        s.split(&format!("{key}="))
            .nth(1)
            .map(|r| r.split([',', ')']).next().unwrap_or("").trim().to_owned())
            .unwrap_or_default()
    };
    let mut resource = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("ResourcePattern(") {
            resource = Some((
                field(line, "resourceType"),
                field(line, "patternType"),
                field(line, "name"),
            ));
        } else if line.starts_with("(principal=")
            && let Some((rtype, pattern, name)) = &resource
        {
            out.push((
                (
                    field(line, "principal"),
                    norm(rtype),
                    norm(pattern),
                    name.clone(),
                    norm(&field(line, "operation")),
                ),
                field(line, "permissionType"),
            ));
        }
    }
    out
}

/// Removes this run's SCRAM user and every ACL on its resources, also when the test fails.
struct Cleanup {
    user: String,
    resources: Vec<(String, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut args = vec![
            "acl".to_owned(),
            "--remove".into(),
            "--force".into(),
            "--resource-pattern-type".into(),
            "any".into(),
        ];
        for (rtype, name) in &self.resources {
            args.push(format!("--{}", rtype.to_lowercase()));
            args.push(name.clone());
        }
        for a in [args, vec!["deluser".into(), self.user.clone()]] {
            let _ = Command::new("timeout")
                .arg("60")
                .arg(repo().join("scripts/stack/kafka.sh"))
                .args(&a)
                .output();
        }
    }
}

/// `max.message.bytes` of the topics [`shrink_max_message_bytes`] shrinks.
const SHRUNK: &str = "1048576";

/// Sets `max.message.bytes` of `names` to [`SHRUNK`] (as the super user, on PLAINTEXT).
async fn shrink_max_message_bytes(names: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()
        .expect("admin client");
    let configs: Vec<AlterConfig<'_>> = names
        .iter()
        .map(|n| AlterConfig::new(ResourceSpecifier::Topic(n)).set("max.message.bytes", SHRUNK))
        .collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    for r in admin
        .alter_configs(&configs, &opts)
        .await
        .expect("alter configs")
    {
        r.unwrap_or_else(|e| panic!("alter max.message.bytes: {e:?}"));
    }
}

/// `/config`'s `[kafka]` section, and the whole body.
async fn kafka_section(s: &Service) -> (serde_json::Value, String) {
    let (code, body) = s.get("/config").await;
    assert_eq!(code, 200, "{} /config: {body}", s.name);
    let json: serde_json::Value = serde_json::from_str(&body).expect("/config JSON");
    (json["kafka"].clone(), body)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_runs_over_sasl_ssl_with_only_its_printed_acls() {
    require_stack();
    require_secure_listeners();
    let started = Instant::now();
    let certs = certs();
    let ca = certs.join("ca.crt");
    let topics = Topics::unique("kafka-security");
    let user = unique("e2e-fleet");
    let password = unique("pw");
    let principal = format!("User:{user}");

    // --- the configurations: every group named, so that what is printed is what runs ---
    let sasl = |toml: String| {
        format!(
            "{}\n[kafka.options]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{user}\"\n\"ssl.ca.location\" = \"{}\"\n",
            toml.replace(
                &format!("brokers = \"{KAFKA}\""),
                &format!("brokers = \"{SASL_SSL}\"")
            ),
            ca.display()
        )
    };
    // The password comes from the environment, as the docs say to pass it.
    let env = [("FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD", password.as_str())];
    let cameras = [unique("sec-moving"), unique("sec-black")];
    // One frames record that is no access unit: the worker writes it to the DLQ, the sinks
    // count it as a decode error of its camera (the key) — DLQ Write and Read under the ACLs.
    let poison = unique("sec-poison");
    let ingest_group = unique("e2e-ingest");
    let ingest_config = sasl(format!(
        "{}\n[ingest]\ngroup_id = \"{ingest_group}\"\n\n{}{}",
        topics.toml(),
        camera_toml(&cameras[0], &format!("{RTSP}/moving"), ""),
        camera_toml(&cameras[1], &format!("{RTSP}/black"), "")
    ));
    let worker_config = |group: &str| {
        sasl(format!(
            "{}\n[worker]\ngroup_id = \"{group}\"\n",
            topics.toml()
        ))
    };
    let fleet_worker = worker_config(&unique("e2e-worker"));
    let db_dir = tempfile::tempdir().expect("temp dir");
    let dbs = [
        SinkDb::Sqlite(db_dir.path().join("sasl.sqlite")),
        SinkDb::Sqlite(db_dir.path().join("mtls.sqlite")),
    ];
    let windows = "window_ms = 2000\nflush_interval_ms = 200\n";
    let (sink_sasl_section, _) = sink_section(&unique("e2e-sink"), &dbs[0], windows);
    let sink_config = sasl(format!("{}\n{sink_sasl_section}", topics.toml()));
    let (sink_mtls_section, _) = sink_section(&unique("e2e-sink-mtls"), &dbs[1], windows);
    let sink_mtls_config = format!(
        "{}\n{sink_mtls_section}\n[kafka.options]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"{}\"\n\"ssl.certificate.location\" = \"{}\"\n\"ssl.key.location\" = \"{}\"\n",
        topics.toml().replace(
            &format!("brokers = \"{KAFKA}\""),
            &format!("brokers = \"{MTLS}\"")
        ),
        ca.display(),
        certs.join("client.crt").display(),
        certs.join("client.key").display()
    );
    // The negative case: the same user, a group of its own that gets no ACL.
    let denied_group = unique("e2e-worker-noacl");
    let denied_worker = worker_config(&denied_group);

    // --- the user and exactly the ACLs the binaries print ---
    let mut wanted: BTreeSet<Acl> = BTreeSet::new();
    for (binary, config, who, env) in [
        (
            "framewire-ingest",
            &ingest_config,
            principal.as_str(),
            &env[..],
        ),
        (
            "framewire-worker",
            &fleet_worker,
            principal.as_str(),
            &env[..],
        ),
        ("framewire-sink", &sink_config, principal.as_str(), &env[..]),
        ("framewire-sink", &sink_mtls_config, MTLS_PRINCIPAL, &[][..]),
    ] {
        for g in printed_acls(binary, config, env) {
            wanted.extend(g.acls(who));
        }
    }
    let denied_printed = printed_acls("framewire-worker", &denied_worker, &env);
    let denied_group_acls: BTreeSet<Acl> = denied_printed
        .iter()
        .filter(|g| g.resource_type == "group")
        .flat_map(|g| g.acls(&principal))
        .collect();
    assert!(
        denied_group_acls.iter().any(|a| a.3 == denied_group),
        "the worker prints no ACL for its group {denied_group}: {denied_printed:?}"
    );
    let denied_rest: BTreeSet<Acl> = denied_printed
        .iter()
        .filter(|g| g.resource_type != "group")
        .flat_map(|g| g.acls(&principal))
        .collect();
    assert!(
        denied_rest.is_subset(&wanted),
        "the second worker's printed ACLs differ from the first's beyond the group: {:?}",
        denied_rest.difference(&wanted).collect::<Vec<_>>()
    );
    let resources: BTreeSet<(String, String)> = wanted
        .iter()
        .map(|a| (a.1.clone(), a.3.clone()))
        .chain([("GROUP".to_owned(), denied_group.clone())])
        .collect();
    let _cleanup = Cleanup {
        user: user.clone(),
        resources: resources.iter().cloned().collect(),
    };
    kafka_sh(&["user", &user, &password]);
    let commands = add_commands(&wanted);
    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kafka_sh(&args);
    }
    // What the broker holds for these two principals (and for everyone, User:*) on every
    // resource the fleet uses — prefixed and wildcard ACLs that match included — is exactly
    // what was printed, all of it ALLOW.
    let mut list = vec![
        "acl".to_owned(),
        "--list".into(),
        "--resource-pattern-type".into(),
        "match".into(),
    ];
    for (rtype, name) in &resources {
        list.push(format!("--{}", rtype.to_lowercase()));
        list.push(name.clone());
    }
    let listed = kafka_sh(&list.iter().map(String::as_str).collect::<Vec<_>>());
    let held: Vec<(Acl, String)> = parse_listed(&listed)
        .into_iter()
        .filter(|(a, _)| a.0 == principal || a.0 == MTLS_PRINCIPAL || a.0 == "User:*")
        .collect();
    let held_set: BTreeSet<Acl> = held.iter().map(|(a, _)| a.clone()).collect();
    assert!(
        held.iter().all(|(_, p)| p == "ALLOW"),
        "DENY ACLs on the fleet's resources:\n{listed}"
    );
    assert_eq!(
        held_set, wanted,
        "the broker's ACLs for {principal} and {MTLS_PRINCIPAL} are not exactly the printed ones\n{listed}"
    );
    println!(
        "{} ACLs for {principal} and {MTLS_PRINCIPAL} from --print-kafka-acls, {} kafka-acls commands, in {:.1} s",
        wanted.len(),
        commands.len(),
        started.elapsed().as_secs_f64()
    );

    // --- the fleet ---
    // The worker creates the frames, stats, detections and dead-letter topics (Create). Then
    // the frames and stats topics take smaller records than the services are configured for,
    // so that the services started next can only say so if DescribeConfigs works for them.
    let worker = Service::start("framewire-worker", &fleet_worker, &env);
    worker.wait_ready(Duration::from_secs(60)).await;
    shrink_max_message_bytes(&[&topics.frames, &topics.stats]).await;
    let sink = Service::start("framewire-sink", &sink_config, &env);
    let sink_mtls = Service::start("framewire-sink", &sink_mtls_config, &[]);
    for s in [&sink, &sink_mtls] {
        s.wait_ready(Duration::from_secs(60)).await;
    }
    let denied = Service::start("framewire-worker", &denied_worker, &env);
    let mut ingest = Service::start("framewire-ingest", &ingest_config, &env);
    ingest.wait_ready(Duration::from_secs(60)).await;
    for (s, shrunk) in [
        (&ingest, vec![&topics.frames]),
        (&sink, vec![&topics.frames, &topics.stats]),
        (&sink_mtls, vec![&topics.frames, &topics.stats]),
    ] {
        let log = s.log();
        for t in shrunk {
            assert!(
                log.contains(&format!("topic {t} allows records of at most {SHRUNK}")),
                "{} did not check {t}'s max.message.bytes (DescribeConfigs)\n--- log ---\n{log}",
                s.name
            );
        }
    }
    // Every service was configured for the secure listener, the password never shown.
    for (s, protocol, brokers) in [
        (&ingest, "SASL_SSL", SASL_SSL),
        (&worker, "SASL_SSL", SASL_SSL),
        (&sink, "SASL_SSL", SASL_SSL),
        (&denied, "SASL_SSL", SASL_SSL),
        (&sink_mtls, "SSL", MTLS),
    ] {
        let (k, body) = kafka_section(s).await;
        assert_eq!(k["brokers"], brokers, "{}: {k}", s.name);
        let o = &k["options"];
        assert_eq!(o["security.protocol"], protocol, "{}: {k}", s.name);
        assert!(
            !body.contains(&password),
            "{}: /config shows the SASL password: {body}",
            s.name
        );
        if protocol == "SASL_SSL" {
            assert_eq!(o["sasl.mechanism"], "SCRAM-SHA-512", "{}: {k}", s.name);
            assert_eq!(o["sasl.username"], user.as_str(), "{}: {k}", s.name);
            // Set from FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD: shown under librdkafka's
            // name, the value redacted.
            assert_eq!(o["sasl.password"], "[redacted]", "{}: {k}", s.name);
        } else {
            assert!(o["ssl.certificate.location"].is_string(), "{}: {k}", s.name);
        }
    }

    produce(&topics.frames, &poison, Some(b"not an access unit")).await;
    tokio::time::sleep(RUN).await;
    let status = ingest.terminate(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "ingest exit on SIGTERM\n{}",
        ingest.log()
    );

    // --- the outcome: every published frame counted once by both sinks, no dead letters ---
    let frames = tokio::task::spawn_blocking({
        let t = topics.frames.clone();
        move || read_topic(&t, Duration::from_secs(2))
    })
    .await
    .expect("read frames");
    let mut published: BTreeMap<String, BTreeSet<(String, u64)>> = BTreeMap::new();
    for m in frames.iter().filter(|m| m.key() != Some(poison.as_bytes())) {
        let h = headers_of(m);
        published
            .entry(h["fw-camera"].clone())
            .or_default()
            .insert((
                h["fw-session"].clone(),
                h["fw-seq"].parse().expect("fw-seq"),
            ));
    }
    let expected: BTreeMap<String, (i64, i64, i64)> = cameras
        .iter()
        .map(|c| {
            let n = published.get(c).map_or(0, BTreeSet::len) as i64;
            assert!(
                n > 100,
                "camera {c}: only {n} frames published\n{}",
                ingest.log()
            );
            (c.clone(), (n, 0, 0))
        })
        .chain([(poison.clone(), (0, 1, 0))])
        .collect();
    let ids: Vec<String> = expected.keys().cloned().collect();
    let (ids, expected) = (&ids, &expected);
    for (db, s) in dbs.iter().zip([&sink, &sink_mtls]) {
        eventually(
            &format!("{} to count every frame once", s.name),
            Duration::from_secs(45),
            move || async move {
                let got = sink_totals(db, ids).await?;
                if &got == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "(frames, decode errors, gaps) {got:?}, expected {expected:?}"
                    ))
                }
            },
        )
        .await;
    }
    let dlq = tokio::task::spawn_blocking({
        let t = topics.dlq.clone();
        move || read_topic(&t, Duration::from_secs(1))
    })
    .await
    .expect("read dlq");
    assert!(
        dlq.len() == 1 && dlq[0].key() == Some(poison.as_bytes()),
        "{} dead letters, expected only the one of {poison}: {:?}",
        dlq.len(),
        dlq.iter().map(headers_of).collect::<Vec<_>>()
    );

    // No service met a refusal on the way (a reader that only logs it, such as ingest's
    // camera registry or the sink's detections, would otherwise go unnoticed).
    for s in [&ingest, &worker, &sink, &sink_mtls] {
        let log = s.log();
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.to_lowercase().contains("authorization"))
            .collect();
        assert!(
            refused.is_empty(),
            "{} was refused by the broker's authorizer:\n{}",
            s.name,
            refused.join("\n")
        );
    }

    // --- the authorizer is live: the worker without its group ACL gets nothing ---
    let refusal = eventually(
        "the broker to refuse the worker without its group ACL",
        Duration::from_secs(20),
        || async {
            let log = denied.log();
            log.lines()
                .find(|l| l.contains("GroupAuthorizationFailed"))
                .map(str::to_owned)
                .ok_or_else(|| "no GroupAuthorizationFailed in its log yet".to_owned())
        },
    )
    .await;
    let (_, metrics) = denied.get("/metrics").await;
    let assigned = metric(&metrics, "framewire_worker_assigned_partitions").unwrap_or(0.0);
    assert_eq!(
        assigned, 0.0,
        "the worker without its group ACL owns partitions"
    );
    // ... and says so where an operator looks: unready, with the reason, counted.
    let (ready, why) = eventually(
        "the worker without its group ACL to be unready",
        Duration::from_secs(20),
        || async {
            let (code, body) = denied.get("/readyz").await;
            if code == 503 && body.contains("kafka_access") && body.contains("--print-kafka-acls") {
                Ok((code, body))
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
    let (_, metrics) = denied.get("/metrics").await;
    assert!(
        metric(
            &metrics,
            "framewire_worker_consume_errors_total{kind=\"access\"}"
        ) >= Some(1.0),
        "access refusals counted"
    );
    println!("unready: {why}");
    println!(
        "refused (group {denied_group}, /readyz {ready}): {}",
        refusal.trim()
    );

    let counted: i64 = expected.values().map(|v| v.0).sum();
    println!(
        "{counted} frames of {} cameras over SASL_SSL, counted once by the SASL_SSL and the mTLS sink; 1 dead letter (planted); {:.1} s",
        cameras.len(),
        started.elapsed().as_secs_f64()
    );
    for mut s in [worker, sink, sink_mtls, denied] {
        let status = s.terminate(Duration::from_secs(30));
        assert_eq!(
            status.code(),
            Some(0),
            "{} exit on SIGTERM\n{}",
            s.name,
            s.log()
        );
    }
    topics.delete().await;
}

//! The Helm chart `deploy/helm/chorus` checked against the real tools and
//! binaries: rendered by Helm's own template engine
//! (`scripts/helm-render.sh`: the PyPI `helm-python-sdk`, Helm's Go SDK
//! built as a C library) with `helm lint --strict`, and every object
//! validated against the Kubernetes OpenAPI schemas of 1.27 and 1.37 (PyPI
//! `kubernetes-validate`, strict: unknown fields fail). Each values file
//! under `deploy/helm/chorus/ci/` is rendered, and its pods are then run
//! here as a kubelet would run them: the rendered command lines of the
//! agents and of the controller Job (its init container, the shell script
//! it ships, and `controller run`) are started with the real binaries,
//! against Secrets, ConfigMaps and volumes made into directories, and the
//! run directory they write is checked.
//!
//! What a cluster would provide is emulated, and only that: each pod gets
//! its own loopback address (127.0.0.11, .12, …) as its pod IP, a free port
//! stands in for the agent port on those addresses, and cluster DNS names
//! are mapped to those addresses. These rewrites are applied to the
//! rendered command lines and environment after they are checked as
//! rendered.
//!
//! The rendering, the object accessors and the emulated cluster are in
//! [`chorus_tests::helm`]; the container image and the systemd unit are
//! checked in `deploy_image.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use chorus_tests::helm::{
    AGENT_PORT, Cluster, FAST_WAIT, IMAGE_UID, PodInfo, Rendered, TLS_KEYS, argv,
    assert_cli_accepts, assert_ok, certs, chart_dir, ci_values, container, containers, expand,
    flag_value, has_volume, pod_spec, program_argv, render, render_error, run_agents, run_job,
    run_to_end, secret_items, start_agent, text, volume,
};
use chorus_tests::scrape::{scrape, sum_lines};
use chorus_tests::servers::Server;
use chorus_tests::{Tsv, bin};

// --- checks every rendering passes -------------------------------------------

/// Checks that hold whatever the values: consistent names and labels,
/// unprivileged pods with resource requests, commands the CLI takes, a
/// plan the controller accepts.
fn check_common(r: &Rendered) {
    let agents = r.agents();
    let pod = pod_spec(agents);
    let labels = &agents["spec"]["template"]["metadata"]["labels"];
    // The Service selects exactly the agent pods.
    let services = r.of_kind("Service");
    assert_eq!(services.len(), 1);
    let svc = services[0];
    assert_eq!(
        svc["spec"]["clusterIP"], "None",
        "the Service must be headless"
    );
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &labels[k], v,
            "Service selector {k} does not match the agent pods"
        );
    }
    assert_eq!(
        agents["spec"]["selector"]["matchLabels"],
        svc["spec"]["selector"]
    );
    if agents["kind"] == "StatefulSet" {
        assert_eq!(agents["spec"]["serviceName"], svc["metadata"]["name"]);
    }
    // Unprivileged, as the image's user, with resource requests.
    let mut pods = vec![pod, pod_spec(r.job())];
    pods.extend(r.of_kind("Pod").into_iter().map(pod_spec));
    for p in &pods {
        assert_eq!(p["securityContext"]["runAsNonRoot"], true);
        assert_eq!(p["securityContext"]["runAsUser"], IMAGE_UID);
        assert_eq!(p["automountServiceAccountToken"], false);
        for c in containers(p) {
            assert!(
                c["resources"]["requests"]["cpu"].is_string()
                    && c["resources"]["requests"]["memory"].is_string(),
                "container {} has no requests",
                c["name"]
            );
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        }
    }
    // Every command line of the agents' and the Job's pods parses with the
    // real binaries (the results reader, if any, only runs `sleep`).
    for p in pods.iter().take(2) {
        for c in containers(p) {
            let args = program_argv(c);
            // As the kubelet would run them ($(POD_NAME) and such filled in).
            let env: Vec<(String, String)> = ["POD_NAME", "POD_IP", "NODE_NAME"]
                .iter()
                .map(|k| (k.to_string(), "x".to_string()))
                .collect();
            let args: Vec<String> = args.iter().map(|a| expand(a, &env)).collect();
            assert_cli_accepts(&args);
        }
    }
    // The agent is the program of the agent pods, and listens on the port
    // the Service and the probe name.
    let agent = container(pod, "agent");
    let args = argv(agent);
    assert_eq!(args[0], "agent");
    let port = svc["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(
        flag_value(&args, "--listen"),
        Some(format!("0.0.0.0:{port}").as_str())
    );
    assert_eq!(agent["ports"][0]["containerPort"], port);
    assert_eq!(agent["readinessProbe"]["tcpSocket"]["port"], "grpc");
    // The plan the Job runs is a valid plan.
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("plan.yaml");
    std::fs::write(&plan, r.plan()).unwrap();
    let out = Command::new(bin("controller"))
        .arg("validate")
        .arg(&plan)
        .output()
        .unwrap();
    assert_ok(&out, "controller validate of the chart's plan");
}

#[test]
fn every_values_file_renders_valid_objects_and_accepted_commands() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "values files: {files:?}");
    let mut modes = BTreeSet::new();
    for f in std::iter::once(None).chain(files.iter().map(|f| Some(f.as_path()))) {
        let r = render(f, &[]);
        check_common(&r);
        let agent_args = argv(container(pod_spec(r.agents()), "agent"));
        let tls = agent_args.iter().any(|a| a == "--tls-dir");
        modes.insert((text(&r.agents()["kind"]).to_string(), tls));
    }
    // StatefulSet and DaemonSet, each with TLS on and off, are covered.
    for kind in ["StatefulSet", "DaemonSet"] {
        for tls in [true, false] {
            assert!(
                modes.contains(&(kind.to_string(), tls)),
                "{kind} tls={tls} not covered: {modes:?}"
            );
        }
    }
    // The default plan targets the agents' scratch volume.
    let r = render(None, &[]);
    let scratch = container(pod_spec(r.agents()), "agent")["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "scratch")
        .map(|m| text(&m["mountPath"]).to_string())
        .expect("a scratch mount");
    assert!(
        r.plan().contains(&format!("file://{scratch}/")),
        "{}",
        r.plan()
    );
}

#[test]
fn the_cli_check_and_the_validation_have_teeth() {
    // The --help check refuses what the parser refuses.
    let out = Command::new(bin("agent"))
        .args(["--listen", "0.0.0.0:7167", "--no-such-flag", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin("agent"))
        .args(["--etcd-ttl", "0", "--help"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad value must fail before --help"
    );
    // Schema validation is strict: an unknown field fails, naming it.
    let e = render_error(None, &["agents.securityContext.bogusField=1"]);
    assert!(e.contains("bogusField") && e.contains("1.27.0"), "{e}");
    // Values are checked against values.schema.json by Helm: a misspelt
    // or unknown key, or a value out of range, fails naming it.
    let e = render_error(None, &["agents.replica=3"]);
    assert!(e.contains("'replica' not allowed"), "{e}");
    let e = render_error(None, &["agents.kind=Deployment"]);
    assert!(e.contains("/agents/kind"), "{e}");
    let e = render_error(None, &["security.mode=plain"]);
    assert!(e.contains("/security/mode"), "{e}");
    // And the templates refuse combinations they cannot honour.
    let e = render_error(
        None,
        &[
            "security.mode=token",
            "controller.forwardEnv={AWS_SECRET_ACCESS_KEY}",
        ],
    );
    assert!(e.contains("forwardEnv needs security.mode: tls"), "{e}");
    let e = render_error(
        None,
        &[
            "results.persistence.enabled=false",
            "results.reader.enabled=true",
        ],
    );
    assert!(e.contains("results.reader needs"), "{e}");
}

// --- each values file, run ----------------------------------------------------

#[test]
fn statefulset_with_tls_runs_as_rendered() {
    let r = render(Some(&ci_values("statefulset-tls-values.yaml")), &[]);
    let kinds = r.kinds();
    let expected: BTreeSet<(String, String)> = [
        ("StatefulSet", "chorus-agent"),
        ("Service", "chorus-agents"),
        ("ConfigMap", "chorus-plan"),
        ("ConfigMap", "chorus-scripts"),
        ("Job", "chorus-controller-1"),
        ("PersistentVolumeClaim", "chorus-results"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(kinds, expected);

    let sts = r.agents();
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let pod = pod_spec(sts);
    // spreadAcrossNodes: hard.
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    let agent = container(pod, "agent");
    // Guaranteed QoS (what the static CPU manager pins): limits = requests.
    assert_eq!(agent["resources"]["limits"], agent["resources"]["requests"]);
    // Credentials from a Secret, never the plan.
    assert_eq!(agent["envFrom"][0]["secretRef"]["name"], "s3-credentials");
    assert!(!r.plan().contains("AWS_"));
    // mTLS: each side gets only its own key.
    assert_eq!(
        secret_items(volume(pod, "tls")),
        ["ca.pem", "agent.pem", "agent.key"]
    );
    let job_pod = pod_spec(r.job());
    assert_eq!(
        secret_items(volume(job_pod, "tls")),
        ["ca.pem", "controller.pem", "controller.key"]
    );
    let agent_args = argv(agent);
    assert_eq!(flag_value(&agent_args, "--id"), Some("$(POD_NAME)"));
    assert_eq!(
        flag_value(&agent_args, "--tls-dir"),
        Some("/etc/chorus/tls")
    );
    let run_args = argv(container(job_pod, "controller"));
    let fqdn = |i: usize| format!("chorus-agent-{i}.chorus-agents.default.svc.cluster.local");
    let rendered_list = format!("{}:{AGENT_PORT},{}:{AGENT_PORT}", fqdn(0), fqdn(1));
    assert_eq!(
        flag_value(&run_args, "--agents"),
        Some(rendered_list.as_str())
    );
    assert_eq!(flag_value(&run_args, "--target"), Some("mem://ci"));
    assert_eq!(flag_value(&run_args, "--duration"), Some("1s"));
    assert_eq!(
        flag_value(&run_args, "--forward-env"),
        Some("CHORUS_CI_FORWARDED")
    );
    assert_eq!(flag_value(&run_args, "--results"), Some("/results"));
    assert_eq!(
        flag_value(&argv(container(job_pod, "wait-for-agents")), "--agents"),
        Some(rendered_list.as_str())
    );

    // Run it: two agent pods, then the Job.
    let ips = ["127.0.0.11", "127.0.0.12"];
    let mut cluster = Cluster::new(&r, &ips);
    let tls = cluster.root.path().join("certs");
    certs(&tls);
    cluster.secret_from_dir("chorus-ci-tls", &tls, &TLS_KEYS);
    cluster.secret(
        "s3-credentials",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIACI".into()),
            ("AWS_SECRET_ACCESS_KEY", "ci-secret".into()),
        ],
    );
    for (i, ip) in ips.iter().enumerate() {
        cluster.dns.push((fqdn(i), ip.to_string()));
    }
    let mut agents = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let me = PodInfo::new(&format!("chorus-agent-{i}"), &format!("node-{i}"), ip);
        agents.push(start_agent(&cluster.prepare(pod, agent, &me)));
    }
    let results = cluster.claim_dir("chorus-results").to_path_buf();
    let run = run_job(&cluster, &results);
    let port = cluster.port;
    assert_eq!(
        run_agents(&run),
        [
            ("chorus-agent-0".to_string(), format!("127.0.0.11:{port}")),
            ("chorus-agent-1".to_string(), format!("127.0.0.12:{port}")),
        ]
    );
    assert_eq!(agents[0].addr, format!("127.0.0.11:{port}"));
    // --target from the values replaced the plan's file:// target.
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    assert!(timeline.rows.len() > 50, "{} ops", timeline.rows.len());
    assert!(
        timeline
            .column("endpoint")
            .iter()
            .all(|e| e.starts_with("mem://")),
        "ops went elsewhere than --target mem://ci"
    );

    // The init container waits for every agent, and gives up when one
    // never answers.
    drop(agents.pop());
    let init = cluster.prepare(
        job_pod,
        container(job_pod, "wait-for-agents"),
        &PodInfo::new("c2", "n", "127.0.0.10"),
    );
    let out = run_to_end(&init, &[FAST_WAIT, ("CHORUS_WAIT_SECONDS", "2")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("agents not ready after 2s"), "{stderr}");
}

#[test]
fn statefulset_without_tls_runs_as_rendered() {
    let r = render(Some(&ci_values("statefulset-insecure-values.yaml")), &[]);
    // No PVC (results in an emptyDir), no TLS or token anywhere.
    assert!(r.of_kind("PersistentVolumeClaim").is_empty());
    let sts = r.agents();
    assert_eq!(sts["spec"]["replicas"], 3);
    let pod = pod_spec(sts);
    let job_pod = pod_spec(r.job());
    for p in [pod, job_pod] {
        assert!(!has_volume(p, "tls") && !has_volume(p, "token"));
        for c in containers(p) {
            let a = argv(c);
            assert!(
                !a.iter().any(|x| x == "--tls-dir" || x == "--token-file"),
                "{a:?}"
            );
        }
    }
    assert!(argv(container(pod, "agent")).contains(&"--insecure".to_string()));
    assert!(argv(container(job_pod, "controller")).contains(&"--insecure".to_string()));
    // spreadAcrossNodes: none; spool in memory; no scratch volume.
    assert!(pod["affinity"].is_null());
    assert_eq!(volume(pod, "spool")["emptyDir"]["medium"], "Memory");
    assert!(!has_volume(pod, "scratch"));
    assert!(volume(job_pod, "results")["emptyDir"].is_object());
    // metrics.enabled: each agent serves /metrics on its pod IP, announced
    // by the scrape annotations, on the container and the Service.
    let agent_args = argv(container(pod, "agent"));
    assert_eq!(
        flag_value(&agent_args, "--metrics-listen"),
        Some("$(POD_IP):9464")
    );
    let notes = &sts["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(notes["prometheus.io/scrape"], "true");
    assert_eq!(notes["prometheus.io/port"], "9464");
    assert_eq!(notes["prometheus.io/path"], "/metrics");
    let service = &r.of_kind("Service")[0];
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics" && p["port"] == 9464),
        "{service}"
    );

    let ips = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];
    let mut cluster = Cluster::new(&r, &ips);
    let mut agents = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("chorus-agent-{i}");
        cluster.dns.push((
            format!("{name}.chorus-agents.default.svc.cluster.local"),
            ip.to_string(),
        ));
        agents.push(start_agent(&cluster.prepare(
            pod,
            container(pod, "agent"),
            &PodInfo::new(&name, "n", ip),
        )));
    }
    // The results emptyDir of the controller pod.
    let results = cluster.root.path().join("pods/controller/volumes/results");
    let run = run_job(&cluster, &results);
    let ids: Vec<String> = run_agents(&run).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["chorus-agent-0", "chorus-agent-1", "chorus-agent-2"]);
    // ops: 300 over three agents, after 60 prepared objects.
    let timeline = Tsv::read_zst(&run.join("timeline.tsv.zst"));
    assert_eq!(timeline.rows.len(), 360);
    // Each agent's own /metrics keeps the finished run: together, every
    // GET of the stage, each agent under its own id.
    let mut gets = 0.0;
    for (i, ip) in ips.iter().enumerate() {
        let text = scrape(&format!("{ip}:9464")).expect("an agent's /metrics");
        assert!(text.contains("chorus_run_finished 1"), "{text}");
        let mine =
            format!(r#"chorus_live_ops_total{{stage="reads",agent="chorus-agent-{i}",op="GET"}}"#);
        gets += sum_lines(&text, &mine);
    }
    assert_eq!(gets, 300.0);
}

#[test]
fn daemonset_with_a_token_finds_its_agents_through_the_service() {
    let r = render(Some(&ci_values("daemonset-token-values.yaml")), &[]);
    let ds = r.agents();
    assert_eq!(ds["kind"], "DaemonSet");
    assert!(ds["spec"]["replicas"].is_null());
    let pod = pod_spec(ds);
    assert_eq!(pod["nodeSelector"]["chorus.example.com/agent"], "true");
    assert_eq!(pod["tolerations"][0]["value"], "storage-bench");
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    // A DaemonSet's Service lists ready agents only.
    assert_eq!(
        r.of_kind("Service")[0]["spec"]["publishNotReadyAddresses"],
        false
    );
    let agent = container(pod, "agent");
    let agent_args = argv(agent);
    assert_eq!(flag_value(&agent_args, "--id"), Some("$(NODE_NAME)"));
    assert_eq!(
        flag_value(&agent_args, "--token-file"),
        Some("/etc/chorus/token/token")
    );
    assert_eq!(secret_items(volume(pod, "token")), ["token"]);
    assert!(
        agent["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/mnt/fs"),
        "the file system under test is not mounted"
    );
    // The existing claim is used, none is made, and the reader mounts it.
    assert!(r.of_kind("PersistentVolumeClaim").is_empty());
    let reader = r.get("Pod", "chorus-results");
    assert_eq!(
        volume(pod_spec(reader), "results")["persistentVolumeClaim"]["claimName"],
        "bench-results"
    );
    let job = r.job();
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 86400);
    let job_pod = pod_spec(job);
    let init = container(job_pod, "wait-for-agents");
    let init_env: BTreeMap<String, String> = init["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (text(&e["name"]).to_string(), text(&e["value"]).to_string()))
        .collect();
    assert_eq!(init_env["CHORUS_DISCOVERY"], "dns");
    assert_eq!(init_env["CHORUS_EXPECTED_AGENTS"], "2");
    let service = "chorus-agents.default.svc.cluster.local";
    assert_eq!(init_env["CHORUS_AGENTS_SERVICE"], service);
    // No agent list in the controller's flags: it comes from the Service.
    assert!(!argv(container(job_pod, "controller")).contains(&"--agents".to_string()));

    let ips = ["127.0.0.31", "127.0.0.32"];
    let mut cluster = Cluster::new(&r, &ips);
    cluster.secret("chorus-ci-token", &[("token", "ci-token-5e1f\n".into())]);
    let results = cluster.claim("bench-results");
    cluster.claim("shared-fs");
    // Cluster DNS for the headless Service: its name resolves to the
    // ready agents (a `getent` in front of the real one on PATH).
    let shims = cluster.root.path().join("dns");
    std::fs::create_dir_all(&shims).unwrap();
    let lines: String = ips
        .iter()
        .map(|ip| format!("{ip} STREAM {service}\n{ip} DGRAM\n{ip} RAW\n"))
        .collect();
    let getent = shims.join("getent");
    std::fs::write(
        &getent,
        format!(
            "#!/bin/sh\nif [ \"$1\" = ahosts ] && [ \"$2\" = {service} ]; then printf '%s' '{lines}'; exit 0; fi\nexec /usr/bin/getent \"$@\"\n"
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&getent)
        .status()
        .unwrap();
    cluster.path_dirs.insert(0, shims);
    let mut agents = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let node = format!("node-{}", ["a", "b"][i]);
        let me = PodInfo::new(&format!("chorus-agent-{node}"), &node, ip);
        agents.push(start_agent(&cluster.prepare(pod, agent, &me)));
    }
    let run = run_job(&cluster, &results);
    let port = cluster.port;
    let mut found = run_agents(&run);
    found.sort();
    assert_eq!(
        found,
        [
            ("node-a".to_string(), format!("127.0.0.31:{port}")),
            ("node-b".to_string(), format!("127.0.0.32:{port}")),
        ]
    );
}

#[test]
fn daemonset_with_etcd_runs_as_rendered() {
    let r = render(Some(&ci_values("daemonset-etcd-tls-values.yaml")), &[]);
    let pod = pod_spec(r.agents());
    let agent = container(pod, "agent");
    let agent_args = argv(agent);
    let url = "http://etcd.etcd.svc.cluster.local:2379";
    assert_eq!(flag_value(&agent_args, "--etcd"), Some(url));
    assert_eq!(
        flag_value(&agent_args, "--advertise"),
        Some(format!("$(POD_IP):{AGENT_PORT}").as_str())
    );
    assert_eq!(flag_value(&agent_args, "--etcd-ttl"), Some("15"));
    let job_pod = pod_spec(r.job());
    let run_args = argv(container(job_pod, "controller"));
    assert_eq!(flag_value(&run_args, "--etcd"), Some(url));
    assert_eq!(flag_value(&run_args, "--concurrency"), Some("1"));
    assert_eq!(flag_value(&run_args, "--duration"), Some("1s"));
    // storageClass "-": an explicitly empty class.
    assert_eq!(
        r.of_kind("PersistentVolumeClaim")[0]["spec"]["storageClassName"],
        ""
    );

    let etcd = Server::start("etcd");
    let ips = ["127.0.0.41", "127.0.0.42"];
    let mut cluster = Cluster::new(&r, &ips);
    cluster
        .urls
        .push((url.to_string(), etcd.get("ETCD_ENDPOINT").to_string()));
    let tls = cluster.root.path().join("certs");
    certs(&tls);
    cluster.secret_from_dir("chorus-tls", &tls, &TLS_KEYS);
    let mut agents = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let node = format!("etcd-node-{i}");
        agents.push(start_agent(&cluster.prepare(
            pod,
            agent,
            &PodInfo::new(&node, &node, ip),
        )));
    }
    let results = cluster.claim_dir("chorus-results").to_path_buf();
    let run = run_job(&cluster, &results);
    let port = cluster.port;
    let mut found = run_agents(&run);
    found.sort();
    assert_eq!(
        found,
        [
            ("etcd-node-0".to_string(), format!("127.0.0.41:{port}")),
            ("etcd-node-1".to_string(), format!("127.0.0.42:{port}")),
        ]
    );
}

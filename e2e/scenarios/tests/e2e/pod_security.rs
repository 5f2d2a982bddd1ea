//! Pod Security: in namespaces that enforce the `restricted` profile, the default mover pods
//! (non-root, no capabilities, RuntimeDefault seccomp, no privilege escalation) are admitted
//! and a full replication succeeds.

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_e2e::crs::{self, SECRET, SECTION};
use scribe_e2e::diag::recent_events;
use scribe_e2e::objects::{self, names};
use scribe_e2e::record::Recorder;
use scribe_e2e::volumes::assert_volume_matches;
use scribe_e2e::{Scenario, tree, volumes};

use crate::common::{self, SYNC};

const RESTRICTED: &[(&str, &str)] = &[
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
];

fn check_restricted_pods(pods: &Recorder<Pod>, ns: &str) -> Result<()> {
    let all = pods.all();
    ensure!(!all.is_empty(), "no mover pod was admitted in {ns}");
    for p in &all {
        let spec = p.first.spec.clone().context("pod without spec")?;
        let psc = spec.security_context.clone().unwrap_or_default();
        ensure!(
            psc.run_as_non_root == Some(true) && psc.run_as_user == Some(65532),
            "pod {} should run as non-root 65532: {psc:?}",
            p.name()
        );
    }
    Ok(())
}

#[tokio::test]
async fn restricted_namespaces_admit_the_default_mover_pods() -> Result<()> {
    let s = Scenario::start("pod_security").await?;
    let vols = volumes(&s.cluster)?;
    let src = s.namespace_with_labels("psa-src", RESTRICTED).await?;
    let dst = s.namespace_with_labels("psa-dst", RESTRICTED).await?;
    for ns in [&src, &dst] {
        objects::rclone_secret(&s.cluster, ns, SECRET, SECTION, &[]).await?;
    }
    let remote = common::remote(&src, "psa")?;
    let tree = tree::sample_tree(7);
    common::pvc_with_tree(&s, &vols, &src, "data", &tree).await?;
    let src_pods = Recorder::<Pod>::start(s.client(), &src).await?;
    let dst_pods = Recorder::<Pod>::start(s.client(), &dst).await?;

    let mut rs = crs::source("psa", "data", &remote, SourceCopyMethod::Snapshot);
    rs.spec.trigger = crs::manual("1");
    crs::create(s.client(), &src, &rs).await?;
    let _: ReplicationSource = s.wait_manual_synced(&src, "psa", "1", SYNC).await?;
    let mut rd = crs::destination("psa", &remote, DestinationCopyMethod::None, "1Gi");
    rd.spec.trigger = crs::manual("1");
    crs::create(s.client(), &dst, &rd).await?;
    let _: ReplicationDestination = s.wait_manual_synced(&dst, "psa", "1", SYNC).await?;

    check_restricted_pods(&src_pods, &src)?;
    check_restricted_pods(&dst_pods, &dst)?;
    for ns in [&src, &dst] {
        let events = recent_events(&s.cluster, ns).await?;
        let rejected: Vec<&String> = events
            .iter()
            .filter(|e| e.contains("FailedCreate") || e.contains("violates PodSecurity"))
            .collect();
        ensure!(
            rejected.is_empty(),
            "pods were rejected in {ns}: {rejected:#?}"
        );
    }
    assert_volume_matches(&vols, &dst, &names::destination_pvc("psa"), &tree).await?;
    s.finish().await
}

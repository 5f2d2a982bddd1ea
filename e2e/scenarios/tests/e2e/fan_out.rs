//! 1:many: one ReplicationSource, two ReplicationDestinations in two other namespaces (one
//! keeping snapshots, one not) reading the same remote path; both receive the first state and
//! then an update.

use anyhow::{Context as _, Result};
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_e2e::crs;
use scribe_e2e::objects::{self, names};
use scribe_e2e::volumes::{VolumeAccess as _, assert_volume_matches};
use scribe_e2e::{Scenario, Tree, tree, volumes};

use crate::common::{self, SYNC};

#[tokio::test]
async fn one_source_feeds_two_destinations_in_other_namespaces() -> Result<()> {
    let s = Scenario::start("fan_out").await?;
    let vols = volumes(&s.cluster)?;
    let src = common::secret_namespace(&s, "fan-src").await?;
    let dst_a = common::secret_namespace(&s, "fan-dst-a").await?;
    let dst_b = common::secret_namespace(&s, "fan-dst-b").await?;
    let remote = common::remote(&src, "fan")?;
    let base = tree::sample_tree(5);
    common::pvc_with_tree(&s, &vols, &src, "data", &base).await?;
    let mut rs = crs::source("fan", "data", &remote, SourceCopyMethod::Clone);
    rs.spec.trigger = crs::manual("v1");
    crs::create(s.client(), &src, &rs).await?;
    let _: ReplicationSource = s.wait_manual_synced(&src, "fan", "v1", SYNC).await?;

    let mut a = crs::destination("edge", &remote, DestinationCopyMethod::Snapshot, "1Gi");
    a.spec.trigger = crs::manual("v1");
    let mut b = crs::destination("edge", &remote, DestinationCopyMethod::None, "1Gi");
    b.spec.trigger = crs::manual("v1");
    crs::create(s.client(), &dst_a, &a).await?;
    crs::create(s.client(), &dst_b, &b).await?;
    let (ra, rb) = tokio::join!(
        s.wait_manual_synced::<ReplicationDestination>(&dst_a, "edge", "v1", SYNC),
        s.wait_manual_synced::<ReplicationDestination>(&dst_b, "edge", "v1", SYNC),
    );
    let image = ra?
        .status
        .and_then(|s| s.latest_image)
        .context("destination A has no latestImage")?;
    rb?;
    common::restore_and_compare(&s, &vols, &dst_a, &image.name, "restored-v1", "1Gi", &base)
        .await?;
    assert_volume_matches(&vols, &dst_b, &names::destination_pvc("edge"), &base).await?;

    // An update reaches both.
    let overlay = Tree::new().file_at("fan/update.txt", "second state\n", 0o644, tree::now_secs());
    vols.write_tree(&src, "data", &overlay).await?;
    let mut updated = base.clone();
    updated.entries.extend(overlay.entries.clone());
    objects::set_manual::<ReplicationSource>(s.client(), &src, "fan", "v2").await?;
    let _: ReplicationSource = s.wait_manual_synced(&src, "fan", "v2", SYNC).await?;
    objects::set_manual::<ReplicationDestination>(s.client(), &dst_a, "edge", "v2").await?;
    objects::set_manual::<ReplicationDestination>(s.client(), &dst_b, "edge", "v2").await?;
    let (ra, rb) = tokio::join!(
        s.wait_manual_synced::<ReplicationDestination>(&dst_a, "edge", "v2", SYNC),
        s.wait_manual_synced::<ReplicationDestination>(&dst_b, "edge", "v2", SYNC),
    );
    let image2 = ra?
        .status
        .and_then(|s| s.latest_image)
        .context("destination A has no latestImage")?;
    rb?;
    anyhow::ensure!(
        image2.name != image.name,
        "the second restore should publish a new image, latestImage is still {}",
        image.name
    );
    common::restore_and_compare(
        &s,
        &vols,
        &dst_a,
        &image2.name,
        "restored-v2",
        "1Gi",
        &updated,
    )
    .await?;
    assert_volume_matches(&vols, &dst_b, &names::destination_pvc("edge"), &updated).await?;
    s.finish().await
}

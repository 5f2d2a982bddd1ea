//! The generated CRDs: validation rules present, the schedule pattern accepts what the
//! controller can parse and rejects typos, printer columns, and no drift from the YAML
//! committed in `charts/scribe/crds/`.

use std::path::Path;

use kube::CustomResourceExt;
use scribe_api::{ReplicationDestination, ReplicationSource, SCHEDULE_PATTERN};
use serde_json::Value;

fn schema_of<T: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(T::crd()).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn rules(v: &Value) -> Vec<String> {
    v["x-kubernetes-validations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["rule"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn destination_requires_a_pvc_or_provisioning_fields() {
    let rclone =
        &schema_of::<ReplicationDestination>()["properties"]["spec"]["properties"]["rclone"];
    let r = rules(rclone);
    assert!(
        r.iter()
            .any(|r| r.contains("has(self.destinationPVC)") && r.contains("has(self.capacity)")),
        "{r:?}"
    );
    assert_access_modes_bounded(&rclone["properties"]["accessModes"]);
}

/// `accessModes` is a bounded enum list: the API server rejects a CEL rule over an unbounded
/// list at install time (cost budget), so no rule may walk it.
fn assert_access_modes_bounded(modes: &Value) {
    assert_eq!(modes["maxItems"], 4, "{modes}");
    assert_eq!(
        modes["items"]["enum"],
        serde_json::json!([
            "ReadWriteOnce",
            "ReadOnlyMany",
            "ReadWriteMany",
            "ReadWriteOncePod"
        ])
    );
}

#[test]
fn source_validates_source_pvc_and_access_modes() {
    let spec = &schema_of::<ReplicationSource>()["properties"]["spec"];
    assert!(
        rules(&spec["properties"]["sourcePVC"])
            .iter()
            .any(|r| r == "self != ''")
    );
    let rclone = &spec["properties"]["rclone"];
    assert!(rules(rclone).iter().all(|r| !r.contains("accessModes.all")));
    assert_access_modes_bounded(&rclone["properties"]["accessModes"]);
    let required = spec["required"].as_array().expect("required");
    assert!(required.iter().any(|f| f == "sourcePVC") && required.iter().any(|f| f == "rclone"));
}

#[test]
fn seed_field_names_are_in_the_schema() {
    let src = &schema_of::<ReplicationSource>()["properties"];
    for f in [
        "rcloneConfigSection",
        "rcloneDestPath",
        "rcloneConfig",
        "copyMethod",
        "accessModes",
        "capacity",
        "storageClassName",
        "volumeSnapshotClassName",
    ] {
        assert!(
            src["spec"]["properties"]["rclone"]["properties"]
                .get(f)
                .is_some(),
            "source spec.rclone.{f}"
        );
    }
    for f in [
        "conditions",
        "nextSyncTime",
        "lastSyncTime",
        "lastSyncDuration",
        "lastManualSync",
        "latestMoverStatus",
    ] {
        assert!(
            src["status"]["properties"].get(f).is_some(),
            "source status.{f}"
        );
    }
    let dst = &schema_of::<ReplicationDestination>()["properties"];
    for f in [
        "destinationPVC",
        "cleanupTempPVC",
        "capacity",
        "accessModes",
        "customCA",
        "moverSecurityContext",
    ] {
        assert!(
            dst["spec"]["properties"]["rclone"]["properties"]
                .get(f)
                .is_some(),
            "destination spec.rclone.{f}"
        );
    }
    assert!(dst["status"]["properties"].get("latestImage").is_some());
}

#[test]
fn schedule_field_carries_the_pattern() {
    for schema in [
        schema_of::<ReplicationSource>(),
        schema_of::<ReplicationDestination>(),
    ] {
        let pattern = &schema["properties"]["spec"]["properties"]["trigger"]["properties"]["schedule"]
            ["pattern"];
        assert_eq!(pattern.as_str(), Some(SCHEDULE_PATTERN));
    }
}

#[test]
fn schedule_pattern_accepts_cron_specs_and_descriptors() {
    let re = regex::Regex::new(SCHEDULE_PATTERN).expect("pattern compiles");
    for ok in [
        "*/6 * * * *",
        "0 2 * * MON-FRI",
        "@hourly",
        "@daily",
        "@midnight",
        "@yearly",
        "0 0 1,15 * *",
        "5 4 * * sun",
        "0 */2 1-10/3 JAN-MAR *",
        "0 0 * * 0-7",
    ] {
        assert!(re.is_match(ok), "should accept {ok:?}");
    }
}

#[test]
fn schedule_pattern_rejects_typos() {
    let re = regex::Regex::new(SCHEDULE_PATTERN).expect("pattern compiles");
    for bad in [
        "@hourlyx",
        "* * *",
        "* * * * * *",
        "",
        "every hour",
        "@ hourly",
        "*/6 * * * * extra",
        "1,,2 * * * *",
    ] {
        assert!(!re.is_match(bad), "should reject {bad:?}");
    }
}

#[test]
fn printer_columns_show_last_and_next_sync() {
    let crd = serde_json::to_value(ReplicationSource::crd()).expect("json");
    let cols: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["jsonPath"].as_str())
        .collect();
    for p in [
        ".spec.sourcePVC",
        ".status.lastSyncTime",
        ".status.lastSyncDuration",
        ".status.nextSyncTime",
    ] {
        assert!(cols.contains(&p), "missing column {p}: {cols:?}");
    }
    assert_eq!(crd["spec"]["group"], "scribe.backube");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
}

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/scribe/crds");
    for (name, yaml) in scribe_api::crd::crd_files() {
        let path = dir.join(name);
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == yaml,
            "{} is out of date: run `cargo run -p scribe-api --bin crdgen`",
            path.display()
        );
    }
}

#[test]
fn seed_examples_are_valid_custom_resources() {
    let src: ReplicationSource = serde_yaml::from_str(
        "apiVersion: scribe.backube/v1alpha1\nkind: ReplicationSource\nmetadata:\n  name: database-source\n  namespace: source\nspec:\n  sourcePVC: mysql-pv-claim\n  trigger:\n    schedule: \"*/6 * * * *\"\n  rclone:\n    rcloneConfigSection: \"aws-s3-bucket\"\n    rcloneDestPath: \"scribe-test-bucket\"\n    rcloneConfig: \"rclone-secret\"\n    copyMethod: Snapshot\n",
    )
    .expect("seed source");
    assert_eq!(src.spec.rclone.rclone_config, "rclone-secret");
    let dst: ReplicationDestination = serde_yaml::from_str(
        "apiVersion: scribe.backube/v1alpha1\nkind: ReplicationDestination\nmetadata:\n  name: database-destination\n  namespace: dest\nspec:\n  trigger:\n    schedule: \"*/6 * * * *\"\n  rclone:\n    rcloneConfigSection: \"aws-s3-bucket\"\n    rcloneDestPath: \"scribe-test-bucket\"\n    rcloneConfig: \"rclone-secret\"\n    copyMethod: Snapshot\n    accessModes: [ReadWriteOnce]\n    capacity: 10Gi\n",
    )
    .expect("seed destination");
    assert_eq!(
        dst.spec.rclone.capacity.map(|q| q.0),
        Some("10Gi".to_string())
    );
}

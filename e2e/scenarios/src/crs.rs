//! The Scribe custom resources from a scenario's point of view: building them (the seed's
//! Secret name and section by default), the status fields both kinds share behind one trait,
//! and the waits every scenario needs — a sync completing after some time, a manual trigger
//! value being synced, a condition saying something.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::PostParams;
use scribe_api::{
    DestinationCopyMethod, MoverOptions, MoverStatus, ReplicationDestination,
    ReplicationDestinationRcloneSpec, ReplicationDestinationSpec, ReplicationSource,
    ReplicationSourceRcloneSpec, ReplicationSourceSpec, SourceCopyMethod, TriggerSpec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::objects::api;
use crate::scenario::Scenario;
use crate::status::{self, MoverSummary, describe_conditions, parse_summary};

/// The Secret name of the seed's examples.
pub const SECRET: &str = "rclone-secret";
/// The rclone.conf section of the seed's examples.
pub const SECTION: &str = "aws-s3-bucket";

/// A ReplicationSource of `pvc` to `dest_path` with the seed's Secret and section, no trigger.
pub fn source(
    name: &str,
    pvc: &str,
    dest_path: &str,
    copy_method: SourceCopyMethod,
) -> ReplicationSource {
    ReplicationSource {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: ReplicationSourceSpec {
            source_pvc: pvc.to_string(),
            trigger: None,
            paused: None,
            rclone: ReplicationSourceRcloneSpec {
                rclone_config_section: SECTION.to_string(),
                rclone_dest_path: dest_path.to_string(),
                rclone_config: SECRET.to_string(),
                copy_method,
                access_modes: Vec::new(),
                capacity: None,
                storage_class_name: None,
                volume_snapshot_class_name: None,
                mover: MoverOptions::default(),
            },
        },
        status: None,
    }
}

/// A ReplicationDestination reading `dest_path`, provisioning `capacity` RWO, no trigger.
pub fn destination(
    name: &str,
    dest_path: &str,
    copy_method: DestinationCopyMethod,
    capacity: &str,
) -> ReplicationDestination {
    ReplicationDestination {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: ReplicationDestinationSpec {
            trigger: None,
            paused: None,
            rclone: ReplicationDestinationRcloneSpec {
                rclone_config_section: SECTION.to_string(),
                rclone_dest_path: dest_path.to_string(),
                rclone_config: SECRET.to_string(),
                copy_method,
                access_modes: vec!["ReadWriteOnce".to_string()],
                capacity: Some(Quantity(capacity.to_string())),
                storage_class_name: None,
                volume_snapshot_class_name: None,
                destination_pvc: None,
                cleanup_temp_pvc: None,
                mover: MoverOptions::default(),
            },
        },
        status: None,
    }
}

/// A trigger with only a manual value.
pub fn manual(value: &str) -> Option<TriggerSpec> {
    Some(TriggerSpec {
        schedule: None,
        manual: Some(value.to_string()),
    })
}

/// A trigger with only a schedule.
pub fn schedule(cron: &str) -> Option<TriggerSpec> {
    Some(TriggerSpec {
        schedule: Some(cron.to_string()),
        manual: None,
    })
}

/// Creates a CR in `ns`.
pub async fn create<K: ScribeCr>(client: &kube::Client, ns: &str, obj: &K) -> Result<K> {
    let mut obj = obj.clone();
    obj.meta_mut().namespace = Some(ns.to_string());
    let name = obj.meta().name.clone().unwrap_or_default();
    api::<K>(client, ns)
        .create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("creating {} {ns}/{name}", K::kind(&())))
}

/// The status fields both kinds share.
pub trait ScribeCr:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    fn conditions(&self) -> Vec<Condition>;
    fn last_sync_time(&self) -> Option<Timestamp>;
    fn last_sync_duration(&self) -> Option<String>;
    fn next_sync_time(&self) -> Option<Timestamp>;
    fn last_manual_sync(&self) -> Option<String>;
    fn latest_mover_status(&self) -> Option<MoverStatus>;

    /// The condition of type `type_`.
    fn condition(&self, type_: &str) -> Option<Condition> {
        status::condition(&self.conditions(), type_).cloned()
    }

    /// The mover's summary of the last run.
    fn mover_summary(&self) -> Result<MoverSummary> {
        let logs = self
            .latest_mover_status()
            .and_then(|m| m.logs)
            .context("status.latestMoverStatus.logs is empty")?;
        parse_summary(&logs)
    }
}

macro_rules! scribe_cr {
    ($t:ty) => {
        impl ScribeCr for $t {
            fn conditions(&self) -> Vec<Condition> {
                self.status
                    .as_ref()
                    .map(|s| s.conditions.clone())
                    .unwrap_or_default()
            }
            fn last_sync_time(&self) -> Option<Timestamp> {
                self.status
                    .as_ref()
                    .and_then(|s| status::ts(&s.last_sync_time))
            }
            fn last_sync_duration(&self) -> Option<String> {
                self.status
                    .as_ref()
                    .and_then(|s| s.last_sync_duration.clone())
            }
            fn next_sync_time(&self) -> Option<Timestamp> {
                self.status
                    .as_ref()
                    .and_then(|s| status::ts(&s.next_sync_time))
            }
            fn last_manual_sync(&self) -> Option<String> {
                self.status
                    .as_ref()
                    .and_then(|s| s.last_manual_sync.clone())
            }
            fn latest_mover_status(&self) -> Option<MoverStatus> {
                self.status
                    .as_ref()
                    .and_then(|s| s.latest_mover_status.clone())
            }
        }
    };
}

scribe_cr!(ReplicationSource);
scribe_cr!(ReplicationDestination);

/// A configuration error recorded by the controller that no waiting will fix: fail at once.
fn blocked_by_config_error<K: ScribeCr>(cr: &K) -> Option<String> {
    let c = cr.condition(scribe_api::constants::CONDITION_RECONCILED)?;
    (c.status == "False" && c.message.contains("configuration error")).then(|| {
        format!(
            "{} is blocked by a configuration error: {}",
            cr.meta().name.clone().unwrap_or_default(),
            describe_conditions(&cr.conditions())
        )
    })
}

impl Scenario {
    /// Waits until `lastSyncTime` is set and later than `after` (if given); fails at once if
    /// the controller records a configuration error meanwhile.
    pub async fn wait_synced<K: ScribeCr>(
        &self,
        ns: &str,
        name: &str,
        after: Option<Timestamp>,
        timeout: Duration,
    ) -> Result<K> {
        self.wait_sync::<K>(ns, name, after, timeout, true).await
    }

    /// Like [`Self::wait_synced`], but a configuration error still shown is waited out (for
    /// recovery after the Secret was fixed).
    pub async fn wait_recovered<K: ScribeCr>(
        &self,
        ns: &str,
        name: &str,
        after: Option<Timestamp>,
        timeout: Duration,
    ) -> Result<K> {
        self.wait_sync::<K>(ns, name, after, timeout, false).await
    }

    async fn wait_sync<K: ScribeCr>(
        &self,
        ns: &str,
        name: &str,
        after: Option<Timestamp>,
        timeout: Duration,
        fail_fast: bool,
    ) -> Result<K> {
        let desc = match after {
            Some(t) => format!("a sync completing after {t}"),
            None => "its first sync".to_string(),
        };
        self.wait_object::<K, K, _>(ns, name, &desc, timeout, |cr| {
            let Some(cr) = cr else { return Ok(None) };
            if fail_fast && let Some(msg) = blocked_by_config_error(cr) {
                bail!(msg);
            }
            Ok(match (cr.last_sync_time(), after) {
                (Some(t), Some(a)) if t > a => Some(cr.clone()),
                (Some(_), None) => Some(cr.clone()),
                _ => None,
            })
        })
        .await
    }

    /// Waits until `status.lastManualSync` equals `value`.
    pub async fn wait_manual_synced<K: ScribeCr>(
        &self,
        ns: &str,
        name: &str,
        value: &str,
        timeout: Duration,
    ) -> Result<K> {
        let desc = format!("status.lastManualSync == {value:?}");
        self.wait_object::<K, K, _>(ns, name, &desc, timeout, |cr| {
            let Some(cr) = cr else { return Ok(None) };
            if let Some(msg) = blocked_by_config_error(cr) {
                bail!(msg);
            }
            Ok((cr.last_manual_sync().as_deref() == Some(value)).then(|| cr.clone()))
        })
        .await
    }

    /// Waits until condition `type_` has `status` and its message contains `text`.
    pub async fn wait_condition<K: ScribeCr>(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
        status: &str,
        text: &str,
        timeout: Duration,
    ) -> Result<K> {
        let desc = format!("condition {type_}={status} with a message containing {text:?}");
        self.wait_object::<K, K, _>(ns, name, &desc, timeout, |cr| {
            let Some(cr) = cr else { return Ok(None) };
            Ok(cr
                .condition(type_)
                .filter(|c| c.status == status && c.message.contains(text))
                .map(|_| cr.clone()))
        })
        .await
    }
}

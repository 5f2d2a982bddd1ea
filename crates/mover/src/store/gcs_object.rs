//! The Google Cloud Storage JSON API's resources as the mover reads and writes
//! them: the object resource (name, size, MD5, rclone's metadata map), a listing
//! page, a `rewriteTo` reply, and the object resource sent with an upload.

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{Attribute, AttributeValue, Attributes, ObjectMeta};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::gcs_store::generic;

/// The JSON API's object resource (the fields the mover reads).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Object {
    pub(super) name: String,
    #[serde(default)]
    pub(super) size: Option<String>,
    #[serde(default)]
    pub(super) updated: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(super) etag: Option<String>,
    #[serde(default)]
    pub(super) generation: Option<String>,
    #[serde(default)]
    pub(super) metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub(super) storage_class: Option<String>,
    #[serde(default)]
    pub(super) content_type: Option<String>,
    /// Base64 of the MD5 of the stored bytes (absent for composite objects).
    #[serde(default)]
    pub(super) md5_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Listing {
    #[serde(default)]
    pub(super) items: Vec<Object>,
    #[serde(default)]
    pub(super) prefixes: Vec<String>,
    #[serde(default)]
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Rewrite {
    pub(super) done: bool,
    #[serde(default)]
    pub(super) rewrite_token: Option<String>,
    #[serde(default)]
    pub(super) resource: Option<Object>,
}

impl Object {
    pub(super) fn meta(&self) -> Result<ObjectMeta, object_store::Error> {
        Ok(ObjectMeta {
            location: Path::parse(&self.name)?,
            last_modified: self.updated.unwrap_or_default(),
            size: self
                .size
                .as_deref()
                .unwrap_or("0")
                .parse()
                .map_err(|_| generic(format!("object {:?}: bad size", self.name)))?,
            e_tag: self.etag.clone(),
            version: self.generation.clone(),
        })
    }

    pub(super) fn attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        for (k, v) in self.metadata.iter().flatten() {
            if let Some(v) = v.as_str() {
                a.insert(
                    Attribute::Metadata(k.clone().into()),
                    AttributeValue::from(v.to_owned()),
                );
            }
        }
        if let Some(c) = &self.storage_class {
            a.insert(Attribute::StorageClass, AttributeValue::from(c.clone()));
        }
        if let Some(c) = &self.content_type {
            a.insert(Attribute::ContentType, AttributeValue::from(c.clone()));
        }
        a
    }
}

/// The JSON object resource for an upload of `name` with these attributes.
pub(super) fn resource(name: &str, attributes: &Attributes) -> Value {
    let mut metadata = Map::new();
    let mut body = Map::new();
    body.insert("name".into(), json!(name));
    for (k, v) in attributes {
        match k {
            Attribute::Metadata(key) => {
                metadata.insert(key.to_string(), json!(v.as_ref()));
            }
            Attribute::StorageClass => {
                body.insert("storageClass".into(), json!(v.as_ref()));
            }
            Attribute::ContentType => {
                body.insert("contentType".into(), json!(v.as_ref()));
            }
            Attribute::CacheControl => {
                body.insert("cacheControl".into(), json!(v.as_ref()));
            }
            Attribute::ContentDisposition => {
                body.insert("contentDisposition".into(), json!(v.as_ref()));
            }
            Attribute::ContentEncoding => {
                body.insert("contentEncoding".into(), json!(v.as_ref()));
            }
            Attribute::ContentLanguage => {
                body.insert("contentLanguage".into(), json!(v.as_ref()));
            }
            _ => {}
        }
    }
    if !metadata.is_empty() {
        body.insert("metadata".into(), Value::Object(metadata));
    }
    Value::Object(body)
}

//! The rig's fake-gcs-server, spoken to over the Cloud Storage JSON API.

use std::collections::HashMap;

use serde_json::{json, Value};

/// The fake-gcs-server of the rig, spoken to over its JSON API.
pub struct Gcs {
    /// The JSON API's base URL.
    pub base: String,
    http: reqwest::Client,
}

impl Gcs {
    pub fn new(rig: &HashMap<String, String>) -> Gcs {
        let host = rig
            .get("STORAGE_EMULATOR_HOST")
            .expect("the rig runs fake-gcs-server (STORAGE_EMULATOR_HOST in rig.env)");
        let base = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", host.trim_end_matches('/'))
        };
        Gcs {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// Creates a bucket with a name unique to the test.
    pub async fn bucket(&self, test: &str) -> String {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("repl-{test}-{n}");
        let r = self
            .http
            .post(format!("{}/storage/v1/b", self.base))
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create bucket: {}",
            r.text().await.unwrap()
        );
        name
    }

    /// Uploads `data` as `bucket/name` with the object resource fields in
    /// `resource` (contentType, contentEncoding, metadata, ...); returns the
    /// object resource GCS answers.
    pub async fn upload(&self, bucket: &str, name: &str, data: &[u8], resource: Value) -> Value {
        let mut meta = resource;
        meta["name"] = json!(name);
        // Google's clients send the content type on the media part as well;
        // fake-gcs-server takes it from there.
        let media_type = meta["contentType"]
            .as_str()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let boundary = "bridge-test-boundary-7f3a9c";
        let mut body = Vec::with_capacity(data.len() + 1024);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Type: {media_type}\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = self
            .http
            .post(format!("{}/upload/storage/v1/b/{bucket}/o", self.base))
            .query(&[("uploadType", "multipart")])
            .header(
                "content-type",
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(
            status.is_success(),
            "upload {bucket}/{name}: {status} {text}"
        );
        let obj: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            obj["size"].as_str(),
            Some(data.len().to_string().as_str()),
            "{obj}"
        );
        obj
    }

    pub async fn delete(&self, bucket: &str, name: &str) {
        let r = self
            .http
            .delete(format!(
                "{}/storage/v1/b/{bucket}/o/{}",
                self.base,
                enc(name)
            ))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "delete {bucket}/{name}: {}",
            r.status()
        );
    }
}

/// An object name as one URL path segment.
pub fn enc(name: &str) -> String {
    name.replace('/', "%2F")
}

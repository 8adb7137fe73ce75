//! Request bodies that must be JSON objects, for both APIs.
//!
//! axum's `Json<T>` lets serde build a struct from a JSON array too (`["bafy…", "job-1"]` is
//! read as `{"cid": "bafy…", "job_id": "job-1"}`), which neither API document allows and no
//! client means. [`JsonObject`] refuses every body that is not an object, then reads it as
//! `Json<T>` would, with the same rejections (wrong content type, bad syntax) otherwise.

use axum::Json;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// A JSON object body read as `T`; the rejection is the 400's message.
pub struct JsonObject<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonObject<T> {
    type Rejection = String;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|r| r.body_text())?;
        of_value(value).map(JsonObject)
    }
}

/// `value` as `T`, if it is an object.
pub fn of_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    if !value.is_object() {
        return Err(format!(
            "the body must be a JSON object, not {}",
            kind(&value)
        ));
    }
    // The path names the offending field (`wait: invalid type…`), as axum's own rejection does.
    serde_path_to_error::deserialize(value)
        .map_err(|e| format!("Failed to deserialize the JSON body into the target type: {e}"))
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Two {
        #[allow(dead_code)]
        a: String,
        #[allow(dead_code)]
        b: Option<u32>,
    }

    #[test]
    fn an_array_is_not_read_as_a_struct() {
        // What serde alone would accept.
        assert!(serde_json::from_str::<Two>(r#"["x", 1]"#).is_ok());
        let e = of_value::<Two>(serde_json::json!(["x", 1])).expect_err("array");
        assert!(e.contains("JSON object, not an array"), "{e}");
        assert!(of_value::<Two>(serde_json::json!(null)).is_err());
        assert!(of_value::<Two>(serde_json::json!({"a": "x"})).is_ok());
        let e = of_value::<Two>(serde_json::json!({"b": 1})).expect_err("missing");
        assert!(e.contains("missing field `a`"), "{e}");
        let e = of_value::<Two>(serde_json::json!({"a": "x", "b": "yes"})).expect_err("type");
        assert!(e.contains("b: invalid type"), "{e}");
    }
}

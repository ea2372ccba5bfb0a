//! The OpenAPI document an ingest serves at `/openapi.json`: `ingest/openapi.json`, narrowed to how this
//! instance authenticates. A schema-driven client (or fuzzer) then sees exactly the API it talks to: with a
//! JWT key, the bearer scheme and no gateway headers (which ingest ignores then); with `--auth
//! trusted-header`, the gateway's `X-User-Id` and `X-User-Role` and no bearer scheme.

use serde_json::Value;

use crate::identity::Authenticator;

/// The whole document, for every mode.
const DOCUMENT: &str = include_str!("../openapi.json");

/// The parameters and the security scheme that belong to the trusted-header mode alone.
const GATEWAY_PARAMETERS: [&str; 2] = ["UserId", "UserRole"];
const GATEWAY_SCHEME: &str = "trustedHeader";
const BEARER_SCHEME: &str = "bearer";

/// The document for `authenticator`'s mode, as served.
pub fn document(authenticator: &Authenticator) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(DOCUMENT) else {
        // The file is checked by this module's tests; serve it whole rather than nothing.
        return DOCUMENT.to_owned();
    };
    match authenticator {
        Authenticator::Jwt { .. } => {
            drop_scheme(&mut doc, GATEWAY_SCHEME);
            drop_gateway_parameters(&mut doc);
        }
        Authenticator::TrustedHeader { .. } => drop_scheme(&mut doc, BEARER_SCHEME),
    }
    doc.to_string()
}

fn operations(doc: &mut Value) -> impl Iterator<Item = &mut Value> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|methods| methods.values_mut())
}

fn drop_scheme(doc: &mut Value, scheme: &str) {
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object_mut() {
        schemes.remove(scheme);
    }
    for operation in operations(doc) {
        if let Some(security) = operation["security"].as_array_mut() {
            security.retain(|requirement| requirement.get(scheme).is_none());
        }
    }
}

fn drop_gateway_parameters(doc: &mut Value) {
    let refs: Vec<String> = GATEWAY_PARAMETERS
        .iter()
        .map(|name| format!("#/components/parameters/{name}"))
        .collect();
    for operation in operations(doc) {
        if let Some(parameters) = operation["parameters"].as_array_mut() {
            parameters.retain(|p| {
                !p["$ref"]
                    .as_str()
                    .is_some_and(|r| refs.iter().any(|x| x == r))
            });
        }
    }
    if let Some(parameters) = doc["components"]["parameters"].as_object_mut() {
        for name in GATEWAY_PARAMETERS {
            parameters.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> Authenticator {
        Authenticator::TrustedHeader {
            user_header: "x-user-id".into(),
            role_header: "x-user-role".into(),
            admin_role: "admin".into(),
        }
    }

    #[test]
    fn the_file_is_json_and_names_what_is_narrowed() {
        let doc: Value = serde_json::from_str(DOCUMENT).expect("ingest/openapi.json is JSON");
        let schemes = &doc["components"]["securitySchemes"];
        assert!(schemes[GATEWAY_SCHEME].is_object() && schemes[BEARER_SCHEME].is_object());
        for name in GATEWAY_PARAMETERS {
            assert!(doc["components"]["parameters"][name].is_object(), "{name}");
        }
    }

    #[test]
    fn a_gateway_mode_document_has_the_gateway_headers_and_no_bearer() {
        let doc: Value = serde_json::from_str(&document(&trusted())).expect("JSON");
        let schemes = &doc["components"]["securitySchemes"];
        assert!(schemes[GATEWAY_SCHEME].is_object());
        assert!(schemes.get(BEARER_SCHEME).is_none());
        let comment = &doc["paths"]["/v1/streams/{stream_id}/comments"]["post"];
        assert_eq!(
            comment["security"],
            serde_json::json!([{ GATEWAY_SCHEME: [] }])
        );
        let params = comment["parameters"].to_string();
        assert!(
            params.contains("UserId") && params.contains("UserRole"),
            "{params}"
        );
    }

    #[test]
    fn narrowing_to_bearer_drops_the_gateway_headers() {
        let mut doc: Value = serde_json::from_str(DOCUMENT).expect("JSON");
        drop_scheme(&mut doc, GATEWAY_SCHEME);
        drop_gateway_parameters(&mut doc);
        let text = doc.to_string();
        assert!(
            !text.contains("UserId")
                && !text.contains("UserRole")
                && !text.contains(GATEWAY_SCHEME)
        );
        let like = &doc["paths"]["/v1/streams/{stream_id}/likes"]["post"];
        assert_eq!(like["security"], serde_json::json!([{ BEARER_SCHEME: [] }]));
        assert!(like["parameters"].to_string().contains("IdempotencyKey"));
    }
}

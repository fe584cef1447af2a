//! What the OpenAPI document says about every `/api/v1` operation at once.
//!
//! The contexts document what their handlers answer. Some answers come from
//! what every request passes through instead: the extractors (400 for a
//! body that is not JSON or a parameter that is not of its type, 415 for a
//! body that is not `application/json`, 422 for one that does not match the
//! schema), token verification (401), the gateway's body limit (413) and
//! time-outs (408, 503), the rate limit (429) and the stores (503 when one
//! is busy). [`complete`] adds them to each operation that can answer them,
//! so that the document lists every status the server can send (invariant 13).

use crate::API_PREFIX;
use mercato_kernel::error::{ErrorBody, ErrorDetail};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, OpenApi, PathItem, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

/// Completes the assembled document: every `/api/v1` operation gets the
/// statuses the shared layers can answer, and every answer a description.
pub fn complete(mut doc: OpenApi) -> OpenApi {
    complete_in_place(&mut doc);
    doc
}

fn complete_in_place(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in [
        (ErrorBody::name(), ErrorBody::schema()),
        (ErrorDetail::name(), ErrorDetail::schema()),
    ] {
        components
            .schemas
            .entry(name.into_owned())
            .or_insert(schema);
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        if path.starts_with(API_PREFIX) {
            for op in operations(item) {
                complete_operation(op);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn complete_operation(op: &mut Operation) {
    let has_body = op.request_body.is_some();
    let has_param = |place: ParameterIn| {
        op.parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in == place)
    };
    let (query, path) = (has_param(ParameterIn::Query), has_param(ParameterIn::Path));
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());

    let mut bad_request = Vec::new();
    if has_body {
        bad_request.push("`malformed_json`: the body is not JSON.");
    }
    if query {
        bad_request.push("`invalid_query`: a query parameter is not of its type.");
    }
    if path {
        bad_request.push("`invalid_path`: a path parameter is not of its type.");
    }
    bad_request.push("`bad_request`: the request is not valid HTTP.");
    add(op, "400", &bad_request, None);
    if secured {
        add(
            op,
            "401",
            &["`unauthorized`: no access token, or one that is not valid or has expired."],
            None,
        );
    }
    add(
        op,
        "408",
        &["`request_timeout`: the request was not received in time."],
        None,
    );
    add(
        op,
        "413",
        &["`payload_too_large`: the body is larger than the server takes."],
        None,
    );
    if has_body {
        add(
            op,
            "415",
            &["`unsupported_media_type`: the body is not sent as `Content-Type: application/json`."],
            None,
        );
        add(
            op,
            "422",
            &["`validation_failed`: the body does not match its schema."],
            None,
        );
    }
    add(
        op,
        "429",
        &["`rate_limited`: too many requests from this client; `Retry-After` says when to try again."],
        Some("Seconds to wait before trying again"),
    );
    add(
        op,
        "503",
        &[
            "`unavailable`: a store or another service is busy or down; try again after `Retry-After`.",
            "`timeout`: the request took too long.",
        ],
        Some("Seconds to wait before trying again"),
    );
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(response) = response {
            if response.description.trim().is_empty() {
                response.description = default_description(status).to_owned();
            }
        }
    }
}

/// Adds an error answer, or completes the one the operation already
/// documents for `status` (its own text first) with the `parts` whose error
/// code (their first word, in backticks) it does not mention yet.
fn add(op: &mut Operation, status: &str, parts: &[&str], retry_after: Option<&str>) {
    let response = op
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(Response::new("")));
    let RefOr::T(response) = response else {
        return;
    };
    let own = response.description.trim().trim_end_matches('.').to_owned();
    let missing: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|part| {
            let code = part.split(':').next().unwrap_or(part);
            !own.contains(code)
        })
        .collect();
    response.description = match (own.is_empty(), missing.is_empty()) {
        (true, _) => missing.join(" "),
        (false, true) => format!("{own}."),
        (false, false) => format!("{own}. {}", missing.join(" ")),
    };
    if response.content.is_empty() {
        let body = ResponseBuilder::new()
            .content(
                "application/json",
                Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    ErrorBody::name(),
                )))),
            )
            .build();
        response.content = body.content;
    }
    if let Some(description) = retry_after {
        response
            .headers
            .entry("Retry-After".to_owned())
            .or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    )
                    .description(Some(description))
                    .build()
            });
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "No content",
        "400" => "Malformed request",
        "401" => "`unauthorized`: no access token, or one that is not valid or has expired.",
        "403" => "`forbidden`: the caller's role may not do this.",
        "404" => "`not_found`: no such resource, or not one the caller may see.",
        "409" => "Conflicts with the resource's current state.",
        "422" => "`validation_failed`: well-formed, but not valid.",
        _ => "See the error code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, PathsBuilder};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::OpenApiBuilder;

    fn doc() -> OpenApi {
        let create = OperationBuilder::new()
            .request_body(Some(RequestBodyBuilder::new().build()))
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .response("201", Response::new(""))
            .response("400", Response::new("`idempotency_key_required`: no key"))
            .build();
        let read = OperationBuilder::new()
            .parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path),
            )
            .response("200", Response::new("The thing"))
            .build();
        let probe = OperationBuilder::new()
            .response("200", Response::new("ok"))
            .build();
        let paths = PathsBuilder::new()
            .path("/api/v1/things", PathItem::new(HttpMethod::Post, create))
            .path("/api/v1/things/{id}", PathItem::new(HttpMethod::Get, read))
            .path("/healthz", PathItem::new(HttpMethod::Get, probe));
        OpenApiBuilder::new().paths(paths).build()
    }

    fn statuses(op: &Operation) -> Vec<&str> {
        op.responses.responses.keys().map(String::as_str).collect()
    }

    fn description<'a>(op: &'a Operation, status: &str) -> &'a str {
        match op.responses.responses.get(status) {
            Some(RefOr::T(r)) => &r.description,
            _ => "",
        }
    }

    #[test]
    fn every_api_operation_lists_what_the_shared_layers_answer() {
        let doc = complete(doc());
        let create = doc.paths.paths["/api/v1/things"]
            .post
            .as_ref()
            .expect("post");
        assert_eq!(
            statuses(create),
            ["201", "400", "401", "408", "413", "415", "422", "429", "503"]
        );
        let bad = description(create, "400");
        assert!(
            bad.starts_with("`idempotency_key_required`: no key. "),
            "{bad}"
        );
        assert!(bad.contains("`malformed_json`"), "{bad}");
        assert!(!bad.contains("`invalid_path`"), "{bad}");
        assert_eq!(description(create, "201"), "Created");

        let read = doc.paths.paths["/api/v1/things/{id}"]
            .get
            .as_ref()
            .expect("get");
        assert_eq!(statuses(read), ["200", "400", "408", "413", "429", "503"]);
        assert!(description(read, "400").contains("`invalid_path`"));
        match read.responses.responses.get("429") {
            Some(RefOr::T(r)) => assert!(r.headers.contains_key("Retry-After")),
            _ => panic!("no 429"),
        }

        let probe = doc.paths.paths["/healthz"].get.as_ref().expect("get");
        assert_eq!(statuses(probe), ["200"], "only /api/v1 is completed");
        let schemas = &doc.components.as_ref().expect("components").schemas;
        assert!(schemas.contains_key("ErrorBody"));
    }

    #[test]
    fn completing_twice_changes_nothing() {
        let once = complete(doc());
        let twice = complete(once.clone());
        assert_eq!(
            serde_json::to_value(&once).ok(),
            serde_json::to_value(&twice).ok()
        );
    }
}

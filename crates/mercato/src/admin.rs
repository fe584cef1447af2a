//! `/admin`: operations on the platform itself (admins only).

use axum::extract::State;
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::bus::EventBus;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Path, Query};
use mercato_kernel::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type AppState = Arc<dyn EventBus>;

pub fn router(bus: Arc<dyn EventBus>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letter))
        .with_state(bus)
}

/// An event a consumer gave up on after every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// What to replay it by.
    pub seq: i64,
    /// The consumer that gave up on it, and the only one a replay reaches.
    pub consumer: String,
    pub event_id: String,
    pub event_type: String,
    pub error: String,
    pub attempts: i64,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    pub items: Vec<DeadLetterView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub replayed: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// At most this many, oldest first: at least 1 (default 100); values
    /// above 1000 are served as 1000.
    #[param(minimum = 1, default = 100)]
    pub limit: Option<i64>,
}

fn unavailable(e: anyhow::Error) -> ApiError {
    tracing::warn!(error = %format!("{e:#}"), "event bus call failed");
    ApiError::unavailable("the event bus is not reachable")
}

/// Events parked after failing every attempt.
#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin", security(("bearer" = [])),
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "The parked events, oldest first", body = DeadLetterList),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1", body = ErrorBody),
        (status = 503, description = "`unavailable`: the event bus is not reachable", body = ErrorBody),
    ))]
async fn list_dead_letters(
    State(bus): State<AppState>,
    caller: Caller,
    Query(q): Query<DeadLetterQuery>,
) -> ApiResult<Json<DeadLetterList>> {
    caller.require(&[Role::Admin])?;
    let limit = mercato_kernel::page::page_limit(q.limit, 100, 1000)? as usize;
    let items = bus
        .parked(limit)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|d| DeadLetterView {
            seq: d.seq,
            consumer: d.consumer,
            event_id: d.envelope.id.to_string(),
            event_type: d.envelope.event_type,
            error: d.error,
            attempts: d.attempts,
            payload: d.envelope.payload,
        })
        .collect();
    Ok(Json(DeadLetterList { items }))
}

/// Deliver a parked event again, once its cause is fixed: to the consumer
/// that parked it only (the other consumers of the event do not see it
/// again). Failing again parks it again, under a new `seq`.
#[utoipa::path(post, path = "/admin/dead-letters/{seq}/replay", tag = "admin", security(("bearer" = [])),
    params(("seq" = i64, Path, description = "The dead letter's seq")),
    responses(
        (status = 200, description = "Handed to its consumer again", body = Replayed),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins", body = ErrorBody),
        (status = 404, description = "`not_found`: no dead letter has this seq", body = ErrorBody),
        (status = 503, description = "`unavailable`: the event bus is not reachable", body = ErrorBody),
    ))]
async fn replay_dead_letter(
    State(bus): State<AppState>,
    caller: Caller,
    Path(seq): Path<String>,
) -> ApiResult<Json<Replayed>> {
    caller.require(&[Role::Admin])?;
    let seq: i64 = seq
        .parse()
        .map_err(|_| ApiError::not_found("dead letter"))?;
    if bus.replay(seq).await.map_err(unavailable)? {
        Ok(Json(Replayed { replayed: true }))
    } else {
        Err(ApiError::not_found("dead letter"))
    }
}

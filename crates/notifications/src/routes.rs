//! `/notifications`.

use crate::domain::NotificationView;
use crate::service::NotificationsService;
use axum::extract::State;
use mercato_kernel::auth::Caller;
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Json, Query};
use mercato_kernel::page::{Page, PageQuery};
use mercato_kernel::ApiResult;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type AppState = Arc<NotificationsService>;

pub fn router(service: Arc<NotificationsService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .with_state(service)
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/notifications", tag = "notifications",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of the caller's notifications", body = Page<NotificationView>),
        (status = 400, description = "`invalid_cursor`: the cursor is not base64url", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1", body = ErrorBody),
    ))]
async fn list_notifications(
    State(service): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<NotificationView>>> {
    let page = q.validate()?;
    Ok(Json(service.list(caller, &page).await?))
}

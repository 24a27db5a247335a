//! The control API: JSON over HTTP on loopback, every request carrying the
//! daemon's bearer token.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use protocol::ContentId;

use super::views::{ApiError, Created, GetRequest, ShareRequest, API};
use super::Daemon;

/// Largest request body the API reads.
const MAX_BODY: usize = 64 << 10;

#[derive(Clone)]
struct AppState {
    daemon: Arc<Daemon>,
    token: Arc<str>,
}

/// The API's routes, each behind the token check.
pub fn router(daemon: Arc<Daemon>, token: String) -> Router {
    let state = AppState {
        daemon,
        token: token.into(),
    };
    Router::new()
        .route(&format!("{API}/node"), get(node))
        .route(&format!("{API}/items"), get(items))
        .route(&format!("{API}/items/{{key}}"), get(item).delete(stop_item))
        .route(&format!("{API}/contents/{{id}}"), delete(stop_content))
        .route(&format!("{API}/peers"), get(peers))
        .route(&format!("{API}/shares"), post(share))
        .route(&format!("{API}/gets"), post(fetch))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same(t.as_bytes(), s.token.as_bytes()) => next.run(req).await,
        _ => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: read it from control.json in the node's data dir",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

fn internal(e: anyhow::Error) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))
}

async fn node(State(s): State<AppState>) -> Response {
    match s.daemon.node_view().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

async fn items(State(s): State<AppState>) -> Response {
    match s.daemon.item_views().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

async fn item(State(s): State<AppState>, Path(key): Path<u64>) -> Response {
    match s.daemon.item_view(key).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no item {key}")),
        Err(e) => internal(e),
    }
}

async fn stop_item(State(s): State<AppState>, Path(key): Path<u64>) -> Response {
    match s.daemon.stop_item(key).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no item {key}")),
        Err(e) => internal(e),
    }
}

async fn stop_content(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<ContentId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid content ID {id:?}"),
        );
    };
    match s.daemon.stop_content(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("this node holds no content {id}"),
        ),
        Err(e) => internal(e),
    }
}

async fn peers(State(s): State<AppState>) -> Response {
    match s.daemon.peer_views().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

async fn share(State(s): State<AppState>, Json(req): Json<ShareRequest>) -> Response {
    if !req.path.is_absolute() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{} is not an absolute path", req.path.display()),
        );
    }
    let path = match std::fs::canonicalize(&req.path) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot share {}: {e}", req.path.display()),
            )
        }
    };
    match s.daemon.add_share(path, req.chunk_size) {
        Ok(key) => (StatusCode::CREATED, Json(Created { key })).into_response(),
        Err(e) => error(StatusCode::TOO_MANY_REQUESTS, e),
    }
}

async fn fetch(State(s): State<AppState>, Json(req): Json<GetRequest>) -> Response {
    let Ok(id) = req.id.parse::<ContentId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid content ID {:?}", req.id),
        );
    };
    if !req.out.is_absolute() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{} is not an absolute path", req.out.display()),
        );
    }
    let out = req.out.clone();
    let checked = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&out)?;
        crate::storage::check_writable(&out)?;
        anyhow::Ok(())
    })
    .await;
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "output directory {} is not writable: {e:#}",
                    req.out.display()
                ),
            )
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    match s.daemon.add_get(id, req.out) {
        Ok(key) => (StatusCode::CREATED, Json(Created { key })).into_response(),
        Err(e) => error(StatusCode::TOO_MANY_REQUESTS, e),
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }
}

//! Who may do what. Reads are open while the surface listens on loopback only; every change
//! (any method but GET and HEAD) needs `Authorization: Bearer <token>`, and beyond loopback so
//! does every read of the API. The token is the content of `broker/http.token` (or of
//! `[http] token_file`), created at first start from the system's random source with mode 0600
//! through the `Fs` seam. Tokens are compared in constant time: both sides are hashed
//! (SHA-256) and the digests compared with `subtle`, so neither the content nor the length of the
//! token shows in how long a refusal takes.

use crate::{AppState, HttpError};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mailroom::config::Config;
use runtime_layout::{Fs, Layout};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use subtle::ConstantTimeEq;

/// Largest token file read.
const TOKEN_LIMIT: u64 = 4096;

/// The bearer token, and where it lives.
pub struct Token {
    /// SHA-256 of the token: what a presented token's digest is compared with.
    digest: [u8; 32],
    pub path: PathBuf,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Token {
    /// Reads the token file, creating it (32 random bytes as hex, mode 0600) when absent.
    pub fn load_or_create(fs: &dyn Fs, layout: &Layout, cfg: &Config) -> Result<Self, HttpError> {
        let path = match &cfg.http.token_file {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => layout.root().join(p),
            None => layout.http_token_file(),
        };
        // A token file the operator put outside the tree (an absolute `token_file`, often a
        // mounted secret) is theirs, reached by the path they gave, as the root itself is; one
        // in the tree goes through `fs`, beneath the root.
        let fs: &dyn Fs = if path.starts_with(layout.root()) { fs } else { &runtime_layout::RealFs };
        let err = |why: String| HttpError::Token { path: path.clone(), why };
        if fs.stat(&path)?.is_none() {
            let mut raw = [0u8; 32];
            let mut filled = 0;
            while filled < raw.len() {
                filled += rustix::rand::getrandom(&mut raw[filled..], rustix::rand::GetRandomFlags::empty())
                    .map_err(|e| err(format!("no random source: {e}")))?;
            }
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            // Written whole under a name of its own, then renamed into place: a broker killed
            // while creating it leaves no empty token behind (which every later start refused).
            let mut tmp = path.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            match fs.remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            fs.create_private(&tmp, format!("{hex}\n").as_bytes(), true)?;
            match fs.rename_noreplace(&tmp, &path) {
                Ok(()) => {
                    if let Some(dir) = path.parent() {
                        fs.sync_dir(dir)?;
                    }
                    tracing::info!(path = %path.display(), "created the http token (mode 0600)")
                }
                // Someone wrote it meanwhile: read theirs.
                Err(e) if e.is_already_exists() => {
                    let _ = fs.remove_file(&tmp);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let bytes = fs.read(&path, TOKEN_LIMIT)?;
        let text = String::from_utf8(bytes).map_err(|_| err("is not UTF-8".into()))?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(err("is empty: a token must not be".into()));
        }
        Ok(Self::new(secret.as_bytes(), path))
    }

    /// A token for tests.
    pub fn from_secret(secret: &str) -> Self {
        Self::new(secret.as_bytes(), PathBuf::new())
    }

    fn new(secret: &[u8], path: PathBuf) -> Self {
        Self { digest: Sha256::digest(secret).into(), path }
    }

    /// Does `Authorization: <value>` carry this token? Compared as digests in constant time,
    /// whatever the length or content of what is presented.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let given = authorization.and_then(|v| v.strip_prefix(b"Bearer ")).map(<[u8]>::trim_ascii);
        let digest: [u8; 32] = Sha256::digest(given.unwrap_or_default()).into();
        bool::from(digest.ct_eq(&self.digest)) && given.is_some()
    }
}

/// Whether a request must carry the token: every change; and every read when the listener is
/// reachable beyond loopback, except the dashboard's own files (the page asks for the token).
pub fn needs_token(method: &Method, path: &str, reads_need_token: bool) -> bool {
    let read = method == Method::GET || method == Method::HEAD;
    if !read {
        return true;
    }
    reads_need_token && (path.starts_with("/api/") || path == "/metrics")
}

/// Middleware: 401 with `WWW-Authenticate: Bearer` unless the request may pass.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if needs_token(req.method(), req.uri().path(), state.reads_need_token) {
        let given = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if !state.token.admits(given) {
            let body = serde_json::json!({
                "error": "unauthorized",
                "reason": "this request needs `Authorization: Bearer <token>`, the token being the content of the broker's http.token file",
            });
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], axum::Json(body))
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let t = Token::from_secret("s3cret");
        assert!(t.admits(Some(b"Bearer s3cret")));
        assert!(t.admits(Some(b"Bearer s3cret \r")));
        for bad in [&b"Bearer s3cre"[..], b"Bearer s3cret2", b"bearer s3cret", b"s3cret", b"Bearer ", b""] {
            assert!(!t.admits(Some(bad)), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(!t.admits(None));
    }

    #[test]
    fn changes_always_need_the_token_reads_only_beyond_loopback() {
        assert!(needs_token(&Method::POST, "/api/tasks", false));
        assert!(needs_token(&Method::DELETE, "/", false));
        assert!(!needs_token(&Method::GET, "/api/tasks", false));
        assert!(needs_token(&Method::GET, "/api/tasks", true));
        assert!(needs_token(&Method::GET, "/metrics", true));
        assert!(!needs_token(&Method::GET, "/", true), "the page itself loads, then asks");
        assert!(!needs_token(&Method::GET, "/assets/app.js", true));
    }

    #[test]
    fn the_token_file_is_created_once_private_and_then_kept() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("runtime"));
        layout.create(&runtime_layout::RealFs).unwrap();
        let cfg = Config::default();
        let a = Token::load_or_create(&runtime_layout::RealFs, &layout, &cfg).unwrap();
        assert_eq!(std::fs::metadata(&a.path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&a.path).unwrap().trim().len(), 64);
        let b = Token::load_or_create(&runtime_layout::RealFs, &layout, &cfg).unwrap();
        assert_eq!(a.digest, b.digest, "kept across starts");
        std::fs::write(&a.path, "  \n").unwrap();
        assert!(matches!(
            Token::load_or_create(&runtime_layout::RealFs, &layout, &cfg),
            Err(HttpError::Token { .. })
        ));
    }

    /// A broker killed while creating the token leaves at most the file it was writing under
    /// its own name, never an empty token (which every later start refused): the next start
    /// writes the token anew.
    #[test]
    fn a_token_creation_cut_short_leaves_no_empty_token() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path().join("runtime"));
        layout.create(&runtime_layout::RealFs).unwrap();
        let token = layout.http_token_file();
        let tmp = token.with_file_name("http.token.tmp");
        std::fs::write(&tmp, "").unwrap();
        let t = Token::load_or_create(&runtime_layout::RealFs, &layout, &Config::default()).unwrap();
        assert_eq!(std::fs::read_to_string(&t.path).unwrap().trim().len(), 64);
        assert!(!tmp.exists(), "nothing left under the name it was written under");
    }
}

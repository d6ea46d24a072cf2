//! Serves the frontend's files from one directory (`[bff] frontend_dir`): GET and HEAD only, no path may leave
//! the directory, client-side routes fall back to `index.html`, strong ETags with `If-None-Match` → 304 (RFC 9110
//! §8.8.3, §13.1.2), and the browser-hardening headers on every answer.
//!
//! Path rules, in order: the path must start with `/`; a raw or percent-decoded backslash or NUL, invalid UTF-8
//! after decoding, or a `.`/`..` segment (also when written `%2e%2e` or split by `%2f`) is refused (400); a segment
//! starting with `.` (hidden files such as `.env`) is not served (404); the file is resolved through its canonical
//! path, which must stay under the canonical root, so a symlink cannot lead out of it either.
//!
//! Files are read with `tokio::fs` and kept in memory for [`CACHE_TTL`] when they are small, so edits show up
//! within seconds without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};
use url::Url;

use crate::response::LocalResponse;

/// How long a file read from disk is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// Files up to this size are cached; larger ones are read at each request.
pub const CACHE_MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Memory the cache may hold in total.
const CACHE_MAX_BYTES: u64 = 32 * 1024 * 1024;

/// The document served for `/` and for extensionless paths that name no file (client-side routes).
const INDEX: &str = "index.html";

/// `Content-Security-Policy` of every answer: only the app's own origin, never framed. The one exception is
/// `frame-src`: the app may also frame the token service's origin, because the hidden iframe of a silent login
/// (`/bff/silent-login`) is redirected there for its `prompt=none` authorization request and back to
/// `/bff/callback`, and CSP checks `frame-src` at every redirect of a frame's navigation (CSP 3 §6.1.2.3), so
/// `'self'` alone blocks silent login. `token_service` is the issuer; only its origin is used (an opaque one,
/// impossible for a validated issuer, adds nothing).
pub fn content_security_policy(token_service: &Url) -> String {
    let origin = token_service.origin();
    let token_service = if origin.is_tuple() { format!(" {}", origin.ascii_serialization()) } else { String::new() };
    format!(
        "default-src 'self'; frame-src 'self'{token_service}; frame-ancestors 'none'; base-uri 'self'; \
         form-action 'self'; object-src 'none'"
    )
}

/// The headers added to every answer, static file or refusal, besides `Content-Security-Policy`.
const SECURITY_HEADERS: [(&str, &str); 3] =
    [("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"), ("x-frame-options", "DENY")];

/// A directory of static files, served as described in the module documentation.
pub struct StaticFiles {
    /// Canonical (absolute, symlink-free) path of the directory.
    root: PathBuf,
    /// Recently read files, keyed by their path relative to `root` (`/`-separated, already validated).
    cache: moka::future::Cache<String, Arc<File>>,
    /// [`content_security_policy`] for this deployment's token service.
    content_security_policy: String,
}

impl StaticFiles {
    /// Serves files under `root`, which must be an existing directory; it is canonicalised once here.
    /// `token_service` is the issuer the gateway logs in with (see [`content_security_policy`]).
    pub fn new(root: PathBuf, token_service: &Url) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(&root)?;
        if !root.is_dir() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"));
        }
        let cache = moka::future::Cache::builder()
            .max_capacity(CACHE_MAX_BYTES)
            .weigher(|key: &String, file: &Arc<File>| u32::try_from(key.len() + file.body.len()).unwrap_or(u32::MAX))
            .time_to_live(CACHE_TTL)
            .build();
        Ok(Self { root, cache, content_security_policy: content_security_policy(token_service) })
    }

    /// The answer to `method path` (the URI's path, still percent-encoded; a query is ignored) given the
    /// request's `If-None-Match` header.
    pub async fn serve(&self, method: &str, path: &str, if_none_match: Option<&str>) -> LocalResponse {
        let head = match method {
            "GET" => false,
            "HEAD" => true,
            _ => {
                return self.secured(
                    LocalResponse::error(405, "method_not_allowed", "use GET or HEAD").header("allow", "GET, HEAD"),
                );
            }
        };
        let segments = match parse_request_path(path) {
            Ok(segments) => segments,
            Err(PathRefusal::Invalid) => {
                return self.secured(LocalResponse::error(400, "invalid_request", "invalid path"));
            }
            Err(PathRefusal::Hidden) => return self.not_found(),
        };
        let key = if segments.is_empty() { INDEX.to_owned() } else { segments.join("/") };
        let file = match self.load(key).await {
            Some(file) => file,
            // A client-side route such as /orders/42: the app's entry document handles it.
            None if !segments.last().is_some_and(|last| has_extension(last)) => match self.load(INDEX.to_owned()).await
            {
                Some(index) => index,
                None => return self.not_found(),
            },
            None => return self.not_found(),
        };
        self.secured(file.response(head, if_none_match))
    }

    /// The file at `key` (a validated relative path), from the cache or from disk; `None` when there is no regular
    /// file there under the root.
    async fn load(&self, key: String) -> Option<Arc<File>> {
        if let Some(file) = self.cache.get(&key).await {
            return Some(file);
        }
        let file = Arc::new(self.read(&key).await?);
        if file.body.len() as u64 <= CACHE_MAX_FILE_BYTES {
            self.cache.insert(key, file.clone()).await;
        }
        Some(file)
    }

    fn not_found(&self) -> LocalResponse {
        self.secured(LocalResponse::error(404, "not_found", "no such file"))
    }

    /// Adds the security headers every answer carries.
    fn secured(&self, response: LocalResponse) -> LocalResponse {
        SECURITY_HEADERS
            .iter()
            .fold(response, |response, (name, value)| response.header(name, *value))
            .header("content-security-policy", self.content_security_policy.as_str())
    }

    async fn read(&self, key: &str) -> Option<File> {
        let canonical = match tokio::fs::canonicalize(self.root.join(key)).await {
            Ok(canonical) => canonical,
            Err(error) => return log_unexpected(key, error),
        };
        // The canonical path has every symlink and `..` resolved: it must still be inside the root.
        if !canonical.starts_with(&self.root) {
            tracing::warn!(path = key, "static file resolves outside the frontend directory; not served");
            return None;
        }
        let metadata = tokio::fs::metadata(&canonical).await.ok()?;
        if !metadata.is_file() {
            return None;
        }
        let body = match tokio::fs::read(&canonical).await {
            Ok(body) => Bytes::from(body),
            Err(error) => return log_unexpected(key, error),
        };
        Some(File::new(&canonical, body))
    }
}

/// One file's bytes and the headers derived from them.
#[derive(Debug)]
struct File {
    body: Bytes,
    /// Strong entity tag (RFC 9110 §8.8.3): a digest of the content, quoted.
    etag: String,
    content_type: String,
    cache_control: &'static str,
}

impl File {
    fn new(path: &Path, body: Bytes) -> Self {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18]));
        // The entry document is revalidated at every load so a deployment shows at once; assets may be reused.
        let cache_control =
            if path.file_name().is_some_and(|name| name == INDEX) { "no-cache" } else { "public, max-age=3600" };
        Self { body, etag, content_type: content_type(path), cache_control }
    }

    fn response(&self, head: bool, if_none_match: Option<&str>) -> LocalResponse {
        let headers = |response: LocalResponse| {
            response.header("etag", self.etag.as_str()).header("cache-control", self.cache_control)
        };
        if if_none_match.is_some_and(|value| etag_matches(value, &self.etag)) {
            return headers(LocalResponse::new(304));
        }
        let response = headers(LocalResponse::new(200))
            .header("content-type", self.content_type.as_str())
            .header("content-length", self.body.len().to_string());
        if head { response } else { response.body(self.body.clone()) }
    }
}

/// Why a request path is not looked up at all.
#[derive(Debug, PartialEq, Eq)]
enum PathRefusal {
    /// Traversal or malformed: 400.
    Invalid,
    /// A hidden file or directory (a segment starting with `.`): 404.
    Hidden,
}

/// The percent-decoded, non-empty segments of `path`, or why it is refused (see the module documentation).
fn parse_request_path(path: &str) -> Result<Vec<String>, PathRefusal> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(PathRefusal::Invalid);
    }
    let decoded = percent_decode_str(path).decode_utf8().map_err(|_| PathRefusal::Invalid)?;
    // Checked after decoding, so `%5c`, `%00`, `%2e%2e` and `..%2f` are caught as well as their raw forms.
    if decoded.contains(['\\', '\0']) {
        return Err(PathRefusal::Invalid);
    }
    let mut segments = Vec::new();
    for segment in decoded.split('/').filter(|segment| !segment.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(PathRefusal::Invalid);
        }
        if segment.starts_with('.') {
            return Err(PathRefusal::Hidden);
        }
        segments.push(segment.to_owned());
    }
    Ok(segments)
}

/// `app.js` has one, `orders` and `.env` do not.
fn has_extension(segment: &str) -> bool {
    Path::new(segment).extension().is_some()
}

/// The media type by file extension, with `charset=utf-8` for text (the files are expected in UTF-8).
fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.essence_str(), "application/javascript" | "image/svg+xml" | "application/xml");
    if textual { format!("{}; charset=utf-8", mime.essence_str()) } else { mime.essence_str().to_owned() }
}

/// RFC 9110 §13.1.2: `If-None-Match` is `*` or a list of entity tags, compared weakly (a `W/` prefix is ignored).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match.split(',').map(str::trim).any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// `None` for a missing file; other I/O errors (permissions, …) are logged once here and also answered 404.
fn log_unexpected<T>(key: &str, error: std::io::Error) -> Option<T> {
    if !matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) {
        tracing::warn!(path = key, %error, "static file unreadable");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root with index.html, app.js, style.css, a nested asset, a hidden file, and a sibling secret outside it.
    struct Fixture {
        _dir: tempfile::TempDir,
        files: StaticFiles,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join("assets/img")).unwrap();
        std::fs::write(root.join("index.html"), "<!doctype html><title>app</title>").unwrap();
        std::fs::write(root.join("app.js"), "console.log('app');").unwrap();
        std::fs::write(root.join("style.css"), "body{}").unwrap();
        std::fs::write(root.join("data.json"), "{}").unwrap();
        std::fs::write(root.join("assets/img/logo.png"), [0x89, b'P', b'N', b'G']).unwrap();
        std::fs::write(root.join(".env"), "SECRET=1").unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "secret outside the root").unwrap();
        std::fs::write(dir.path().join("x"), "secret outside the root").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("Cargo.toml"), root.join("escape.txt")).unwrap();
        let files = StaticFiles::new(root, &token_service()).unwrap();
        Fixture { _dir: dir, files }
    }

    fn token_service() -> Url {
        Url::parse("https://id.example.com/tenant/a").unwrap()
    }

    async fn get(fixture: &Fixture, path: &str) -> LocalResponse {
        fixture.files.serve("GET", path, None).await
    }

    fn body(response: &LocalResponse) -> &str {
        std::str::from_utf8(&response.body).unwrap()
    }

    #[test]
    fn new_refuses_a_missing_directory_and_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StaticFiles::new(dir.path().join("missing"), &token_service()).is_err());
        std::fs::write(dir.path().join("file"), "x").unwrap();
        assert!(StaticFiles::new(dir.path().join("file"), &token_service()).is_err());
    }

    #[tokio::test]
    async fn root_and_extensionless_paths_serve_index_html() {
        let fixture = fixture();
        for path in ["/", "/orders", "/orders/42/edit", "/assets", "/index.html", "/?q=1"] {
            let response = get(&fixture, path).await;
            assert_eq!(response.status, 200, "{path}");
            assert!(body(&response).contains("<title>app</title>"), "{path}");
            assert_eq!(response.header_value("cache-control"), Some("no-cache"), "{path}");
            assert_eq!(response.header_value("content-type"), Some("text/html; charset=utf-8"), "{path}");
        }
    }

    #[tokio::test]
    async fn missing_asset_with_an_extension_is_404() {
        let fixture = fixture();
        for path in ["/missing.js", "/assets/img/missing.png", "/orders/report.pdf"] {
            let response = get(&fixture, path).await;
            assert_eq!(response.status, 404, "{path}");
            assert!(!body(&response).contains("<title>"), "{path}");
        }
    }

    #[tokio::test]
    async fn traversal_attempts_are_refused() {
        let fixture = fixture();
        for path in [
            "/../Cargo.toml",
            "/%2e%2e/x",
            "/%2E%2E/Cargo.toml",
            "/a/..%2f..%2fx",
            "/a/%2e%2e%2f%2e%2e%2fCargo.toml",
            "/\\..\\x",
            "/%5c..%5cx",
            "/./app.js",
            "/app.js%00.png",
            "/%ff",
            "Cargo.toml",
        ] {
            let response = get(&fixture, path).await;
            assert_eq!(response.status, 400, "{path}");
            assert!(!body(&response).contains("secret"), "{path}");
        }
    }

    #[tokio::test]
    async fn hidden_files_and_symlinks_out_of_the_root_are_not_served() {
        let fixture = fixture();
        for path in ["/.env", "/%2eenv", "/escape.txt"] {
            let response = get(&fixture, path).await;
            assert_eq!(response.status, 404, "{path}");
            assert!(!body(&response).contains("secret") && !body(&response).contains("SECRET"), "{path}");
        }
    }

    #[tokio::test]
    async fn assets_have_a_strong_etag_and_if_none_match_gives_304() {
        let fixture = fixture();
        let first = get(&fixture, "/app.js").await;
        assert_eq!(first.status, 200);
        assert_eq!(first.header_value("cache-control"), Some("public, max-age=3600"));
        let etag = first.header_value("etag").unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));

        for condition in [etag.clone(), format!("\"other\", {etag}"), format!("W/{etag}"), "*".to_owned()] {
            let revalidated = fixture.files.serve("GET", "/app.js", Some(&condition)).await;
            assert_eq!(revalidated.status, 304, "{condition}");
            assert!(revalidated.body.is_empty());
            assert_eq!(revalidated.header_value("etag"), Some(etag.as_str()));
            assert_eq!(revalidated.header_value("cache-control"), Some("public, max-age=3600"));
        }
        let changed = fixture.files.serve("GET", "/app.js", Some("\"stale\"")).await;
        assert_eq!(changed.status, 200);
        assert_eq!(body(&changed), "console.log('app');");
        // Another file, another tag.
        assert_ne!(get(&fixture, "/style.css").await.header_value("etag"), Some(etag.as_str()));
    }

    #[tokio::test]
    async fn content_types_follow_the_extension() {
        let fixture = fixture();
        for (path, expected) in [
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/data.json", "application/json"),
            ("/assets/img/logo.png", "image/png"),
        ] {
            let response = get(&fixture, path).await;
            assert_eq!(response.status, 200, "{path}");
            let content_type = response.header_value("content-type").unwrap();
            // mime_guess names JavaScript either way depending on its version.
            let content_type = content_type.replace("application/javascript", "text/javascript");
            assert_eq!(content_type, expected, "{path}");
        }
    }

    #[tokio::test]
    async fn security_headers_are_on_every_answer() {
        let fixture = fixture();
        let answers = [
            get(&fixture, "/").await,
            get(&fixture, "/app.js").await,
            get(&fixture, "/missing.js").await,
            get(&fixture, "/../Cargo.toml").await,
            fixture.files.serve("POST", "/", None).await,
            fixture.files.serve("GET", "/app.js", Some("*")).await,
        ];
        for response in answers {
            for (name, value) in SECURITY_HEADERS {
                assert_eq!(response.header_value(name), Some(value), "{name} on {}", response.status);
            }
            assert_eq!(
                response.header_value("content-security-policy"),
                Some(content_security_policy(&token_service()).as_str()),
                "CSP on {}",
                response.status
            );
        }
    }

    /// The app frames only itself and the token service's origin (the silent-login iframe is redirected there);
    /// nothing frames the app; everything else stays 'self'.
    #[test]
    fn csp_frames_only_self_and_the_token_services_origin() {
        let csp = content_security_policy(&token_service());
        let directive = |name: &str| {
            csp.split(';').map(str::trim).find_map(|d| d.strip_prefix(name).map(str::trim)).map(str::to_owned)
        };
        assert_eq!(directive("default-src").as_deref(), Some("'self'"), "{csp}");
        assert_eq!(directive("frame-src").as_deref(), Some("'self' https://id.example.com"), "{csp}");
        assert_eq!(directive("frame-ancestors").as_deref(), Some("'none'"), "{csp}");
        assert_eq!(directive("object-src").as_deref(), Some("'none'"), "{csp}");
        let loopback = content_security_policy(&Url::parse("http://127.0.0.1:9000").unwrap());
        assert!(loopback.contains("frame-src 'self' http://127.0.0.1:9000;"), "{loopback}");
    }

    #[tokio::test]
    async fn head_has_headers_and_no_body() {
        let fixture = fixture();
        let response = fixture.files.serve("HEAD", "/app.js", None).await;
        assert_eq!(response.status, 200);
        assert!(response.body.is_empty());
        assert_eq!(response.header_value("content-length"), Some("19"));
        assert!(response.header_value("etag").is_some());
        assert!(response.header_value("content-type").unwrap().ends_with("javascript; charset=utf-8"));
    }

    #[tokio::test]
    async fn other_methods_are_405_with_allow() {
        let fixture = fixture();
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
            let response = fixture.files.serve(method, "/app.js", None).await;
            assert_eq!(response.status, 405, "{method}");
            assert_eq!(response.header_value("allow"), Some("GET, HEAD"));
        }
    }

    #[tokio::test]
    async fn edits_show_up_after_the_cache_ttl() {
        let fixture = fixture();
        let before = get(&fixture, "/app.js").await;
        std::fs::write(fixture.files.root.join("app.js"), "console.log('v2');").unwrap();
        tokio::time::sleep(CACHE_TTL + Duration::from_millis(300)).await;
        let after = get(&fixture, "/app.js").await;
        assert_eq!(body(&after), "console.log('v2');");
        assert_ne!(before.header_value("etag"), after.header_value("etag"));
    }

    #[test]
    fn request_paths_parse_into_segments() {
        assert_eq!(parse_request_path("/"), Ok(vec![]));
        assert_eq!(parse_request_path("//a//b%20c/"), Ok(vec!["a".to_owned(), "b c".to_owned()]));
        assert_eq!(parse_request_path("/a/%252e%252e"), Ok(vec!["a".to_owned(), "%2e%2e".to_owned()]));
        assert_eq!(parse_request_path("/a..b/c"), Ok(vec!["a..b".to_owned(), "c".to_owned()]));
        assert_eq!(parse_request_path("/a/../b"), Err(PathRefusal::Invalid));
        assert_eq!(parse_request_path("/.git/config"), Err(PathRefusal::Hidden));
    }
}

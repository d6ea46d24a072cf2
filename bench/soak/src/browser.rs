//! One simulated browser: a cookie jar per `host:port` that, like browsers on `localhost`, sends `Secure` (and
//! `__Host-`) cookies over plain http; the login through the gateway and the token service's real login form;
//! and the API call the sessions repeat.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use url::Url;

/// One answer, body read.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
pub struct Browser {
    jar: BTreeMap<String, BTreeMap<String, String>>,
}

/// Why a login did not end with a session cookie: the step and what happened there.
#[derive(Debug)]
pub struct LoginError {
    pub step: &'static str,
    pub detail: String,
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

fn authority(url: &Url) -> String {
    format!("{}:{}", url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0))
}

impl Browser {
    fn cookie_header(&self, url: &Url) -> Option<String> {
        let cookies = self.jar.get(&authority(url)).filter(|c| !c.is_empty())?;
        Some(cookies.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; "))
    }

    /// Stores the cookies `reply` set for `url`'s site (`Max-Age=0` deletes).
    pub fn absorb(&mut self, url: &Url, headers: &HeaderMap) {
        let site = self.jar.entry(authority(url)).or_default();
        for set in headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let pair = set.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else { continue };
            if set.contains("Max-Age=0") {
                site.remove(name.trim());
            } else {
                site.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// Forgets every cookie of `url`'s site.
    pub fn forget(&mut self, url: &Url) {
        self.jar.remove(&authority(url));
    }

    /// The value of cookie `name` of `url`'s site.
    pub fn cookie(&self, url: &Url, name: &str) -> Option<&str> {
        self.jar.get(&authority(url))?.get(name).map(String::as_str)
    }

    /// Sends `request` for `url` with the jar's cookies; stores what the answer sets.
    async fn send(&mut self, request: reqwest::RequestBuilder, url: &Url) -> Result<Reply, reqwest::Error> {
        let request = match self.cookie_header(url) {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await?;
        self.absorb(url, &headers);
        Ok(Reply { status, headers, body })
    }

    pub async fn get(
        &mut self,
        http: &reqwest::Client,
        url: &Url,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let mut request = http.get(url.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request, url).await
    }

    async fn post_form(&mut self, http: &reqwest::Client, url: &Url, body: String) -> Result<Reply, reqwest::Error> {
        let request = http.post(url.clone()).header("content-type", "application/x-www-form-urlencoded").body(body);
        self.send(request, url).await
    }

    /// Logs `username` in the way a browser does: `/bff/login` → the token service's authorize page (its login
    /// form, or straight back while its single sign-on session lives) → the form posted → `/bff/callback`, which
    /// sets the gateway's session cookie `cookie_name`.
    pub async fn login(
        &mut self,
        http: &reqwest::Client,
        gateway: &Url,
        username: &str,
        password: &str,
        cookie_name: &str,
    ) -> Result<(), LoginError> {
        let fail = |step: &'static str| move |detail: String| LoginError { step, detail };
        let start = gateway.join("/bff/login?returnUrl=%2F").map_err(|e| fail("bff/login")(e.to_string()))?;
        let started = self.get(http, &start, &[]).await.map_err(|e| fail("bff/login")(describe(&e)))?;
        let authorize = redirect(&started).ok_or_else(|| fail("bff/login")(status_text(&started)))?;
        let authorize = gateway.join(authorize).map_err(|e| fail("bff/login")(e.to_string()))?;

        let page = self.get(http, &authorize, &[]).await.map_err(|e| fail("authorize")(describe(&e)))?;
        let callback = match page.status {
            302 | 303 => redirect(&page).map(str::to_owned),
            200 => {
                let (csrf, request) =
                    form_fields(&page.body).ok_or_else(|| fail("authorize")("no login form".into()))?;
                let form = [("username", username), ("password", password), ("csrf", &csrf), ("request", &request)];
                let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
                let action = authorize.join("/login").map_err(|e| fail("login form")(e.to_string()))?;
                let posted = self.post_form(http, &action, body).await.map_err(|e| fail("login form")(describe(&e)))?;
                Some(redirect(&posted).ok_or_else(|| fail("login form")(status_text(&posted)))?.to_owned())
            }
            _ => None,
        };
        let callback = callback.ok_or_else(|| fail("authorize")(status_text(&page)))?;
        let callback = authorize.join(&callback).map_err(|e| fail("callback")(e.to_string()))?;
        if !callback.as_str().starts_with(gateway.join("/bff/callback").map(String::from).unwrap_or_default().as_str())
        {
            return Err(fail("callback")(format!("the token service sent the browser to {}", callback.path())));
        }
        let done = self.get(http, &callback, &[]).await.map_err(|e| fail("callback")(describe(&e)))?;
        if done.status != 302 || self.cookie(gateway, cookie_name).is_none() {
            return Err(fail("callback")(status_text(&done)));
        }
        Ok(())
    }
}

fn redirect(reply: &Reply) -> Option<&str> {
    matches!(reply.status, 301 | 302 | 303 | 307 | 308).then(|| reply.header("location")).flatten()
}

/// `503 temporarily_unavailable`-style summary of an answer (status and the JSON `error`, if any).
pub fn status_text(reply: &Reply) -> String {
    match error_code(&reply.body) {
        Some(error) => format!("{} {error}", reply.status),
        None => reply.status.to_string(),
    }
}

/// The `error` member of a JSON error body.
pub fn error_code(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("error")?.as_str().map(str::to_owned)
}

/// A transport error as a kind: `timeout`, `connect`, or `other: …`.
pub fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "connect error".into()
    } else {
        format!("transport error: {error}")
    }
}

/// The `csrf` and `request` hidden inputs of the token service's login form (HTML-escaped by its template).
fn form_fields(html: &str) -> Option<(String, String)> {
    let field = |name: &str| -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker)? + marker.len();
        let end = html[start..].find('"')? + start;
        Some(
            html[start..end]
                .replace("&#x2B;", "+")
                .replace("&#x3D;", "=")
                .replace("&#x2F;", "/")
                .replace("&quot;", "\"")
                .replace("&amp;", "&"),
        )
    };
    Some((field("csrf")?, field("request")?))
}

/// The one HTTP client all simulated browsers share: no redirects followed, `localhost` pinned to 127.0.0.1
/// (where the processes listen), a timeout above the gateway's own 10 s towards the token service.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .timeout(timeout)
        .pool_max_idle_per_host(1024)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_unescaped() {
        let html = r#"<input name="csrf" value="a&#x2B;b"><input name="request" value="x&#x3D;&amp;y">"#;
        assert_eq!(form_fields(html), Some(("a+b".into(), "x=&y".into())));
        assert_eq!(form_fields("<p>no form</p>"), None);
    }

    #[test]
    fn cookies_are_kept_per_site_and_deleted_by_max_age_zero() {
        let mut browser = Browser::default();
        let gateway = Url::parse("http://localhost:8080/").unwrap();
        let other = Url::parse("http://localhost:9000/").unwrap();
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", "__Host-g=v1; Path=/; Secure; HttpOnly".parse().unwrap());
        headers.append("set-cookie", "tx=1; Path=/".parse().unwrap());
        browser.absorb(&gateway, &headers);
        assert_eq!(browser.cookie(&gateway, "__Host-g"), Some("v1"));
        assert_eq!(browser.cookie(&other, "__Host-g"), None);
        let mut delete = HeaderMap::new();
        delete.append("set-cookie", "tx=; Max-Age=0; Path=/".parse().unwrap());
        browser.absorb(&gateway, &delete);
        assert_eq!(browser.cookie_header(&gateway).as_deref(), Some("__Host-g=v1"));
    }
}

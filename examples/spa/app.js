// Example SPA behind the Gatehouse gateway. It never sees a token: the gateway keeps them server-side and the
// browser only holds the gateway's HttpOnly session cookie. Every call to the gateway carries `X-CSRF: 1`, which
// a cross-site form cannot send (the gateway answers 401 without it).
//
// A 401 from the gateway — no session, or one that expired or was logged out elsewhere — shows the signed-out
// state with the "Log in" button; the app never redirects by itself, so an ended session cannot cause a loop.
// `<body data-session>` says which state is shown ("loading", "anonymous", "signed-in", "error"), for tests.
"use strict";

const csrfHeaders = { "X-CSRF": "1" };
const $ = (id) => document.getElementById(id);

let logoutUrl = null;
let silentLoginTimer = null;

// How long the silent-login iframe may take before the app gives up on it.
const SILENT_LOGIN_TIMEOUT_MS = 10_000;

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("click", () => {
    location.assign("/bff/login?returnUrl=" + encodeURIComponent("/"));
  });
  $("logout").addEventListener("click", () => {
    if (logoutUrl) location.assign(logoutUrl);
  });
  $("call-api").addEventListener("click", callApi);
  $("silent-login").addEventListener("click", silentLogin);
  window.addEventListener("message", onSilentLoginMessage);
  loadUser();
});

// GET /bff/user: 401 → anonymous (with `anonymousMessage`); 200 → [{type, value}, …] claims, including
// bff:logout_url and bff:session_expires_in.
async function loadUser(anonymousMessage = "Not signed in.") {
  setStatus("Loading session…");
  let response;
  try {
    response = await fetch("/bff/user", { headers: csrfHeaders, credentials: "same-origin", cache: "no-store" });
  } catch (error) {
    return showError("The gateway cannot be reached: " + error.message);
  }
  if (response.status === 401) return showAnonymous(anonymousMessage);
  if (!response.ok) return showError(`/bff/user answered ${response.status}`);
  showUser(await response.json());
}

// The signed-out state: "Log in" (and "Silent login") offered, nothing of the last user left on the page.
function showAnonymous(message = "Not signed in.") {
  logoutUrl = null;
  $("user").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("user-name").textContent = "";
  $("claims").tBodies[0].replaceChildren();
  document.body.dataset.session = "anonymous";
  setStatus(message);
}

function showError(text) {
  document.body.dataset.session = "error";
  setStatus(text, true);
}

function showUser(claims) {
  const claim = (type) => claims.find((c) => c.type === type)?.value;
  logoutUrl = claim("bff:logout_url") ?? null;
  $("user-name").textContent = claim("name") ?? claim("sub") ?? "(unknown)";
  $("session-expiry").textContent = formatSeconds(claim("bff:session_expires_in"));

  const rows = claims.map(({ type, value }) => {
    const row = document.createElement("tr");
    for (const text of [type, typeof value === "string" ? value : JSON.stringify(value)]) {
      const cell = document.createElement("td");
      cell.textContent = text; // textContent, never innerHTML: claim values are data
      row.append(cell);
    }
    return row;
  });
  $("claims").tBodies[0].replaceChildren(...rows);

  $("user").hidden = false;
  $("login").hidden = true;
  $("logout").hidden = !logoutUrl;
  document.body.dataset.session = "signed-in";
  setStatus("Signed in.");
}

// GET /api/whoami through the gateway, which adds the DPoP-bound access token on the way. The API answers with
// what it verified, including the thumbprint (`jkt`) of the key the token is bound to and the proof was signed
// with. A 401 means the session has ended (expired, logged out in another tab, revoked): signed-out state.
async function callApi() {
  $("api-result").textContent = "Calling…";
  $("api-proof").hidden = true;
  $("api-jkt").textContent = "";
  let response;
  let text;
  try {
    response = await fetch("/api/whoami", { headers: csrfHeaders, credentials: "same-origin", cache: "no-store" });
    text = await response.text();
  } catch (error) {
    $("api-result").textContent = "Request failed: " + error.message;
    return;
  }
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: shown as it came
  }
  const shown = body === null ? text : JSON.stringify(body, null, 2);
  $("api-result").textContent = `${response.status} ${response.statusText}\n${shown}`;
  if (response.status === 401) {
    showAnonymous("Your session has ended. Log in again.");
    return;
  }
  if (response.ok && typeof body?.jkt === "string") {
    $("api-jkt").textContent = body.jkt;
    $("api-proof").hidden = false;
  }
}

// Silent login: /bff/silent-login in a hidden iframe tries a login without user interaction (prompt=none) and
// ends on a page that posts {source: "bff-silent-login", isLoggedIn} to this window. Without an answer within
// SILENT_LOGIN_TIMEOUT_MS the attempt is abandoned.
function silentLogin() {
  endSilentLogin();
  const frame = document.createElement("iframe");
  frame.className = "silent-login";
  frame.title = "silent login";
  frame.src = "/bff/silent-login";
  document.body.append(frame);
  silentLoginTimer = setTimeout(() => {
    endSilentLogin();
    setStatus("Silent login did not answer. Use Log in.", true);
  }, SILENT_LOGIN_TIMEOUT_MS);
  setStatus("Trying silent login…");
}

function onSilentLoginMessage(event) {
  if (event.origin !== location.origin) return; // only our own gateway's page
  const data = event.data;
  if (!data || data.source !== "bff-silent-login") return;
  endSilentLogin();
  loadUser(data.isLoggedIn ? "Not signed in." : "Silent login: no session at the token service. Use Log in.");
}

function endSilentLogin() {
  clearTimeout(silentLoginTimer);
  silentLoginTimer = null;
  document.querySelector("iframe.silent-login")?.remove();
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function formatSeconds(value) {
  const seconds = Number(value);
  if (!Number.isFinite(seconds)) return "(unknown)";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s} s` : `${s} s`;
}

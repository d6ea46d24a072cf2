// Example SPA behind the Gatehouse gateway. It never sees a token: the gateway keeps them server-side and the
// browser only holds the gateway's HttpOnly session cookie. Every call to the gateway carries `X-CSRF: 1`, which
// a cross-site form cannot send (the gateway answers 401 without it).
"use strict";

const csrfHeaders = { "X-CSRF": "1" };
const $ = (id) => document.getElementById(id);

let logoutUrl = null;

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

// GET /bff/user: 401 → anonymous; 200 → [{type, value}, …] claims, including bff:logout_url and
// bff:session_expires_in.
async function loadUser() {
  setStatus("Loading session…");
  let response;
  try {
    response = await fetch("/bff/user", { headers: csrfHeaders, credentials: "same-origin", cache: "no-store" });
  } catch (error) {
    return setStatus("The gateway cannot be reached: " + error.message, true);
  }
  if (response.status === 401) return showAnonymous();
  if (!response.ok) return setStatus(`/bff/user answered ${response.status}`, true);
  showUser(await response.json());
}

function showAnonymous() {
  logoutUrl = null;
  $("user").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("user-name").textContent = "";
  setStatus("Not signed in.");
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
  setStatus("Signed in.");
}

// GET /api/whoami through the gateway, which adds the DPoP-bound access token on the way.
async function callApi() {
  $("api-result").textContent = "Calling…";
  try {
    const response = await fetch("/api/whoami", { headers: csrfHeaders, credentials: "same-origin" });
    const text = await response.text();
    let shown = text;
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // not JSON: show it as it came
    }
    $("api-result").textContent = `${response.status} ${response.statusText}\n${shown}`;
  } catch (error) {
    $("api-result").textContent = "Request failed: " + error.message;
  }
}

// Silent login: /bff/silent-login in a hidden iframe tries a login without user interaction (prompt=none) and
// ends on a page that posts {source: "bff-silent-login", isLoggedIn} to this window.
function silentLogin() {
  document.querySelector("iframe.silent-login")?.remove();
  const frame = document.createElement("iframe");
  frame.className = "silent-login";
  frame.title = "silent login";
  frame.src = "/bff/silent-login";
  document.body.append(frame);
  setStatus("Trying silent login…");
}

function onSilentLoginMessage(event) {
  if (event.origin !== location.origin) return; // only our own gateway's page
  const data = event.data;
  if (!data || data.source !== "bff-silent-login") return;
  document.querySelector("iframe.silent-login")?.remove();
  setStatus(data.isLoggedIn ? "Silent login succeeded." : "Silent login: no session at the token service.");
  loadUser();
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

// accord's one script: relative times, live updates of the overview from
// the JSON API, and the buttons that need the API token. The token is kept
// in this tab's session storage only and sent as a Bearer header.
"use strict";

function relative(iso) {
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (!isFinite(seconds)) return "";
  if (seconds < 60) return seconds + " s ago";
  if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
  if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " d ago";
}

function showRelative(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    t.textContent = relative(t.getAttribute("datetime"));
  }
}

// Text only: every value from the API is set as text, never as markup.
function setTime(cell, iso) {
  cell.replaceChildren();
  if (!iso) {
    const none = document.createElement("span");
    none.className = "muted";
    none.textContent = "never";
    cell.append(none);
    return;
  }
  const t = document.createElement("time");
  t.setAttribute("datetime", iso);
  t.title = iso;
  t.textContent = relative(iso);
  cell.append(t);
}

function setRevision(cell, rev) {
  cell.replaceChildren();
  if (!rev) {
    cell.textContent = "—";
    return;
  }
  const code = document.createElement("code");
  code.className = "rev";
  code.title = rev;
  code.dataset.full = rev;
  code.textContent = rev.slice(0, 12);
  cell.append(code);
}

// A source's commits as the server renders them (`commits` in mod.rs): the
// applied revision's, and the attempted one's when that differs. Text only.
function setCommits(cell, source) {
  cell.replaceChildren();
  const line = (commit, label) => {
    if (!commit) return;
    const span = document.createElement("span");
    span.className = "commit";
    if (label) {
      const muted = document.createElement("span");
      muted.className = "muted";
      muted.textContent = label + " ";
      span.append(muted);
    }
    const subject = document.createElement("span");
    subject.className = "subject";
    subject.textContent = commit.message.split("\n")[0].replace(/\r$/, "");
    const by = document.createElement("span");
    by.className = "muted by";
    const when = document.createElement("time");
    when.setAttribute("datetime", commit.authoredAt);
    when.title = commit.authoredAt;
    when.textContent = relative(commit.authoredAt);
    by.append(commit.author + " · ", when);
    span.append(subject, " ", by);
    cell.append(span);
  };
  line(source.lastAppliedCommit, "");
  if (source.lastAttemptedRevision !== source.lastAppliedRevision) line(source.lastAttemptedCommit, "attempted:");
}

const SYMBOLS = { Synced: "✓", OutOfSync: "≠", Progressing: "…", Error: "✕", Suspended: "‖" };

function setState(cell, state) {
  const badge = document.createElement("span");
  badge.className = "badge " + state.toLowerCase();
  badge.dataset.state = state;
  const symbol = document.createElement("span");
  symbol.setAttribute("aria-hidden", "true");
  symbol.textContent = (SYMBOLS[state] || "?") + " ";
  badge.append(symbol, document.createTextNode(state));
  cell.replaceChildren(badge);
}

async function refresh(table) {
  let status;
  try {
    const response = await fetch(table.dataset.live, { headers: { accept: "application/json" } });
    if (!response.ok) return;
    status = await response.json();
  } catch (_) {
    return;
  }
  for (const source of status.sources) {
    const row = [...table.querySelectorAll("tr[data-source]")].find((r) => r.dataset.source === source.name);
    if (!row) continue;
    const cell = (field) => row.querySelector('[data-field="' + field + '"]');
    setState(cell("state"), source.state);
    setRevision(cell("applied"), source.lastAppliedRevision);
    setRevision(cell("attempted"), source.lastAttemptedRevision);
    setCommits(cell("commit"), source);
    setTime(cell("attempt"), source.lastAttemptAt);
    setTime(cell("success"), source.lastSuccessAt);
    cell("managed").textContent = source.counts.managed;
    // Open drift is what a report-mode sync left in place: the source is then out of sync.
    cell("drift").textContent = source.state === "OutOfSync" ? source.counts.drifted : 0;
    cell("conflicts").textContent = source.counts.conflicts;
    cell("message").textContent = source.message;
  }
}

function token(ask) {
  let value = sessionStorage.getItem("accord-token");
  if (!value && ask) {
    value = window.prompt("The controller's API token (kept in this tab only):");
    if (value) sessionStorage.setItem("accord-token", value);
  }
  return value;
}

async function post(button) {
  const output = button.closest(".actions")?.querySelector("output");
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  const headers = { "content-type": "application/json" };
  const value = token(true);
  if (value) headers.authorization = "Bearer " + value;
  button.disabled = true;
  try {
    const response = await fetch(button.dataset.post, { method: "POST", headers, body: button.dataset.body || "{}" });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) sessionStorage.removeItem("accord-token");
    if (output) output.textContent = response.ok ? "Done: " + (body.message || body.state || "ok") : "Refused: " + (body.detail || response.status);
  } catch (error) {
    if (output) output.textContent = "Failed: " + error;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  showRelative(document);
  setInterval(() => showRelative(document), 30000);
  const table = document.querySelector("table[data-live]");
  if (table) setInterval(() => refresh(table), 3000);
  for (const button of document.querySelectorAll("button[data-post]")) {
    button.addEventListener("click", () => post(button));
  }
  const tokenButton = document.getElementById("token-button");
  if (tokenButton) {
    tokenButton.hidden = false;
    tokenButton.addEventListener("click", () => {
      sessionStorage.removeItem("accord-token");
      token(true);
    });
  }
});

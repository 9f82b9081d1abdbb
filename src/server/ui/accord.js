// accord's one script: relative times, live updates of the overview and a
// source's page from the JSON API, and the buttons that need the API token.
// The token is kept in this tab's session storage only and sent as a
// Bearer header.
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
    const none = document.createElement("span");
    none.className = "muted";
    none.textContent = "—";
    cell.append(none);
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

function setText(cell, text) {
  cell.textContent = text;
}

// Renders into a copy and touches the page only when the result differs,
// so a selection, focus or open disclosure elsewhere in the page survives
// a refresh that changed nothing there.
function update(cell, value, render) {
  if (!cell) return;
  const fresh = cell.cloneNode(false);
  render(fresh, value);
  if (!fresh.isEqualNode(cell)) cell.replaceChildren(...fresh.childNodes);
}

// The same lines as the server's str::lines(), each marked added, removed
// or context, as the server renders a diff.
function diffBlock(text) {
  const pre = document.createElement("pre");
  pre.className = "diff";
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (let line of lines) {
    if (line.endsWith("\r")) line = line.slice(0, -1);
    const span = document.createElement("span");
    span.className = line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "ctx";
    span.textContent = line;
    pre.append(span, "\n");
  }
  return pre;
}

function itemKey(item) {
  return JSON.stringify([item.source, item.kind, item.app, item.id]);
}

// One open item as the server renders it (see items_table in mod.rs).
function itemRow(item, withSource) {
  const row = document.createElement("tr");
  row.dataset.key = itemKey(item);
  const cell = () => row.appendChild(document.createElement("td"));
  if (withSource) {
    const link = document.createElement("a");
    link.href = "/sources/" + encodeURIComponent(item.source);
    link.textContent = item.source;
    cell().append(link);
  }
  const code = document.createElement("code");
  code.textContent = item.app + "/" + item.id;
  cell().append(item.kind + " ", code);
  const note = cell();
  note.className = "note";
  note.textContent = item.note;
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "diff";
  details.append(summary, diffBlock(item.diff));
  cell().append(details);
  return row;
}

// Whether `row` already shows what `fresh` would, whether its diff is open or not.
function showsSame(row, fresh) {
  const shown = row.cloneNode(true);
  for (const details of shown.querySelectorAll("details")) details.removeAttribute("open");
  return shown.isEqualNode(fresh);
}

// Keeps a table of open items (drift or conflicts) current: rows that did
// not change stay the same nodes, in place; new ones are inserted, gone
// ones removed.
function updateItems(part, items) {
  const source = part.dataset.source;
  const mine = source ? items.filter((i) => i.source === source) : items;
  const table = part.querySelector("table");
  const tbody = table.tBodies[0];
  const old = new Map([...tbody.rows].map((r) => [r.dataset.key, r]));
  const rows = mine.map((item) => {
    const fresh = itemRow(item, !source);
    const shown = old.get(fresh.dataset.key);
    return shown && showsSame(shown, fresh) ? shown : fresh;
  });
  let at = tbody.firstElementChild;
  for (const row of rows) {
    if (row === at) at = at.nextElementSibling;
    else tbody.insertBefore(row, at);
  }
  while (at) {
    const next = at.nextElementSibling;
    at.remove();
    at = next;
  }
  table.hidden = rows.length === 0;
  part.querySelector(".empty").hidden = rows.length > 0;
}

function updateSources(table, sources, open) {
  for (const source of sources) {
    const row = [...table.querySelectorAll("tr[data-source]")].find((r) => r.dataset.source === source.name);
    if (!row) continue;
    const cell = (field) => row.querySelector('[data-field="' + field + '"]');
    const count = (list) => list.filter((i) => i.source === source.name).length;
    update(cell("state"), source.state, setState);
    update(cell("applied"), source.lastAppliedRevision, setRevision);
    update(cell("attempted"), source.lastAttemptedRevision, setRevision);
    update(cell("commit"), source, setCommits);
    update(cell("attempt"), source.lastAttemptAt, setTime);
    update(cell("success"), source.lastSuccessAt, setTime);
    update(cell("managed"), String(source.counts.managed), setText);
    if (open) {
      update(cell("drift"), String(count(open.items)), setText);
      update(cell("conflicts"), String(count(open.conflicts)), setText);
    }
    update(cell("message"), source.message, setText);
  }
}

async function getJson(url) {
  try {
    const response = await fetch(url, { headers: { accept: "application/json" } });
    return response.ok ? await response.json() : null;
  } catch (_) {
    return null;
  }
}

// Every element marked data-live is refreshed in place from the JSON API:
// "sources" (the overview's table), "state" and "message" (of the source
// named by data-source), "drift" and "conflicts" (open items, of one source
// when data-source says which).
async function refreshLive() {
  const parts = [...document.querySelectorAll("[data-live]")];
  if (parts.length === 0) return;
  const [status, open] = await Promise.all([getJson("/api/v1/status"), getJson("/api/v1/drift")]);
  const named = (part) => status?.sources.find((s) => s.name === part.dataset.source);
  for (const part of parts) {
    const live = part.dataset.live;
    if (live === "sources" && status) updateSources(part, status.sources, open);
    else if (live === "state" && named(part)) update(part, named(part).state, setState);
    else if (live === "message" && named(part)) update(part, named(part).message, setText);
    else if (live === "drift" && open) updateItems(part, open.items);
    else if (live === "conflicts" && open) updateItems(part, open.conflicts);
  }
}

// A round starts when the last one ended, so a slow answer never piles
// requests up; a hidden tab does not poll.
const LIVE_EVERY_MS = 2000;

function scheduleLive() {
  setTimeout(async () => {
    if (!document.hidden) await refreshLive();
    scheduleLive();
  }, LIVE_EVERY_MS);
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
  // The answer shown is always this press's, never an earlier one's.
  if (output) output.textContent = "";
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  const headers = { "content-type": "application/json" };
  const value = token(true);
  if (value) headers.authorization = "Bearer " + value;
  button.disabled = true;
  try {
    const response = await fetch(button.dataset.post, { method: "POST", headers, body: button.dataset.body || "{}" });
    const body = await response.json().catch(() => ({}));
    if (response.ok && "reload" in button.dataset) return location.reload();
    if (response.status === 401) sessionStorage.removeItem("accord-token");
    if (output) output.textContent = response.ok ? "Done: " + (body.message || body.state || "ok") : "Refused: " + (body.detail || response.status);
    if (response.ok) refreshLive();
  } catch (error) {
    if (output) output.textContent = "Failed: " + error;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  showRelative(document);
  setInterval(() => showRelative(document), 30000);
  if (document.querySelector("[data-live]")) scheduleLive();
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

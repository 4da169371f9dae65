"use strict";
// Every piece of data (titles, ids, labels) goes into the page through textContent, never parsed as HTML.
const $ = (id) => document.getElementById(id);
const picked = [];
let models = [];

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("apikey").value;
  if (key) h["X-API-Key"] = key;
  return h;
}

async function api(path, body) {
  const opts = body === undefined ? { headers: headers() } : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = (data.detail && data.detail[0]) || {};
    const where = Array.isArray(d.loc) ? d.loc.join(".") + ": " : "";
    throw new Error(`${r.status} ${where}${d.msg || r.statusText}`);
  }
  return data;
}

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function label(item) { return item.title || item.id; }

function currentModel() { return models.find((m) => m.name === $("model").value); }

async function loadModels() {
  try {
    models = (await api("/v1/models")).models.filter((m) => m.task === "rank");
  } catch (e) { setStatus(e.message, true); return; }
  $("model").replaceChildren(...models.map((m) => {
    const o = el("option", `${m.name} (${m.model}, ${m.dataset}, ${m.n_items} items)`);
    o.value = m.name;
    return o;
  }));
  await modelChanged();
}

async function modelChanged() {
  const m = currentModel();
  if (!m) return;
  $("version").textContent = m.version;
  $("explain").disabled = !m.explain;
  $("explain").checked = m.explain;
  try {
    const u = await api(`/v1/users?model=${encodeURIComponent(m.name)}&limit=50`);
    $("user-list").replaceChildren(...u.users.map((id) => { const o = el("option"); o.value = id; return o; }));
    if (!$("user").value && u.users.length) $("user").value = u.users[0];
  } catch (e) { setStatus(e.message, true); }
}

let searchTimer = null;
function searchItems() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const m = currentModel();
    const q = $("item-search").value;
    if (!m || !q) return;
    try {
      const r = await api(`/v1/items?model=${encodeURIComponent(m.name)}&q=${encodeURIComponent(q)}&limit=15`);
      $("item-list").replaceChildren(...r.items.map((it) => { const o = el("option"); o.value = label(it); return o; }));
    } catch (e) { setStatus(e.message, true); }
  }, 150);
}

function renderPicked() {
  $("picked").replaceChildren(...picked.map((t, i) => {
    const li = el("li", `${t} ✕`);
    li.title = "remove";
    li.addEventListener("click", () => { picked.splice(i, 1); renderPicked(); });
    return li;
  }));
}

function renderList(target, items, withScore) {
  $(target).replaceChildren(...items.map((it) => {
    const li = el("li");
    li.append(el("span", label(it)));
    if (withScore && it.score !== undefined) li.append(el("span", `${it.id} · ${it.score.toFixed(3)}`, "score"));
    for (const intent of it.intents || []) {
      li.append(el("div", `${intent.kind} intent #${intent.latent} “${intent.label}”: ${intent.contribution >= 0 ? "+" : ""}${intent.contribution.toFixed(3)}`, "intents"));
    }
    return li;
  }));
}

async function recommend() {
  const m = currentModel();
  if (!m) { setStatus("no model loaded", true); return; }
  const body = { model: m.name, k: Number($("k").value) || 10, exclude_seen: $("exclude").checked };
  if (picked.length) body.history = picked.slice(); else body.user_id = $("user").value.trim();
  const path = $("explain").checked && m.explain ? "/v1/explain" : "/v1/recommend";
  setStatus("…");
  try {
    const t0 = performance.now();
    const r = await api(path, body);
    renderList("history", r.history, false);
    renderList("recs", r.items, true);
    setStatus(`${r.items.length} items from ${r.version} in ${(performance.now() - t0).toFixed(0)} ms` + (r.note ? ` (${r.note})` : ""));
  } catch (e) { setStatus(e.message, true); }
}

$("model").addEventListener("change", modelChanged);
$("item-search").addEventListener("input", searchItems);
$("add-item").addEventListener("click", () => {
  const v = $("item-search").value.trim();
  if (v) { picked.push(v); $("item-search").value = ""; renderPicked(); }
});
$("go").addEventListener("click", recommend);
$("apikey").addEventListener("change", loadModels);
loadModels();

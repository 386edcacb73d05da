// The mailroom dashboard's core: the API client (with the token asked once per browser
// session), the event stream (fetch-based SSE with Last-Event-ID resume), the local task store
// kept live from it, the router and the periodic refresh. Views are in views.js.
"use strict";
window.MR = (() => {
  const TOKEN_KEY = "mailroom.token";
  const MAX_DONE = 2000; // finished tasks kept in the store
  const state = {
    tasks: new Map(), // task_id -> {task, place, pool, path}
    pools: null, agents: null, stats: null, quarantine: null, deliveries: null,
    lastSeq: null, live: false, loaded: false, fresh: new Set(),
  };
  const $ = (sel, root = document) => root.querySelector(sel);
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---------------------------------------------------------------- token
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  let asking = null;
  function askToken(message) {
    if (asking) return asking;
    const dlg = $("#token-dialog");
    $("#token-error").textContent = message || "";
    $("#token-input").value = "";
    asking = new Promise((resolve) => {
      const done = (value) => {
        dlg.close();
        asking = null;
        $("#token-form").onsubmit = null;
        $("#token-cancel").onclick = null;
        resolve(value);
      };
      $("#token-form").onsubmit = (e) => {
        e.preventDefault();
        const v = $("#token-input").value.trim();
        if (v) { sessionStorage.setItem(TOKEN_KEY, v); updateTokenButton(); done(v); }
      };
      $("#token-cancel").onclick = () => done(null);
      dlg.showModal();
      $("#token-input").focus();
    });
    return asking;
  }
  function updateTokenButton() {
    const b = $("#token-button");
    b.textContent = token() ? "Token ✓" : "Token";
    b.title = token() ? "A token is set for this session (click to forget it)" : "Set the token changes need";
  }

  // ---------------------------------------------------------------- API
  class Cancelled extends Error {}
  async function api(method, path, body) {
    for (let attempt = 0; attempt < 3; attempt++) {
      const headers = { Accept: "application/json" };
      if (token()) headers.Authorization = `Bearer ${token()}`;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      if (res.status === 401) {
        if (token()) sessionStorage.removeItem(TOKEN_KEY);
        const t = await askToken(attempt > 0 ? "That token was refused." : "");
        if (!t) throw new Cancelled("no token given");
        continue;
      }
      let data = null;
      try { data = await res.json(); } catch (_) { data = null; }
      return { status: res.status, ok: res.ok, data };
    }
    throw new Error("the token was refused three times");
  }
  const get = async (path) => {
    const r = await api("GET", path);
    if (!r.ok) throw new Error((r.data && r.data.reason) || `${path}: HTTP ${r.status}`);
    return r.data;
  };

  // ---------------------------------------------------------------- store
  function put(entry) {
    const id = entry.task.task_id;
    const old = state.tasks.get(id);
    // The newer version wins (a page read may arrive after an event about the same task).
    if (old && (old.task.updated_at || "") > (entry.task.updated_at || "")) return false;
    if (!entry.pool && old) entry.pool = old.pool;
    state.tasks.set(id, entry);
    return true;
  }
  function prune() {
    const done = [...state.tasks.values()].filter((t) => t.place.at === "done");
    if (done.length <= MAX_DONE) return;
    done.sort((a, b) => (a.task.updated_at || "").localeCompare(b.task.updated_at || ""));
    for (const t of done.slice(0, done.length - MAX_DONE)) state.tasks.delete(t.task.task_id);
  }
  const poolOfPlace = (p) => {
    const dir = p.at === "queued" ? p.dir : p.at === "held" ? p.from : null;
    return dir && dir.startsWith("queues/") ? dir.slice(7) : null;
  };
  // A task's column: its status, with PENDING split into backlog (no file) and queued.
  const column = (t) => (t.task.status === "PENDING" && t.place.at === "queued" ? "QUEUED" : t.task.status);

  async function loadTasks() {
    let cursor = null, first = null;
    for (let page = 0; page < 10; page++) {
      const r = await get(`/api/tasks?limit=1000${cursor ? `&cursor=${cursor}` : ""}`);
      if (first === null) first = r.next_seq;
      r.tasks.forEach(put);
      if (!r.next_cursor) break;
      cursor = r.next_cursor;
    }
    state.loaded = true;
    return first;
  }

  // ---------------------------------------------------------------- events
  const listeners = [];
  const onChange = (f) => listeners.push(f);
  let pending = null;
  function changed() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; listeners.forEach((f) => f()); }, 120);
  }
  function setLive(on, text) {
    state.live = on;
    const el = $("#live");
    el.className = "live " + (on ? "on" : "off");
    el.lastElementChild.textContent = text || (on ? "live" : "reconnecting");
  }
  function onRecord(rec) {
    if (state.lastSeq !== null && rec.seq <= state.lastSeq) return; // already seen
    state.lastSeq = rec.seq;
    if (rec.task && rec.place && rec.task_id) {
      if (put({ task: rec.task, place: rec.place, pool: poolOfPlace(rec.place), path: null })) {
        state.fresh.add(rec.task_id);
        setTimeout(() => state.fresh.delete(rec.task_id), 1600);
      }
      if (rec.place.at === "done") prune();
    }
    changed();
  }
  // Server-Sent Events read with fetch, so the token can go in a header beyond loopback.
  async function follow() {
    for (;;) {
      try {
        const headers = { Accept: "text/event-stream" };
        if (token()) headers.Authorization = `Bearer ${token()}`;
        if (state.lastSeq !== null) headers["Last-Event-ID"] = String(state.lastSeq);
        const res = await fetch("/api/events", { headers, cache: "no-store" });
        if (res.status === 401) { await askToken("Reading needs the token on this server."); continue; }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        setLive(true);
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = "", data = [];
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let nl;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl).replace(/\r$/, "");
            buf = buf.slice(nl + 1);
            if (line === "") {
              if (data.length) { try { onRecord(JSON.parse(data.join("\n"))); } catch (e) { console.warn(e); } }
              data = [];
            } else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
        }
      } catch (e) { console.warn("event stream:", e); }
      setLive(false);
      await sleep(2000);
    }
  }

  // ---------------------------------------------------------------- refresh, router, actions
  async function refresh() {
    const jobs = [
      get("/api/pools").then((r) => { state.pools = r; }),
      get("/api/agents").then((r) => { state.agents = r; }),
      get("/api/stats").then((r) => { state.stats = r; }),
      get("/api/quarantine?limit=200").then((r) => { state.quarantine = r; }),
      get("/api/deliveries?limit=200").then((r) => { state.deliveries = r; }),
    ];
    await Promise.allSettled(jobs);
    changed();
  }
  function toast(text, bad = false) {
    const t = document.createElement("div");
    t.className = "toast" + (bad ? " bad" : "");
    t.textContent = text;
    $("#toasts").appendChild(t);
    setTimeout(() => t.remove(), bad ? 7000 : 3500);
  }
  function confirmDialog(title, text) {
    const dlg = $("#confirm-dialog");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    return new Promise((resolve) => {
      $("#confirm-yes").onclick = (e) => { e.preventDefault(); dlg.close(); resolve(true); };
      $("#confirm-no").onclick = () => { dlg.close(); resolve(false); };
      dlg.showModal();
    });
  }
  // Runs a change, says what the broker answered.
  async function act(method, path, body, what) {
    try {
      const r = await api(method, path, body);
      const d = r.data || {};
      if (r.ok) toast(d.count !== undefined ? `${what}: ${d.count} of ${d.matched} redriven` : `${what}: accepted`);
      else toast(`${what}: ${d.reason || d.rule || "HTTP " + r.status}`, true);
      refresh();
      return r;
    } catch (e) {
      if (!(e instanceof Cancelled)) toast(`${what}: ${e.message}`, true);
      return null;
    }
  }

  function route() {
    const h = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
    const [path, query] = h.split("?");
    const params = new URLSearchParams(query || "");
    if (path.startsWith("task/")) return { name: "task", id: path.slice(5), params };
    return { name: ["tasks", "failed", "quarantine", "deliveries"].includes(path) ? path : "overview", params };
  }

  async function start() {
    updateTokenButton();
    $("#token-button").onclick = () => {
      if (token()) { sessionStorage.removeItem(TOKEN_KEY); updateTokenButton(); toast("Token forgotten for this session"); }
      else askToken();
    };
    $("#search-form").onsubmit = (e) => {
      e.preventDefault();
      const q = $("#search").value.trim();
      if (!q) return;
      location.hash = state.tasks.has(q) ? `#/task/${encodeURIComponent(q)}` : `#/tasks?q=${encodeURIComponent(q)}`;
    };
    try {
      const next = await loadTasks();
      state.lastSeq = next - 1;
    } catch (e) { toast(`Loading tasks: ${e.message}`, true); }
    follow();
    refresh();
    setInterval(refresh, 5000);
    changed();
  }

  return { state, $, esc, api, get, act, toast, confirmDialog, onChange, changed, route, column, start, token, askToken };
})();

// The mailroom dashboard's views: overview (board, pools, flow, agents, bottlenecks), tasks with
// filters, failed and dead tasks with retry (single and bulk) and cancel, quarantine with requeue,
// webhook and hook deliveries, and a task's
// page with its trace as a timeline. Each view has a shell (drawn when the route changes) and an
// update (redrawn when data changes), so typing in a filter never loses focus.
"use strict";
(() => {
  const { state, $, esc } = MR;
  const STATUSES = ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "BLOCKED", "CANCELLED"];
  const COLUMNS = [
    ["PENDING", "Backlog"], ["QUEUED", "Queued"], ["IN_PROGRESS", "In progress"],
    ["BLOCKED", "Blocked"], ["FAILED", "Failed"], ["COMPLETED", "Done"],
  ];
  const RANK = { CRITICAL: 0, HIGH: 1, MEDIUM: 2, LOW: 3 };
  const SHORT = { CRITICAL: "CRIT", HIGH: "HIGH", MEDIUM: "MED", LOW: "LOW" };
  const now = () => Date.now();
  const ms = (iso) => (iso ? Date.parse(iso) : NaN);
  function ago(t) {
    if (!isFinite(t)) return "–";
    const s = Math.max(0, Math.round((now() - t) / 1000));
    return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)}m ago` : s < 86400 ? `${Math.floor(s / 3600)}h ago` : `${Math.floor(s / 86400)}d ago`;
  }
  function dur(secs) {
    if (secs === null || secs === undefined || !isFinite(secs)) return "–";
    const s = Math.abs(secs);
    const t = s < 1 ? `${Math.round(s * 1000)}ms` : s < 60 ? `${s.toFixed(s < 10 ? 1 : 0)}s` : s < 3600 ? `${Math.floor(s / 60)}m ${Math.round(s % 60)}s` : `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
    return secs < 0 ? `-${t}` : t;
  }
  const rate = (r) => (r ? (r < 10 ? r.toFixed(1) : Math.round(r)) : "0");
  const pill = (status, label) => `<span class="pill s-${esc(status)}"><i class="dot s-${esc(status)}"></i>${esc(label || status.replace("_", " ").toLowerCase())}</span>`;
  const taskLink = (id) => `<a class="mono" href="#/task/${encodeURIComponent(id)}">${esc(id)}</a>`;
  const agentOf = (t) => (t.place.at === "held" ? t.place.agent : t.task.assigned_to || "");
  const tasks = () => [...state.tasks.values()];
  const canRetry = (s) => ["FAILED", "BLOCKED", "CANCELLED"].includes(s);
  const canCancel = (s) => ["PENDING", "IN_PROGRESS"].includes(s);
  function actions(t) {
    const id = esc(t.task.task_id), s = t.task.status;
    return (canRetry(s) ? `<button class="small" data-action="retry" data-task="${id}">Retry</button>` : "") +
      (canCancel(s) ? `<button class="small danger" data-action="cancel" data-task="${id}">Cancel</button>` : "");
  }

  // ------------------------------------------------------------------ overview
  function card(t) {
    const x = t.task, fresh = state.fresh.has(x.task_id) ? " fresh" : "";
    return `<div class="card s-${MR.column(t)}${fresh}" data-task-id="${esc(x.task_id)}" data-href="#/task/${encodeURIComponent(x.task_id)}">` +
      `<div class="id">${esc(x.task_id)}</div>${x.name ? `<div class="name">${esc(x.name)}</div>` : ""}` +
      `<div class="meta"><span class="prio ${esc(x.priority)}">${esc(SHORT[x.priority] || x.priority)}</span>` +
      `<span>${esc(t.pool || agentOf(t) || "")}</span><span>${ago(ms(x.updated_at))}</span></div></div>`;
  }
  function board() {
    const cols = Object.fromEntries(COLUMNS.map(([k]) => [k, []]));
    for (const t of tasks()) {
      const c = MR.column(t);
      (cols[c === "CANCELLED" ? "COMPLETED" : c] || []).push(t);
    }
    const byAge = (a, b) => (a.task.updated_at || "").localeCompare(b.task.updated_at || "");
    return COLUMNS.map(([k, label]) => {
      const list = cols[k];
      if (k === "QUEUED" || k === "PENDING") list.sort((a, b) => (RANK[a.task.priority] ?? 2) - (RANK[b.task.priority] ?? 2) || byAge(a, b));
      else list.sort((a, b) => byAge(b, a));
      const shown = list.slice(0, 40).map(card).join("");
      const more = list.length > 40 ? `<a class="more" href="#/tasks?status=${k === "QUEUED" ? "PENDING" : k}">+${list.length - 40} more</a>` : "";
      return `<section class="column" data-column="${k}"><h2><i class="dot s-${k}"></i>${label}<span class="n">${list.length}</span></h2>` +
        `<div class="cards">${shown || '<div class="more">empty</div>'}${more}</div></section>`;
    }).join("");
  }
  function kpis() {
    const n = {};
    for (const t of tasks()) n[MR.column(t)] = (n[MR.column(t)] || 0) + 1;
    const ag = state.agents ? state.agents.agents : [];
    const busy = ag.filter((a) => a.state === "busy").length;
    const st = state.stats || {};
    const k = (v, label, alert) => `<div class="kpi${alert ? " alert" : ""}"><b>${v ?? "–"}</b><span>${label}</span></div>`;
    return k(n.PENDING || 0, "backlog") + k(n.QUEUED || 0, "queued") + k(n.IN_PROGRESS || 0, "in progress") +
      k(n.FAILED || 0, "failed", n.FAILED) + k(n.BLOCKED || 0, "blocked", n.BLOCKED) + k(n.COMPLETED || 0, "completed (recent)") +
      k(`${busy}/${ag.length}`, "agents busy") + k(st.inbox_waiting, "inbox backlog", st.inbox_waiting > 100) +
      k(st.quarantined, "quarantined", st.quarantined);
  }
  function poolsTable() {
    const pools = state.pools ? state.pools.pools : [];
    if (!pools.length) return `<div class="empty">No pool yet: tasks go to the pool named after their type.</div>`;
    return `<table><thead><tr><th>pool</th><th class="num">depth</th><th>last hour</th><th class="num">in/min</th><th class="num">out/min</th>` +
      `<th class="num">wait p50</th><th class="num">p95</th><th class="num">oldest</th><th class="num">working</th></tr></thead><tbody>` +
      pools.map((p) => `<tr class="click" data-href="#/tasks?pool=${encodeURIComponent(p.pool)}"><td><b>${esc(p.pool)}</b></td><td class="num">${p.depth}</td>` +
        `<td>${Charts.sparkline(p.depth_series.slice(-120))}</td><td class="num">${rate(p.in_per_min)}</td><td class="num">${rate(p.out_per_min)}</td>` +
        `<td class="num">${dur(p.wait_p50_secs)}</td><td class="num">${dur(p.wait_p95_secs)}</td>` +
        `<td class="num${p.oldest_wait_secs > 300 ? " warn" : ""}">${dur(p.oldest_wait_secs)}</td><td class="num">${p.in_progress}</td></tr>`).join("") +
      `</tbody></table>`;
  }
  function agentsTable() {
    const ag = state.agents ? state.agents.agents : [];
    if (!ag.length) return `<div class="empty">No agent yet (an agent exists once its mailbox does).</div>`;
    const st = { busy: "IN_PROGRESS", idle: "PENDING", stale: "FAILED" };
    return `<table><thead><tr><th>agent</th><th>state</th><th>claims (lease left)</th><th>last seen</th><th class="num">done/min</th><th class="num">failed/min</th></tr></thead><tbody>` +
      ag.map((a) => `<tr><td><a href="#/tasks?agent=${encodeURIComponent(a.agent)}"><b>${esc(a.agent)}</b></a></td><td>${pill(st[a.state] || "PENDING", a.state)}</td><td>` +
        (a.held.map((c) => `${taskLink(c.task_id)} <span class="lease" data-expires="${Math.floor(c.lease_expires_at / 1000)}"></span>`).join("<br>") || '<span class="muted">–</span>') +
        `</td><td class="muted">${a.last_seen ? ago(a.last_seen / 1000) : "–"}</td><td class="num">${rate(a.completions_per_min)}</td><td class="num">${rate(a.failures_per_min)}</td></tr>`).join("") +
      `</tbody></table>`;
  }
  function bottlenecks() {
    const items = [];
    for (const p of state.pools ? state.pools.pools : []) {
      const s = p.depth_series.slice(-12);
      if (s.length >= 6 && p.depth > 0 && s[s.length - 1] > s[0] && s.every((v, i) => i === 0 || v >= s[i - 1] - 1)) {
        items.push(`<li>Pool <b>${esc(p.pool)}</b> keeps growing: ${s[0]} → ${s[s.length - 1]} queued in the last minute (${rate(p.in_per_min)} in, ${rate(p.out_per_min)} out per minute).</li>`);
      } else if (p.oldest_wait_secs > Math.max(60, 3 * (p.wait_p95_secs || 0))) {
        items.push(`<li>Pool <b>${esc(p.pool)}</b>: its oldest task has waited ${dur(p.oldest_wait_secs)} (p95 wait ${dur(p.wait_p95_secs)}).</li>`);
      }
    }
    const lease = state.agents ? state.agents.lease_secs : 300;
    for (const a of state.agents ? state.agents.agents : []) {
      for (const c of a.held) {
        if (c.lease_left_secs < Math.min(60, lease * 0.2)) {
          items.push(`<li><b>${esc(a.agent)}</b> holds ${taskLink(c.task_id)}: lease ${c.lease_left_secs <= 0 ? "ran out" : "ends in " + dur(c.lease_left_secs)}.</li>`);
        }
      }
    }
    for (const s of state.deliveries ? state.deliveries.sinks : []) {
      if (s.failing_since) {
        items.push(`<li><a href="#/deliveries"><b>${esc(s.sink)}</b></a> has been failing since ${ago(ms(s.failing_since))}: ${esc(s.last_error || "")} (deliveries wait, in order).</li>`);
      }
    }
    for (const b of state.stats ? state.stats.blockers : []) {
      items.push(`<li>${taskLink(b.task_id)} ${b.status ? pill(b.status) : '<span class="muted">(unknown)</span>'} holds back <b>${b.holds_back}</b> task${b.holds_back > 1 ? "s" : ""}.</li>`);
    }
    return items.length ? `<ul>${items.join("")}</ul>` : `<div class="empty">No bottleneck: queues drain, leases are healthy, nothing waits on a dependency.</div>`;
  }
  const overview = {
    shell: () => `<div class="grid"><div class="kpis" id="kpis"></div>
      <section class="panel"><header><h2>Board</h2><span class="hint">live from the event stream</span></header><div class="body"><div class="board" id="board"></div></div></section>
      <div class="grid cols-2">
        <div class="grid">
          <section class="panel"><header><h2>Pools</h2><span class="hint">rates over 5 min, waits over 15 min</span></header><div class="body flush" id="pools"></div></section>
          <section class="panel"><header><h2>Cumulative flow</h2><span class="hint">sampled every 5 s</span></header><div class="body" id="cfd"></div></section>
        </div>
        <div class="grid">
          <section class="panel bottlenecks"><header><h2>Bottlenecks</h2></header><div class="body" id="bottlenecks"></div></section>
          <section class="panel"><header><h2>Agents</h2></header><div class="body flush" id="agents"></div></section>
        </div>
      </div></div>`,
    update: () => {
      $("#kpis").innerHTML = kpis();
      $("#board").innerHTML = board();
      $("#pools").innerHTML = poolsTable();
      $("#cfd").innerHTML = Charts.cfd(state.stats ? state.stats.series : []);
      $("#agents").innerHTML = agentsTable();
      $("#bottlenecks").innerHTML = bottlenecks();
      tickLeases();
    },
  };

  // ------------------------------------------------------------------ tasks and failed
  function options(values, selected, all) {
    return `<option value="">${all}</option>` + [...new Set(values)].filter(Boolean).sort().map((v) => `<option${v === selected ? " selected" : ""}>${esc(v)}</option>`).join("");
  }
  function filtered(p, only) {
    const statuses = (p.get("status") || "").split(",").filter(Boolean);
    const q = (p.get("q") || "").toLowerCase();
    return tasks().filter((t) => {
      const x = t.task;
      return (!only || only.includes(x.status)) && (!statuses.length || statuses.includes(x.status)) &&
        (!p.get("pool") || t.pool === p.get("pool")) && (!p.get("type") || x.task_type === p.get("type")) &&
        (!p.get("agent") || agentOf(t) === p.get("agent")) &&
        (!q || x.task_id.toLowerCase().includes(q) || (x.name || "").toLowerCase().includes(q));
    }).sort((a, b) => (b.task.updated_at || "").localeCompare(a.task.updated_at || ""));
  }
  function filterBar(p, statuses) {
    const all = tasks();
    const on = (p.get("status") || "").split(",");
    return `<div class="filters" id="filters">
      <div class="chips">${statuses.map((s) => `<button type="button" class="chip s-${s}${on.includes(s) ? " on" : ""}" data-status="${s}">${s.replace("_", " ").toLowerCase()}</button>`).join("")}</div>
      <select data-filter="type">${options(all.map((t) => t.task.task_type), p.get("type"), "every type")}</select>
      <select data-filter="pool">${options(all.map((t) => t.pool), p.get("pool"), "every pool")}</select>
      <select data-filter="agent">${options(all.map(agentOf), p.get("agent"), "every agent")}</select>
      <input data-filter="q" type="search" placeholder="id or name" value="${esc(p.get("q") || "")}">
      <span id="bulk"></span></div>`;
  }
  function bindFilters(r) {
    const set = (k, v) => {
      const p = new URLSearchParams(current.params);
      if (v) p.set(k, v); else p.delete(k);
      current.params = p;
      const hash = `#/${r.name}${p.toString() ? "?" + p.toString() : ""}`;
      history.replaceState(null, "", hash);
      current.key = location.hash;
      views[r.name].update(current);
    };
    $("#filters").addEventListener("change", (e) => { if (e.target.dataset.filter) set(e.target.dataset.filter, e.target.value); });
    $("#filters").addEventListener("input", (e) => { if (e.target.dataset.filter === "q") set("q", e.target.value); });
    $("#filters").addEventListener("click", (e) => {
      const s = e.target.closest("[data-status]");
      if (!s) return;
      s.classList.toggle("on");
      set("status", [...document.querySelectorAll("#filters .chip.on")].map((c) => c.dataset.status).join(","));
    });
  }
  function taskRows(list, withError) {
    if (!list.length) return `<div class="empty">Nothing matches.</div>`;
    const shown = list.slice(0, 500);
    return `<table><thead><tr><th>task</th><th>name</th><th>status</th><th>priority</th><th>type</th><th>pool</th><th>agent</th><th class="num">attempts</th>` +
      `${withError ? "<th>error</th>" : ""}<th>updated</th><th></th></tr></thead><tbody>` +
      shown.map((t) => { const x = t.task; return `<tr data-task-id="${esc(x.task_id)}"><td>${taskLink(x.task_id)}</td><td class="clip">${esc(x.name)}</td><td>${pill(MR.column(t) === "QUEUED" ? "QUEUED" : x.status, MR.column(t) === "QUEUED" ? "queued" : null)}</td>` +
        `<td><span class="prio ${esc(x.priority)}">${esc(x.priority)}</span></td><td>${esc(x.task_type)}</td><td>${esc(t.pool)}</td><td>${esc(agentOf(t))}</td>` +
        `<td class="num">${x.attempts ?? 0}/${x.max_attempts ?? "–"}</td>${withError ? `<td class="clip bad" title="${esc(x.error)}">${esc(x.error)}</td>` : ""}` +
        `<td class="muted">${ago(ms(x.updated_at))}</td><td class="actions">${actions(t)}</td></tr>`; }).join("") +
      `</tbody></table>${list.length > shown.length ? `<div class="pager">showing ${shown.length} of ${list.length}: narrow the filters</div>` : ""}`;
  }
  const tasksView = {
    shell: (r) => `<section class="panel"><header><h2>Tasks</h2><span class="hint" id="n"></span></header>${filterBar(r.params, STATUSES)}<div class="body flush" id="rows"></div></section>`,
    bind: bindFilters,
    update: (r) => {
      const list = filtered(r.params);
      $("#n").textContent = `${list.length} of ${state.tasks.size} held by the broker (live, and the recently finished)`;
      $("#rows").innerHTML = taskRows(list, false);
    },
  };
  const DEAD = ["FAILED", "BLOCKED", "CANCELLED"];
  const failedView = {
    shell: (r) => `<section class="panel"><header><h2>Failed, blocked and cancelled</h2><span class="hint" id="n"></span></header>${filterBar(r.params, DEAD)}<div class="body flush" id="rows"></div></section>`,
    bind: bindFilters,
    update: (r) => {
      const list = filtered(r.params, DEAD);
      $("#n").textContent = `${list.length} task${list.length === 1 ? "" : "s"}`;
      const statuses = (r.params.get("status") || "FAILED").split(",").filter((s) => DEAD.includes(s));
      const scope = [statuses.join(", ").toLowerCase(), r.params.get("pool") && `pool ${r.params.get("pool")}`, r.params.get("type") && `type ${r.params.get("type")}`].filter(Boolean).join(", ");
      const n = list.filter((t) => statuses.includes(t.task.status)).length;
      $("#bulk").innerHTML = `<button type="button" data-action="bulk-retry" data-scope="${esc(scope)}" ${n ? "" : "disabled"}>Retry all ${n} (${esc(scope)})</button>`;
      $("#rows").innerHTML = taskRows(list, true);
    },
  };

  // ------------------------------------------------------------------ quarantine
  const quarantineView = {
    shell: () => `<div class="grid cols-2"><section class="panel"><header><h2>Quarantine</h2><span class="hint" id="n"></span></header><div class="body flush" id="rows"></div></section>
      <section class="panel side"><header><h2>Entry</h2></header><div class="body" id="entry"><div class="empty">Pick an entry to see its reason and content.</div></div></section></div>`,
    update: () => {
      const q = state.quarantine;
      if (!q) { $("#rows").innerHTML = `<div class="empty">Loading…</div>`; return; }
      $("#n").textContent = `${q.total} entr${q.total === 1 ? "y" : "ies"}: refused input, never deleted`;
      $("#rows").innerHTML = q.entries.length ? `<table><thead><tr><th>entry</th><th>when</th><th>field</th><th>reason</th><th>task</th><th></th></tr></thead><tbody>` +
        q.entries.map((e) => `<tr class="click" data-entry="${esc(e.name)}"><td class="clip mono">${esc(e.name)}</td><td class="muted">${ago(ms(e.quarantined_at))}</td>` +
          `<td class="mono">${esc(e.field)}</td><td class="clip" title="${esc(e.reason)}">${esc(e.reason)}</td><td>${e.task_id ? taskLink(e.task_id) : ""}</td>` +
          `<td class="actions"><button class="small" data-action="requeue" data-entry="${esc(e.name)}">Requeue</button></td></tr>`).join("") +
        `</tbody></table>` : `<div class="empty">Nothing quarantined.</div>`;
    },
  };
  async function showEntry(name) {
    const box = $("#entry");
    if (!box) return;
    try {
      const e = await MR.get(`/api/quarantine/${encodeURIComponent(name)}`);
      box.innerHTML = `<h2 class="mono">${esc(e.name)}</h2><dl class="fields">` +
        [["reason", e.reason], ["field", e.field], ["rule", e.rule], ["from", e.file], ["kind", e.kind], ["when", e.quarantined_at], ["size", e.size]]
          .filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => `<dt>${k}</dt><dd>${esc(v)}</dd>`).join("") +
        `</dl><div class="path"><code>${esc(e.path)}</code></div><h3>Content</h3><pre class="json">${esc(e.content)}</pre>`;
    } catch (err) { box.innerHTML = `<div class="empty bad">${esc(err.message)}</div>`; }
  }


  // ------------------------------------------------------------------ deliveries
  function sinkRow(s) {
    const failing = !!s.failing_since;
    const health = failing ? pill("FAILED", `failing ${ago(ms(s.failing_since))}`) : s.delivered ? pill("COMPLETED", "ok") : pill("PENDING", "waiting");
    return `<tr data-sink="${esc(s.sink)}"><td><b class="mono">${esc(s.sink)}</b><div class="muted clip" title="${esc(s.target)}">${esc(s.target)}</div></td><td>${health}</td>` +
      `<td class="clip">${esc((s.events || []).join(", ") || "every event")}${s.pools && s.pools.length ? `<div class="muted">pools ${esc(s.pools.join(", "))}</div>` : ""}</td>` +
      `<td class="num">${s.delivered}</td><td class="num${s.failures ? " warn" : ""}">${s.failures}</td><td class="num${s.given_up ? " bad" : ""}">${s.given_up}</td>` +
      `<td class="num mono">#${s.through}<div class="muted">journaled #${s.journaled}</div></td>` +
      `<td class="clip bad" title="${esc(s.last_error)}">${esc(s.last_error || "")}${s.next_retry_at ? `<div class="muted">next try ${esc(s.next_retry_at.slice(11, 19))}</div>` : ""}</td></tr>`;
  }
  function attemptRow(a) {
    return `<tr class="${a.ok ? "" : "failed-attempt"}"><td class="muted">${ago(ms(a.at))}</td><td class="mono">${esc(a.sink)}</td><td class="mono">#${a.seq}</td>` +
      `<td>${esc(a.event)}</td><td>${a.task_id ? taskLink(a.task_id) : ""}</td><td class="num">${a.attempt}</td>` +
      `<td>${a.ok ? pill("COMPLETED", a.detail) : `<span class="bad">${esc(a.detail)}</span>`}</td><td class="num">${a.duration_ms} ms</td></tr>`;
  }
  const deliveriesView = {
    shell: () => `<div class="grid"><section class="panel"><header><h2>Webhooks and hooks</h2><span class="hint" id="n"></span></header><div class="body flush" id="sinks"></div></section>
      <section class="panel"><header><h2>Recent attempts</h2><span class="hint">newest first; a failed delivery is retried with backoff, in order, never skipped</span></header><div class="body flush" id="attempts"></div></section></div>`,
    update: () => {
      const d = state.deliveries;
      if (!d) { $("#sinks").innerHTML = `<div class="empty">Loading…</div>`; return; }
      $("#n").textContent = `${d.sinks.length} configured · ${d.delivered} delivered, ${d.failures} failed attempts, ${d.given_up} given up since the broker started`;
      $("#sinks").innerHTML = d.sinks.length ? `<table><thead><tr><th>sink</th><th>health</th><th>events</th><th class="num">delivered</th><th class="num">failed</th><th class="num">given up</th><th class="num">position</th><th>last error</th></tr></thead><tbody>` +
        d.sinks.map(sinkRow).join("") + `</tbody></table>` : `<div class="empty">No webhook or hook is configured (<code>[[webhooks]]</code> and <code>[[hooks]]</code> in mailroom.toml).</div>`;
      $("#attempts").innerHTML = d.recent.length ? `<table><thead><tr><th>when</th><th>sink</th><th>record</th><th>event</th><th>task</th><th class="num">try</th><th>result</th><th class="num">took</th></tr></thead><tbody>` +
        d.recent.map(attemptRow).join("") + `</tbody></table>` : `<div class="empty">No delivery attempted since the broker started.</div>`;
    },
  };

  // ------------------------------------------------------------------ a task
  let detail = null;
  async function loadTask(id) {
    try { detail = await MR.get(`/api/tasks/${encodeURIComponent(id)}`); } catch (e) { detail = { error: e.message, task_id: id }; }
    if (current && current.name === "task" && current.id === id) taskView.update(current);
  }
  const taskView = {
    shell: (r) => { detail = null; loadTask(r.id); return `<div id="task"><div class="empty">Loading ${esc(r.id)}…</div></div>`; },
    update: (r) => {
      const live = state.tasks.get(r.id);
      if (detail && live && detail.current && detail.current.task.updated_at !== live.task.updated_at && !detail.loading) {
        detail.loading = true;
        loadTask(r.id);
      }
      if (!detail) return;
      if (detail.error) { $("#task").innerHTML = `<div class="panel"><div class="empty bad">${esc(detail.error)}</div></div>`; return; }
      const cur = detail.current, x = cur ? cur.task : null, tr = detail.trace;
      const status = x ? x.status : tr && tr.status;
      const path = cur && cur.path ? cur.path : null;
      const fields = x ? [["type", x.task_type], ["priority", x.priority], ["pool", cur.pool], ["agent", agentOf(cur)], ["attempts", `${x.attempts ?? 0} of ${x.max_attempts ?? "–"}`],
        ["created", x.created_at], ["updated", x.updated_at], ["not before", x.not_before], ["depends on", (x.depends_on || []).join(", ")], ["tags", (x.tags || []).join(", ")], ["created by", x.created_by]]
        .filter(([, v]) => v) : [];
      const steps = tr ? tr.steps.slice().reverse() : [];
      $("#task").innerHTML = `<div class="grid cols-2"><section class="panel"><div class="body">
        <div class="task-head"><div class="grow"><h1 class="mono">${esc(detail.task_id)}</h1><div class="muted">${esc(x && x.name)}</div></div>
          ${status ? pill(cur && MR.column(cur) === "QUEUED" ? "QUEUED" : status, cur && MR.column(cur) === "QUEUED" ? "queued" : null) : ""}
          <span>${cur ? actions(cur) : ""}</span></div>
        <div class="path" title="Where the task's file is now"><span class="muted">file</span><code id="task-path">${esc(path || (tr ? tr.now : "no file"))}</code>
          ${path ? `<button class="small ghost" data-action="copy" data-text="${esc(path)}">Copy</button>` : ""}</div>
        ${x && x.error ? `<h3>Error</h3><div class="bad">${esc(x.error)}</div>` : ""}
        <h3>Fields</h3><dl class="fields">${fields.map(([k, v]) => `<dt>${k}</dt><dd>${esc(v)}</dd>`).join("") || "<dd class=muted>the broker no longer holds this task; its trace remains</dd>"}</dl>
        ${x && x.params !== undefined ? `<h3>Params</h3><pre class="json">${esc(JSON.stringify(x.params, null, 2))}</pre>` : ""}
        ${x && x.result !== undefined ? `<h3>Result</h3><pre class="json">${esc(JSON.stringify(x.result, null, 2))}</pre>` : ""}
        </div></section>
        <section class="panel"><header><h2>Trace</h2><span class="hint">${steps.length} journaled step${steps.length === 1 ? "" : "s"}, newest first</span></header><div class="body">
        <ol class="timeline" id="timeline">${steps.map((s) => `<li class="s-${esc(s.to || "PENDING")}"><div><span class="op">${esc(s.op)}</span> ${s.from && s.to && s.from !== s.to ? `${esc(s.from)} → ${esc(s.to)}` : esc(s.to || "")}` +
          ` ${s.actor ? `<span class="muted">by ${esc(s.actor)}</span>` : ""}</div><div class="when">#${s.seq} · ${esc(s.time)} · ${ago(ms(s.time))}</div>` +
          `${s.paths.length ? `<div class="paths">${s.paths.map(esc).join("<br>")}</div>` : ""}${s.reason ? `<div class="reason">${esc(s.reason)}</div>` : ""}</li>`).join("")}</ol>
        </div></section></div>`;
    },
  };

  // ------------------------------------------------------------------ wiring
  const views = { overview, tasks: tasksView, failed: failedView, quarantine: quarantineView, deliveries: deliveriesView, task: taskView };
  let current = null;
  function render(force) {
    const r = MR.route();
    if (force || !current || current.key !== location.hash) {
      current = { ...r, key: location.hash };
      $("#view").innerHTML = views[r.name].shell(r);
      if (views[r.name].bind) views[r.name].bind(r);
      document.querySelectorAll(".tabs a").forEach((a) => a.classList.toggle("on", a.dataset.tab === r.name));
    }
    views[current.name].update(current);
    const dead = tasks().filter((t) => t.task.status === "FAILED").length;
    $("#failed-count").textContent = dead || "";
    $("#quarantine-count").textContent = state.quarantine && state.quarantine.total ? state.quarantine.total : "";
    $("#deliveries-count").textContent = state.deliveries && state.deliveries.failing.length ? state.deliveries.failing.length : "";
    document.title = `mailroom${dead ? ` · ${dead} failed` : ""}`;
  }
  function tickLeases() {
    const t = now();
    document.querySelectorAll(".lease[data-expires]").forEach((el) => {
      const left = (Number(el.dataset.expires) - t) / 1000;
      el.textContent = left > 0 ? dur(left) : "expired";
      el.className = "lease " + (left <= 0 ? "bad" : left < 60 ? "warn" : "muted");
    });
  }
  document.addEventListener("click", async (e) => {
    const b = e.target.closest("[data-action]");
    if (b) {
      e.stopPropagation();
      const id = b.dataset.task;
      if (b.dataset.action === "retry") await MR.act("POST", `/api/tasks/${encodeURIComponent(id)}/retry`, undefined, `Retry ${id}`);
      else if (b.dataset.action === "cancel") {
        if (await MR.confirmDialog(`Cancel ${id}?`, "A queued file is removed; a held claim is revoked and its agent told.")) await MR.act("POST", `/api/tasks/${encodeURIComponent(id)}/cancel`, undefined, `Cancel ${id}`);
      } else if (b.dataset.action === "bulk-retry") {
        const p = current.params;
        const status = (p.get("status") || "FAILED").split(",").filter((s) => DEAD.includes(s));
        const body = { status, pool: p.get("pool") || undefined, type: p.get("type") || undefined };
        if (await MR.confirmDialog("Retry in bulk?", `Every task that is ${b.dataset.scope} goes back to PENDING and is dispatched again.`)) await MR.act("POST", "/api/retry", body, "Bulk retry");
      } else if (b.dataset.action === "requeue") {
        const n = b.dataset.entry;
        if (await MR.confirmDialog(`Requeue ${n}?`, "It goes back into the broker's inbox and through admission again, as if it had just arrived; its reason is kept under quarantine/requeued/.")) {
          await MR.act("POST", `/api/quarantine/${encodeURIComponent(n)}/requeue`, undefined, `Requeue ${n}`);
          const box = $("#entry");
          if (box) box.innerHTML = `<div class="empty">Requeued. Pick an entry to see its reason and content.</div>`;
        }
      } else if (b.dataset.action === "copy") {
        try { await navigator.clipboard.writeText(b.dataset.text); MR.toast("Path copied"); } catch (_) { MR.toast("Copy refused by the browser", true); }
      }
      return;
    }
    const entry = e.target.closest("[data-entry]");
    if (entry && !e.target.closest("a")) { showEntry(entry.dataset.entry); return; }
    const go = e.target.closest("[data-href]");
    if (go && !e.target.closest("a")) location.hash = go.dataset.href;
  });
  window.addEventListener("hashchange", () => render(true));
  MR.onChange(() => render(false));
  setInterval(tickLeases, 1000);
  MR.start();
})();

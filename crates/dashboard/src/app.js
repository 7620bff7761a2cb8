// chief-dashboard's page: state from `snapshot` and `update` events (/events), a chart
// of per-second rates sampled from the totals, a banner while the stream is down.
// EventSource reconnects by itself and sends Last-Event-ID: the server replays exactly
// the events missed.
"use strict";

const state = {
  totals: { orders: 0, jobresults: 0, revenue_cents: 0, duplicates: 0, bad: 0, statuses: {} },
  latest: [],
  shards: new Map(),
  lastId: null,
  badRecord: null,
  // For tests and operators: connections opened, updates received, updates whose id did
  // not follow the last one (a missed event); with `chief.track` set, when each order was
  // first shown (orderid → ms since the epoch; the latency benchmark reads it).
  connects: 0,
  updates: 0,
  gaps: 0,
};
window.chief = { state, track: false, seen: {} };
const LATEST = 20;
const WINDOW = 120;
const samples = []; // { t, orders, jobresults }

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US");
const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

function shardKey(s) { return s.source + "/" + s.shard_id; }

function render() {
  const t = state.totals;
  $("orders").textContent = fmt.format(t.orders);
  $("jobresults").textContent = fmt.format(t.jobresults);
  $("revenue").textContent = money.format(t.revenue_cents / 100);
  $("duplicates").textContent = fmt.format(t.duplicates);
  $("bad").textContent = fmt.format(t.bad);
  $("event-id").textContent = state.lastId === null ? "–" : String(state.lastId);
  const b = document.body.dataset;
  b.connects = String(state.connects);
  b.updates = String(state.updates);
  b.gaps = String(state.gaps);
  b.lastId = state.lastId === null ? "" : String(state.lastId);
  // The counters as numbers, for tests and scrapers.
  for (const k of ["orders", "jobresults", "duplicates", "bad"]) $(k).dataset.value = String(t[k]);
  $("revenue").dataset.value = String(t.revenue_cents);

  const statuses = $("statuses").tBodies[0];
  const total = Object.values(t.statuses).reduce((a, b) => a + b, 0) || 1;
  statuses.replaceChildren(...Object.entries(t.statuses).sort().map(([name, n]) => {
    const tr = document.createElement("tr");
    tr.dataset.status = name;
    tr.innerHTML = `<td>${escapeHtml(name)}</td><td class="num" data-value="${n}">${fmt.format(n)}</td>` +
      `<td style="width:45%"><div class="bar" style="width:${(100 * n / total).toFixed(1)}%"></div></td>`;
    return tr;
  }));
  $("last-bad").textContent = state.badRecord
    ? `last bad record (${state.badRecord.source} ${state.badRecord.shard_id}): ${state.badRecord.error}`
    : "";

  const latest = $("latest").tBodies[0];
  latest.replaceChildren(...state.latest.slice().reverse().map((o) => {
    const tr = document.createElement("tr");
    tr.dataset.orderid = o.orderid;
    tr.innerHTML = `<td title="${escapeHtml(o.orderid)}">${escapeHtml(o.orderid)}</td><td>${escapeHtml(o.factoryid)}</td>` +
      `<td>${escapeHtml(o.userid)}</td><td class="num">${money.format(o.total_cents / 100)}</td>` +
      `<td>${escapeHtml(o.timestamp.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z"))}</td>`;
    return tr;
  }));

  const shards = $("shards").tBodies[0];
  const list = [...state.shards.values()].sort((a, b) => shardKey(a).localeCompare(shardKey(b)));
  shards.replaceChildren(...list.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.shard = shardKey(s);
    const lag = s.millis_behind_latest === null ? "–" : fmt.format(s.millis_behind_latest) + " ms";
    tr.innerHTML = `<td>${s.source}</td><td>${escapeHtml(s.shard_id)}</td><td class="num">${lag}</td>` +
      `<td>${s.owner ? escapeHtml(s.owner) : "<em>none</em>"}</td>`;
    return tr;
  }));
  $("shard-count").textContent = String(list.filter((s) => s.owner).length);
  const lags = list.map((s) => s.millis_behind_latest).filter((v) => v !== null);
  $("max-lag").textContent = lags.length ? fmt.format(Math.max(...lags)) + " ms" : "–";
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function applySnapshot(s) {
  state.totals = s.totals;
  state.latest = s.latest.slice(-LATEST);
  state.shards = new Map(s.shards.map((x) => [shardKey(x), x]));
  state.badRecord = s.bad_record;
  state.lastId = s.id;
  $("worker").textContent = s.worker_id;
  render();
}

function applyUpdate(u) {
  if (state.lastId !== null && u.id !== state.lastId + 1) state.gaps += 1;
  state.updates += 1;
  state.totals = u.totals;
  const now = Date.now();
  for (const o of u.new_orders) {
    state.latest.push(o);
    if (window.chief.track && !(o.orderid in window.chief.seen)) window.chief.seen[o.orderid] = now;
  }
  if (state.latest.length > LATEST) state.latest.splice(0, state.latest.length - LATEST);
  for (const s of u.shards) state.shards.set(shardKey(s), s);
  if (u.bad_record) state.badRecord = u.bad_record;
  state.lastId = u.id;
  render();
}

// Per-second rates: the totals sampled every second.
function sample() {
  const now = Date.now();
  samples.push({ t: now, orders: state.totals.orders, jobresults: state.totals.jobresults });
  while (samples.length > WINDOW + 1) samples.shift();
  const rate = (k) => {
    if (samples.length < 2) return 0;
    const a = samples[samples.length - 2], b = samples[samples.length - 1];
    return Math.max(0, (b[k] - a[k]) * 1000 / Math.max(1, b.t - a.t));
  };
  $("orders-rate").textContent = fmt.format(Math.round(rate("orders")));
  $("jobresults-rate").textContent = fmt.format(Math.round(rate("jobresults")));
  drawChart();
}

function drawChart() {
  const svg = $("chart");
  const W = 600, H = 220, pad = 24;
  const series = (k) => {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      out.push(Math.max(0, (b[k] - a[k]) * 1000 / Math.max(1, b.t - a.t)));
    }
    return out;
  };
  const o = series("orders"), j = series("jobresults");
  const max = Math.max(1, ...o, ...j);
  const x = (i) => pad + (W - 2 * pad) * (i + WINDOW - o.length) / (WINDOW - 1);
  const y = (v) => H - pad - (H - 2 * pad) * v / max;
  const line = (vals) => vals.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  svg.innerHTML =
    `<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#39444f"/>` +
    `<text x="${pad}" y="14" fill="#8b96a3" font-size="11">${fmt.format(Math.round(max))}/s</text>` +
    `<polyline fill="none" stroke="#4fb3ff" stroke-width="3" points="${line(o)}"/>` +
    `<polyline fill="none" stroke="#ffb454" stroke-width="2" stroke-dasharray="6 4" points="${line(j)}"/>`;
}

function connect() {
  const source = new EventSource("/events");
  // A stream the server ends (sse_max_age_s, a restart) is resumed within a second; the
  // banner says the connection is lost only when it is not back within 2 s.
  let lost = null;
  source.addEventListener("open", () => {
    state.connects += 1;
    document.body.dataset.connects = String(state.connects);
    clearTimeout(lost);
    lost = null;
    $("banner").classList.remove("shown");
    $("conn").textContent = "live";
  });
  source.addEventListener("error", () => {
    $("conn").textContent = "reconnecting…";
    if (lost === null) lost = setTimeout(() => $("banner").classList.add("shown"), 2000);
  });
  source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  source.addEventListener("update", (e) => applyUpdate(JSON.parse(e.data)));
  // Fell behind the server's queue: start again from a snapshot.
  source.addEventListener("reload", () => { source.close(); location.reload(); });
}

render();
connect();
setInterval(sample, 1000);

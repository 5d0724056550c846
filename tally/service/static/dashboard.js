// Tally's dashboard: the service's read views, refreshed live from the subscription.
// No framework and no CDN: this file is all the JavaScript, served by Tally itself.
// The read token lives in this tab only (sessionStorage) and travels in the Authorization
// header, never in a URL (a fetch-streamed subscription instead of EventSource for that).
"use strict";

const KEY = "tally.token";
const $ = (selector) => document.querySelector(selector);
let chosenRun = null;
let refreshTimer = null;
let following = null;

function token() { return sessionStorage.getItem(KEY); }

async function api(path, accept = "application/json") {
  const answer = await fetch(path, {
    headers: { Authorization: `Bearer ${token()}`, Accept: accept },
  });
  if (answer.status === 401) { logout("the token was refused"); throw new Error("401"); }
  if (answer.status === 404) return null;
  if (!answer.ok) {
    const problem = await answer.json().catch(() => ({}));
    throw new Error(problem.detail || `${answer.status} on ${path}`);
  }
  return answer.json();
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function fill(selector, rows) {
  const body = $(`${selector} tbody`);
  body.replaceChildren(...rows);
}

function row(cells, className) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  if (className) tr.className = className;
  return tr;
}

function short(value, size = 16) { return value ? String(value).slice(0, size) : ""; }

async function showHealth() {
  const health = await api("/v1/health");
  const pill = $("#health");
  pill.textContent = health.status;
  pill.className = `pill ${health.status}`;
  fill("#checks", health.checks.map((c) =>
    row([cell(c.name), cell(c.status, c.status), cell(c.summary)])));
  const ledger = health.checks.find((c) => c.name === "ledger");
  return ledger && ledger.value !== null ? ledger.value : 0;
}

async function showRuns() {
  const { runs } = await api("/v1/runs");
  if (!chosenRun && runs.length) chosenRun = runs[runs.length - 1].run_id;
  fill("#runs", runs.map((r) => {
    const progress = document.createElement("progress");
    progress.max = r.cycles_planned || 1;
    progress.value = r.cycles_done || 0;
    const done = cell(`${r.cycles_done ?? 0}/${r.cycles_planned ?? "?"} `, "num");
    done.prepend(progress);
    const tr = row([cell(r.run_id), cell(r.mode), cell(r.account), cell(r.state, r.state), done,
      cell(short(r.fingerprint))], r.run_id === chosenRun ? "chosen" : "");
    tr.addEventListener("click", () => { chosenRun = r.run_id; refresh(); });
    return tr;
  }));
  return runs.find((r) => r.run_id === chosenRun) || null;
}

async function showEquity(run) {
  const chart = $("#equity-chart");
  if (!run) {
    $("#equity-summary").textContent = "no run in this ledger yet";
    chart.replaceChildren();
    return;
  }
  $("#equity-run").textContent = `${run.run_id} · account ${run.account}`;
  const series = await api(
    `/v1/accounts/${encodeURIComponent(run.account)}/equity?run=${encodeURIComponent(run.run_id)}`);
  if (!series || !series.rows.length) {
    $("#equity-summary").textContent = "no equity yet";
    chart.replaceChildren();
    return;
  }
  const values = series.rows.map((r) => Number(r.equity));
  const first = series.rows[0];
  const last = series.rows[series.rows.length - 1];
  let peak = -Infinity;
  let worst = 0;
  for (const v of values) { peak = Math.max(peak, v); worst = Math.max(worst, (peak - v) / peak); }
  const summary = $("#equity-summary");
  summary.replaceChildren();
  const parts = [
    ["start", `${first.equity} ${series.quote}`],
    ["end", `${last.equity} ${series.quote}`],
    ["max drawdown", `${(100 * worst).toFixed(2)}%`],
    ["fees", `${last.fees} ${series.quote}`],
    ["steps", String(series.rows.length)],
  ];
  for (const [name, value] of parts) {
    const span = document.createElement("span");
    span.id = `equity-${name.replace(" ", "-")}`;
    span.textContent = `${name} ${value}`;
    summary.append(span, document.createTextNode("  ·  "));
  }
  summary.lastChild.remove();
  chart.replaceChildren(plot(series.rows.map((r) => r.timestamp), values));
}

function plot(times, values) {
  const W = 960, H = 260, PAD = 56;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", "100%");
  const low = Math.min(...values), high = Math.max(...values);
  const span = high - low || 1;
  const x = (i) => PAD + (i * (W - 2 * PAD)) / Math.max(values.length - 1, 1);
  const y = (v) => H - PAD / 2 - ((v - low) * (H - PAD)) / span;
  const el = (name, attrs, text) => {
    const node = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  let peak = -Infinity;
  const under = values.map((v, i) => { peak = Math.max(peak, v); return `${x(i)},${y(peak)}`; });
  const back = values.map((v, i) => `${x(i)},${y(v)}`).reverse();
  el("polygon", { class: "drawdown", points: [...under, ...back].join(" ") });
  el("line", { class: "axis", x1: PAD, y1: y(low), x2: W - PAD, y2: y(low) });
  el("polyline", { class: "curve", points: values.map((v, i) => `${x(i)},${y(v)}`).join(" ") });
  el("text", { x: 4, y: y(high) + 4 }, String(high));
  el("text", { x: 4, y: y(low) + 4 }, String(low));
  el("text", { x: PAD, y: H - 4 }, times[0]);
  el("text", { x: W - PAD, y: H - 4, "text-anchor": "end" }, times[times.length - 1]);
  return svg;
}

async function showMarket() {
  const [{ breakers }, errors, alerts] = await Promise.all(
    [api("/v1/breakers"), api("/v1/errors"), api("/v1/alerts")]);
  fill("#breakers", Object.entries(breakers).map(([name, b]) => row([
    cell(name), cell(b.state, b.state), cell(b.calls, "num"),
    cell(b.success_pct === null ? "" : `${b.success_pct}%`, "num"), cell(b.failures, "num"),
    cell(b.rejected, "num")])));
  $("#error-total").textContent = `${errors.total} in all`;
  const rates = errors.rate_per_minute_by_class;
  fill("#error-rates", Object.entries(errors.by_class).map(([name, total]) => {
    const r = rates[name] || { "1m": 0, "5m": 0, "1h": 0 };
    return row([cell(name), cell(total, "num"), cell(r["1m"], "num"), cell(r["5m"], "num"),
      cell(r["1h"], "num")]);
  }));
  fill("#recent-errors", errors.last.slice().reverse().slice(0, 12).map((e) =>
    row([cell(e.position, "num"), cell(e.class), cell(e.symbol), cell(e.message, "message")])));
  const list = $("#alerts");
  list.replaceChildren(...(alerts.firing.length ? alerts.firing : [null]).map((a) => {
    const li = document.createElement("li");
    li.textContent = a ? `${a.severity}: ${a.rule} ${a.key} — ${a.message} (since ${a.since})`
      : "none firing";
    if (a) li.className = a.severity === "critical" ? "CRITICAL" : "WARNING";
    return li;
  }));
}

async function refresh() {
  try {
    const head = await showHealth();
    const run = await showRuns();
    await Promise.all([showEquity(run), showMarket()]);
    if (!following) follow(head + 1);
  } catch (error) {
    if (error.message !== "401") $("#live").textContent = `error: ${error.message}`;
  }
}

function soon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 1000);
}

async function follow(from) {
  // Server-Sent Events read through fetch, so the token goes in a header.
  following = new AbortController();
  const live = $("#live");
  let next = from;
  while (following && !following.signal.aborted) {
    try {
      const answer = await fetch(`/v1/subscribe?from_position=${next}`, {
        headers: { Authorization: `Bearer ${token()}` }, signal: following.signal,
      });
      if (!answer.ok) throw new Error(`subscription answered ${answer.status}`);
      live.textContent = "live";
      const reader = answer.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const id = block.split("\n").find((line) => line.startsWith("id: "));
          if (id) { next = Number(id.slice(4)) + 1; live.textContent = `live · position ${next - 1}`; soon(); }
        }
      }
    } catch (error) {
      if (following && following.signal.aborted) return;
      live.textContent = "reconnecting…";
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function logout(why) {
  sessionStorage.removeItem(KEY);
  if (following) { following.abort(); following = null; }
  $("#board").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = why || "";
  $("#live").textContent = "not connected";
}

function open() {
  $("#login").hidden = true;
  $("#board").hidden = false;
  $("#logout").hidden = false;
  refresh();
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#token").value.trim());
  $("#token").value = "";
  open();
});
$("#logout").addEventListener("click", () => logout(""));

// A token handed over in the fragment (never sent to the server) is taken and wiped.
if (location.hash.startsWith("#token=")) {
  sessionStorage.setItem(KEY, decodeURIComponent(location.hash.slice(7)));
  history.replaceState(null, "", location.pathname);
}
if (token()) open(); else logout("");

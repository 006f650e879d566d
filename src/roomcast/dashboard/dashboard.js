// The performance dashboard: the platform's live figures, alerts and security
// events, followed through the WebSocket bridge with roomcast.js.
//
// It joins performance.dashboard (metrics.snapshot every metrics_interval),
// platform.health (platform.alert) and platform.security (security.*); the
// sparklines start from performance.dashboard's history, so they show the
// last ten minutes at once. No third-party code: the charts are plain SVG.

import { Roomcast } from "/performance-dashboard/roomcast.js";

const WINDOW_SECONDS = 600; // the sparklines' span
const MAX_SECURITY = 20; // security events listed
const ROOMS = ["performance.dashboard", "platform.health", "platform.security"];

const $ = (id) => document.getElementById(id);
const samples = []; // metrics.snapshot payloads, oldest first, within the window
const alerts = new Map(); // alert id -> the latest platform.alert payload
let client = null;

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function show(section) {
  for (const id of ["login", "denied", "board"]) $(id).hidden = id !== section;
}

function number(value, digits = 0) {
  return Number(value ?? 0).toLocaleString(undefined, { maximumFractionDigits: digits });
}

function sparkline(svg, values, ceiling) {
  const top = Math.max(ceiling ?? 0, ...values, 1);
  const step = values.length > 1 ? 300 / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(60 - (v / top) * 56 - 2).toFixed(1)}`);
  svg.replaceChildren();
  const base = document.createElementNS("http://www.w3.org/2000/svg", "line");
  base.setAttribute("x1", "0"); base.setAttribute("x2", "300");
  base.setAttribute("y1", "58"); base.setAttribute("y2", "58");
  svg.append(base);
  if (values.length) {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
}

function addSample(snapshot) {
  samples.push(snapshot);
  const horizon = snapshot.time - WINDOW_SECONDS;
  while (samples.length && samples[0].time < horizon) samples.shift();
}

function render() {
  const latest = samples[samples.length - 1];
  if (!latest) return;
  $("node").textContent = `node ${latest.node_id} · up ${number(latest.uptime_seconds / 60, 1)} min`;
  $("connections").textContent = number(latest.connections);
  $("messages-in").textContent = number(latest.messages_in_per_second, 1);
  $("messages-out").textContent = number(latest.messages_out_per_second, 1);
  const l = latest.latency_ms;
  $("latency").textContent = `${number(l.p50, 2)} / ${number(l.p95, 2)} / ${number(l.p99, 2)}`;
  $("streams").textContent = number(latest.subscriptions);
  $("rooms").textContent = number(latest.rooms);
  $("cpu-now").textContent = `${number(latest.system.cpu_percent, 1)} %`;
  $("memory-now").textContent = `${number(latest.system.memory_percent, 1)} %`;
  sparkline($("cpu-chart"), samples.map((s) => s.system.cpu_percent), 100);
  sparkline($("memory-chart"), samples.map((s) => s.system.memory_percent), 100);
  sparkline($("out-chart"), samples.map((s) => s.messages_out_per_second));
  sparkline($("latency-chart"), samples.map((s) => s.latency_ms.p99));
  const body = $("largest").tBodies[0];
  body.replaceChildren(...latest.largest_rooms.map((room) => {
    const row = document.createElement("tr");
    for (const text of [room.name, room.tenant_id || "—", number(room.members)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
  // The snapshot lists what fires now: it settles alerts raised before this page opened.
  for (const alert of latest.alerts ?? []) if (!alerts.has(alert.id)) alerts.set(alert.id, alert);
  renderAlerts();
}

function renderAlerts() {
  const list = $("alerts");
  const sorted = [...alerts.values()].sort((a, b) => b.started_at - a.started_at);
  const firing = sorted.filter((a) => a.state === "firing");
  $("alert-count").textContent = String(firing.length);
  $("alert-count").classList.toggle("firing", firing.length > 0);
  if (!sorted.length) {
    list.replaceChildren(Object.assign(document.createElement("li"), {
      className: "empty", textContent: "No alert is firing.",
    }));
    return;
  }
  list.replaceChildren(...sorted.slice(0, 20).map((alert) => {
    const item = document.createElement("li");
    item.className = `${alert.severity} ${alert.state}`;
    item.dataset.rule = alert.rule;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = alert.state;
    item.append(badge, ` ${alert.message}`);
    const when = document.createElement("small");
    const started = new Date(alert.started_at * 1000).toLocaleTimeString();
    when.textContent = `${alert.rule} · ${alert.severity} · since ${started}` +
      (alert.resolved_at ? ` · resolved ${new Date(alert.resolved_at * 1000).toLocaleTimeString()}` : "");
    item.append(when);
    return item;
  }));
}

function addSecurity(event) {
  const list = $("security");
  list.querySelector(".empty")?.remove();
  const item = document.createElement("li");
  item.className = "warning";
  const p = event.payload;
  item.textContent = event.event === "security.alert"
    ? `${p.attempts} failed logins from ${p.ip_address}`
    : `${p.user_id ?? "a user"} connected from a new network ${p.network ?? p.ip_address ?? ""}`;
  const when = document.createElement("small");
  when.textContent = `${event.event} · ${new Date(event.time).toLocaleTimeString()}`;
  item.append(when);
  list.prepend(item);
  while (list.children.length > MAX_SECURITY) list.lastElementChild.remove();
}

function denied(reason) {
  client?.close();
  client = null;
  $("denied-reason").textContent = reason;
  setStatus("closed", "Not authorised");
  show("denied");
}

async function start(token) {
  show("board");
  setStatus("connecting", "Connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  client = new Roomcast(`${scheme}://${location.host}/ws`, {
    token,
    // Keep the token across reconnects; a refused one stops the client.
    getToken: ({ reason }) => (reason === "unauthorized" || reason === "expired" ? undefined : token),
  });
  client.onState(({ state, delay, code }) => {
    if (state === "connected") setStatus("connected", "Live");
    else if (state === "disconnected") {
      const wait = delay ? ` — reconnecting in ${Math.ceil(delay / 1000)} s` : " — reconnecting";
      setStatus("disconnected", `Disconnected${code ? ` (${code})` : ""}${wait}`);
    } else if (state === "connecting") setStatus("connecting", "Connecting…");
    else if (state === "closed") setStatus("closed", "Disconnected");
  });
  client.on("metrics.snapshot", (event) => {
    if (event.room !== "performance.dashboard") return; // platform.health carries a copy
    addSample(event.payload);
    render();
  });
  client.on("platform.alert", (event) => {
    alerts.set(event.payload.id, event.payload);
    renderAlerts();
  });
  client.on("security.alert", addSecurity);
  client.on("security.new_location", addSecurity);
  try {
    await client.connect();
  } catch (error) {
    denied(error.code === "unauthorized" ? "The token was refused (invalid or expired)." : String(error.message ?? error));
    return;
  }
  try {
    for (const room of ROOMS) await client.join(room);
  } catch (error) {
    if (error.code === "forbidden") {
      denied("This token may not watch the platform. The dashboard needs a super admin or a platform service.");
      return;
    }
    throw error;
  }
  const past = await client.history("performance.dashboard", { limit: 150 });
  for (const event of past.events) if (event.event === "metrics.snapshot") addSample(event.payload);
  samples.sort((a, b) => a.time - b.time);
  render();
}

function main() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {
    // Out of the address bar, history and screenshots.
    history.replaceState(null, "", location.pathname);
    start(token);
  } else {
    show("login");
  }
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const pasted = $("token-input").value.trim();
    if (pasted) start(pasted);
  });
  $("other-token").addEventListener("click", () => show("login"));
}

main();

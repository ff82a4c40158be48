// HERO's live dashboard: EventSource subscriptions on the gateway's streams (from the first
// event), folded into a few numbers and drawn as plain SVG. No library, no build step.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("hero-dashboard-config").textContent);
  const KEY_STORE = "hero.dashboard.key";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MAX_POINTS = 5000; // per series: a long-lived page keeps the latest ones
  const GRID_CLASSES = new Set(["grid3", "grid4"]);

  // -- what the events say ----------------------------------------------------------------------

  const state = {
    nodes: new Map(), // node_id -> {grid, cru}
    contracts: new Map(), // contract_id -> {grid, cru, active}
    created: 0,
    cancelled: 0,
    active: [], // {t, v}: active contracts after each change
    prices: [], // {t, grid, usd}
    decisions: [], // {t, workload, current, desired, reason}
    billed: [], // {t, v}: cumulative TFT billed
    converted: [], // {t, v}: cumulative TFT from fiat
    billedTft: 0,
    billedUsd: 0,
    convertedTft: 0,
    fiat: new Map(), // currency -> amount converted
    events: 0,
    skipped: 0,
    lastPosition: 0,
  };

  function amount(money) {
    const value = money && Number(money.amount);
    return Number.isFinite(value) ? value : 0;
  }

  function time(text, fallback) {
    const t = Date.parse(text);
    return Number.isFinite(t) ? t : fallback;
  }

  function push(series, point) {
    series.push(point);
    if (series.length > MAX_POINTS) series.splice(0, series.length - MAX_POINTS);
  }

  const apply = {
    NodeRegistered(p) {
      state.nodes.set(p.node_id, { grid: p.grid, cru: (p.total && p.total.cru) || 0 });
    },
    ContractCreated(p, t) {
      if (state.contracts.has(p.contract_id)) return;
      const cru = (p.resources && p.resources.cru) || 0;
      state.contracts.set(p.contract_id, { grid: p.grid, cru, active: true });
      state.created += 1;
      push(state.active, { t, v: state.created - state.cancelled });
      if (p.price_hour && p.price_hour.currency === "USD") {
        push(state.prices, { t, grid: p.grid, usd: amount(p.price_hour) });
      }
    },
    ContractCancelled(p, t) {
      const contract = state.contracts.get(p.contract_id);
      if (!contract || !contract.active) return;
      contract.active = false;
      state.cancelled += 1;
      push(state.active, { t, v: state.created - state.cancelled });
    },
    ScaleDecided(p, t) {
      push(state.decisions, {
        t: time(p.decided_at, t),
        workload: p.workload_id,
        current: p.current_replicas,
        desired: p.desired_replicas,
        reason: p.reason,
      });
    },
    UsageBilled(p, t) {
      if (p.amount && p.amount.currency === "TFT") state.billedTft += amount(p.amount);
      if (p.usd && p.usd.currency === "USD") state.billedUsd += amount(p.usd);
      push(state.billed, { t, v: state.billedTft });
    },
    FiatConverted(p, t) {
      state.convertedTft += amount(p.tft);
      if (p.fiat) {
        const currency = p.fiat.currency;
        state.fiat.set(currency, (state.fiat.get(currency) || 0) + amount(p.fiat));
      }
      push(state.converted, { t, v: state.convertedTft });
    },
  };

  function capacity() {
    const grids = new Map();
    const row = (grid) => {
      if (!grids.has(grid)) grids.set(grid, { total: 0, committed: 0, nodes: 0 });
      return grids.get(grid);
    };
    for (const node of state.nodes.values()) {
      const r = row(node.grid);
      r.total += node.cru;
      r.nodes += 1;
    }
    for (const contract of state.contracts.values()) {
      if (contract.active) row(contract.grid).committed += contract.cru;
    }
    return [...grids.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  }

  // -- drawing ----------------------------------------------------------------------------------

  function svg(name, attrs, parent, text) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function gridClass(grid) {
    return GRID_CLASSES.has(grid) ? grid : "other";
  }

  function fixed(value, places) {
    return value.toFixed(places);
  }

  function clock(t) {
    return new Date(t).toISOString().slice(11, 19);
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * power >= value) return step * power;
    }
    return 10 * power;
  }

  function shortNumber(value) {
    if (value >= 1e6) return `${+(value / 1e6).toFixed(2)}M`;
    if (value >= 1e4) return `${+(value / 1e3).toFixed(1)}k`;
    if (value >= 100) return `${Math.round(value)}`;
    return `${+value.toPrecision(3)}`;
  }

  // A plot area inside an SVG: x over [x0, x1], y over [0, yMax], with its axes drawn.
  function plot(root, box, x0, x1, yMax, xLabel) {
    const left = box.x + 46;
    const right = box.x + box.w - 10;
    const top = box.y + 12;
    const bottom = box.y + box.h - 24;
    const span = x1 - x0;
    const sx = (x) => (span > 0 ? left + ((x - x0) / span) * (right - left) : (left + right) / 2);
    const sy = (y) => bottom - (y / yMax) * (bottom - top);
    svg("line", { class: "axis", x1: left, y1: bottom, x2: right, y2: bottom }, root);
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: bottom }, root);
    for (const y of [0, yMax / 2, yMax]) {
      svg("text", { x: left - 6, y: sy(y) + 4, "text-anchor": "end" }, root, shortNumber(y));
      if (y > 0) svg("line", { class: "axis", x1: left - 3, y1: sy(y), x2: left, y2: sy(y) }, root);
    }
    if (xLabel) {
      svg("text", { x: left, y: bottom + 16 }, root, xLabel(x0));
      if (span > 0) svg("text", { x: right, y: bottom + 16, "text-anchor": "end" }, root, xLabel(x1));
    }
    return { sx, sy, left, right, top, bottom };
  }

  function stepPath(points, sx, sy) {
    let d = "";
    points.forEach((p, i) => {
      d += i === 0 ? `M${sx(p.t)},${sy(p.v)}` : `H${sx(p.t)}V${sy(p.v)}`;
    });
    return d;
  }

  function span(series) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of series) {
      lo = Math.min(lo, p.t);
      hi = Math.max(hi, p.t);
    }
    return [lo, hi];
  }

  function empty(root, width) {
    svg("text", { class: "empty", x: width / 2, y: 110, "text-anchor": "middle" }, root, "no events yet");
  }

  function stats(card, entries) {
    const box = card.querySelector(".numbers");
    box.replaceChildren();
    for (const [name, label, value] of entries) {
      const item = document.createElement("span");
      item.className = "stat";
      item.dataset.stat = name;
      const caption = document.createElement("span");
      caption.className = "label";
      caption.textContent = `${label} `;
      const number = document.createElement("b");
      number.textContent = value;
      item.append(caption, number);
      box.appendChild(item);
    }
  }

  function canvas(card) {
    const root = card.querySelector("svg");
    root.replaceChildren();
    const [, , width, height] = root.getAttribute("viewBox").split(" ").map(Number);
    return { root, width, height };
  }

  const charts = {
    capacity(card) {
      const rows = capacity();
      const { root, width } = canvas(card);
      const entries = [];
      for (const [grid, r] of rows) {
        entries.push([`${grid}-committed`, `${grid} committed`, String(r.committed)]);
        entries.push([`${grid}-total`, `${grid} total`, `${r.total} cores, ${r.nodes} nodes`]);
      }
      stats(card, entries);
      if (rows.length === 0) {
        empty(root, width);
        return 0;
      }
      const max = niceMax(Math.max(...rows.map(([, r]) => r.total)));
      const left = 70;
      const right = width - 16;
      const band = Math.min(60, 180 / rows.length);
      rows.forEach(([grid, r], i) => {
        const y = 14 + i * band;
        const w = (v) => (v / max) * (right - left);
        svg("text", { x: left - 8, y: y + band / 2, "text-anchor": "end" }, root, grid);
        svg("rect", { class: "total", x: left, y: y + 4, width: w(r.total), height: band - 16, rx: 3 }, root);
        svg("rect", { class: gridClass(grid), x: left, y: y + 4, width: w(r.committed), height: band - 16, rx: 3 }, root);
        const share = r.total > 0 ? (100 * r.committed) / r.total : 0;
        svg("text", { class: "value", x: left + 6, y: y + band / 2 + 1 }, root,
          `${r.committed} / ${r.total} cores (${fixed(share, 1)} %)`);
      });
      return rows.length;
    },

    contracts(card) {
      const { root, width } = canvas(card);
      const active = state.created - state.cancelled;
      stats(card, [
        ["contracts-created", "created", String(state.created)],
        ["contracts-cancelled", "cancelled", String(state.cancelled)],
        ["contracts-active", "active", String(active)],
      ]);
      const series = state.active;
      if (series.length === 0) {
        empty(root, width);
        return 0;
      }
      const [t0, t1] = span(series);
      const yMax = niceMax(Math.max(...series.map((p) => p.v)));
      const area = plot(root, { x: 0, y: 0, w: width, h: 220 }, t0, t1, yMax, clock);
      const last = series[series.length - 1];
      const points = [...series, { t: t1, v: last.v }];
      svg("path", { class: "line active", d: stepPath(points, area.sx, area.sy) }, root);
      for (const p of series) svg("circle", { class: "active", cx: area.sx(p.t), cy: area.sy(p.v), r: 2 }, root);
      return series.length;
    },

    prices(card) {
      const { root, width } = canvas(card);
      const byGrid = new Map();
      for (const p of state.prices) {
        if (!byGrid.has(p.grid)) byGrid.set(p.grid, []);
        byGrid.get(p.grid).push(p.usd);
      }
      const entries = [];
      for (const [grid, prices] of [...byGrid.entries()].sort()) {
        const mean = prices.reduce((a, b) => a + b, 0) / prices.length;
        entries.push([`${grid}-prices`, `${grid} new contracts`, String(prices.length)]);
        entries.push([`${grid}-mean-usd`, `${grid} mean USD/h`, fixed(mean, 4)]);
        entries.push([`${grid}-range-usd`, "range", `${fixed(Math.min(...prices), 4)}–${fixed(Math.max(...prices), 4)}`]);
      }
      stats(card, entries);
      if (state.prices.length === 0) {
        empty(root, width);
        return 0;
      }
      const [t0, t1] = span(state.prices);
      const yMax = niceMax(Math.max(...state.prices.map((p) => p.usd)));
      const area = plot(root, { x: 0, y: 0, w: width, h: 220 }, t0, t1, yMax, clock);
      for (const p of state.prices) {
        svg("circle", { class: gridClass(p.grid), cx: area.sx(p.t), cy: area.sy(p.usd), r: 4, "fill-opacity": 0.8 }, root);
      }
      let x = area.right;
      for (const grid of [...byGrid.keys()].sort().reverse()) {
        svg("text", { class: gridClass(grid), x, y: area.top + 4, "text-anchor": "end" }, root, `● ${grid}`);
        x -= 60;
      }
      return state.prices.length;
    },

    scaling(card) {
      const { root, width } = canvas(card);
      const decisions = state.decisions;
      const last = decisions[decisions.length - 1];
      const ups = decisions.filter((d) => d.desired > d.current).length;
      const downs = decisions.filter((d) => d.desired < d.current).length;
      const entries = [
        ["scaling-decisions", "decisions", String(decisions.length)],
        ["scaling-up", "out", String(ups)],
        ["scaling-down", "in", String(downs)],
      ];
      if (last) {
        entries.push(["scaling-last", "last", `${last.workload} ${last.current} → ${last.desired} (${last.reason})`]);
      }
      stats(card, entries);
      if (decisions.length === 0) {
        empty(root, width);
        return 0;
      }
      // In order of decision, evenly spaced; the axis says when the first and last were taken.
      const yMax = niceMax(Math.max(...decisions.map((d) => Math.max(d.current, d.desired))));
      const n = decisions.length;
      const area = plot(root, { x: 0, y: 0, w: width, h: 220 }, 0, Math.max(n - 1, 0), yMax, (i) =>
        clock(decisions[Math.round(i)].t));
      decisions.forEach((d, i) => {
        const x = n === 1 ? (area.left + area.right) / 2 : area.sx(i);
        const kind = d.desired > d.current ? "up" : d.desired < d.current ? "down" : "same";
        svg("line", { class: kind, x1: x, y1: area.sy(d.current), x2: x, y2: area.sy(d.desired), "stroke-width": 3 }, root);
        svg("circle", { class: "same", cx: x, cy: area.sy(d.current), r: 3 }, root);
        svg("circle", { class: kind, cx: x, cy: area.sy(d.desired), r: 5 }, root);
        if (n <= 12) {
          const onLeft = x > (area.left + area.right) / 2 && n > 1;
          const label = { class: "value", x: onLeft ? x - 8 : x + 8, y: area.sy(d.desired) + 4 };
          if (onLeft) label["text-anchor"] = "end";
          svg("text", label, root, `${d.workload} ${d.current}→${d.desired}`);
        }
      });
      return n;
    },

    tft(card) {
      const { root, width } = canvas(card);
      const entries = [
        ["tft-converted", "TFT from fiat", fixed(state.convertedTft, 2)],
      ];
      for (const [currency, value] of [...state.fiat.entries()].sort()) {
        entries.push([`fiat-${currency}`, `${currency} paid in`, fixed(value, 2)]);
      }
      entries.push(["tft-billed", "TFT billed", fixed(state.billedTft, 4)]);
      entries.push(["usd-billed", "USD billed", fixed(state.billedUsd, 4)]);
      entries.push(["bills", "bills", String(state.billed.length)]);
      stats(card, entries);
      const points = state.billed.length + state.converted.length;
      if (points === 0) {
        empty(root, width);
        return 0;
      }
      const half = width / 2;
      const panels = [
        [state.converted, "converted", "TFT converted from fiat", 0],
        [state.billed, "billed", "TFT billed for usage", half],
      ];
      for (const [series, kind, title, x] of panels) {
        svg("text", { x: x + 50, y: 12, class: kind }, root, title);
        if (series.length === 0) {
          svg("text", { class: "empty", x: x + half / 2, y: 110, "text-anchor": "middle" }, root, "none yet");
          continue;
        }
        const [t0, t1] = span(series);
        const last = series[series.length - 1];
        const area = plot(root, { x, y: 6, w: half, h: 214 }, t0, t1, niceMax(last.v), clock);
        const path = [{ t: t0, v: 0 }, ...series, { t: t1, v: last.v }];
        svg("path", { class: `line ${kind}`, d: stepPath(path, area.sx, area.sy) }, root);
        for (const p of series) svg("circle", { class: kind, cx: area.sx(p.t), cy: area.sy(p.v), r: 2 }, root);
      }
      return points;
    },
  };

  // -- the status line --------------------------------------------------------------------------

  const connections = [];
  const statusLine = document.getElementById("status");

  function overall() {
    if (connections.length === 0) return "idle";
    const states = connections.map((c) => c.state);
    if (states.every((s) => s === "open")) return "open";
    if (states.includes("closed")) return "closed";
    if (states.includes("reconnecting")) return "reconnecting";
    return "connecting";
  }

  function renderStatus() {
    const now = overall();
    statusLine.dataset.state = now;
    statusLine.dataset.lastPosition = String(state.lastPosition);
    statusLine.dataset.events = String(state.events);
    if (connections.length === 0) return;
    const parts = connections.map((c) => `${c.topic.replace(/^hero\./, "")} ${c.state}${c.note ? ` (${c.note})` : ""}`);
    let text = `${now} · last position ${state.lastPosition} · ${state.events} events · ${parts.join(", ")}`;
    if (state.skipped) text += ` · ${state.skipped} unreadable`;
    if (now === "closed") text += " · the gateway refused or ended a stream: check the key, then reload";
    statusLine.textContent = text;
  }

  // -- rendering, at most every 100 ms while events pour in --------------------------------------

  let scheduled = false;

  function render() {
    scheduled = false;
    for (const card of document.querySelectorAll("[data-chart]")) {
      const draw = charts[card.dataset.chart];
      if (draw) card.dataset.points = String(draw(card));
    }
    renderStatus();
  }

  function schedule() {
    if (!scheduled) {
      scheduled = true;
      setTimeout(render, 100);
    }
  }

  // -- the streams ------------------------------------------------------------------------------

  function receive(connection, type, message) {
    const position = Number(message.lastEventId);
    if (Number.isFinite(position) && position > 0) {
      if (position <= connection.last) return; // already seen (a resume never repeats, but)
      connection.last = position;
      state.lastPosition = Math.max(state.lastPosition, position);
    }
    try {
      const envelope = JSON.parse(message.data);
      const handler = apply[type];
      if (handler) {
        handler(envelope.payload || {}, time(envelope.occurred_at, Date.now()));
        state.events += 1;
      }
    } catch (error) {
      state.skipped += 1;
      console.warn("hero dashboard: unreadable event", position, error);
    }
    schedule();
  }

  function subscribe(key, subscription) {
    const params = new URLSearchParams({ types: subscription.types.join(","), start: "earliest" });
    params.set(config.key_param, key);
    const url = `${config.streams_path}/${encodeURIComponent(subscription.topic)}?${params}`;
    const source = new EventSource(url);
    const connection = { topic: subscription.topic, source, state: "connecting", last: 0, note: "" };
    source.onopen = () => {
      connection.state = "open";
      connection.note = "";
      schedule();
    };
    // EventSource retries by itself (with Last-Event-ID) unless the answer was a refusal.
    source.onerror = () => {
      connection.state = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
      schedule();
    };
    for (const type of subscription.types) {
      source.addEventListener(type, (message) => receive(connection, type, message));
    }
    // The gateway's last word on a revoked key: stop here (a reconnect would only be refused).
    source.addEventListener("error", (message) => {
      if (!message.data) return; // a dropped connection, not the gateway's frame
      source.close();
      connection.state = "closed";
      try {
        connection.note = JSON.parse(message.data).message || "the key was revoked";
      } catch {
        connection.note = "the key was revoked";
      }
      schedule();
    });
    source.addEventListener("close", (message) => {
      try {
        connection.note = JSON.parse(message.data).reason || "closed by the gateway";
      } catch {
        connection.note = "closed by the gateway";
      }
      schedule();
    });
    connections.push(connection);
  }

  // -- the key ----------------------------------------------------------------------------------

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORE);
    } catch {
      return null;
    }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORE, key);
      else sessionStorage.removeItem(KEY_STORE);
    } catch {
      /* storage off: the key lives as long as the page */
    }
  }

  // ?key= is taken once, kept for the tab's session, and removed from the address bar.
  function takeKey() {
    const url = new URL(window.location.href);
    const given = url.searchParams.get("key");
    if (given) {
      storeKey(given);
      url.searchParams.delete("key");
      window.history.replaceState(null, "", url.pathname + url.search + url.hash);
      return given;
    }
    return storedKey();
  }

  function start(key) {
    document.getElementById("key-form").hidden = true;
    document.getElementById("forget-key").hidden = false;
    for (const subscription of config.subscriptions) subscribe(key, subscription);
    render();
  }

  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = document.getElementById("key-input").value.trim();
    if (key) {
      storeKey(key);
      start(key);
    }
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    storeKey(null);
    for (const c of connections) c.source.close();
    window.location.reload();
  });

  const key = takeKey();
  if (key) start(key);
  else {
    document.getElementById("key-form").hidden = false;
    render();
  }
})();

/* bookchat insights dashboard: signs in with the existing tokens, draws plain SVG charts (each with a table),
 * lists content gaps and disliked answers, and exports the questions as CSV. No third-party code. */
(function () {
  "use strict";

  var TOKEN_KEY = "bookchat-admin-token";
  var THEME_KEY = "bookchat-admin-theme";
  var SVG = "http://www.w3.org/2000/svg";
  var DAY = 86400000;
  var state = { gapsCursor: null, dislikedCursor: null };

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attributes) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attributes || {}).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    return node;
  }

  // ---- theme: the system's until one is chosen
  function applyTheme(theme) {
    if (theme) document.documentElement.setAttribute("data-theme", theme);
    else document.documentElement.removeAttribute("data-theme");
  }

  function currentTheme() {
    var chosen = document.documentElement.getAttribute("data-theme");
    if (chosen) return chosen;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  // ---- tokens and requests
  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  async function api(path, options) {
    options = options || {};
    var headers = Object.assign({ Authorization: "Bearer " + token() }, options.headers || {});
    var response = await fetch(path, Object.assign({}, options, { headers: headers }));
    if (response.status === 401 || response.status === 403) {
      var problem = await response.json().catch(function () { return {}; });
      signOut(problem.detail || "Sign in again.");
      throw new Error("signed out");
    }
    if (!response.ok) {
      var body = await response.json().catch(function () { return {}; });
      throw new Error(body.detail || "The server answered " + response.status + ".");
    }
    return response;
  }

  function showSignIn(message) {
    $("signin").hidden = false;
    $("dashboard").hidden = true;
    $("signout").hidden = true;
    var error = $("signin-error");
    error.hidden = !message;
    error.textContent = message || "";
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(message);
  }

  async function signIn(event) {
    event.preventDefault();
    var pasted = $("token").value.trim();
    var error = $("signin-error");
    error.hidden = true;
    if (pasted) {
      sessionStorage.setItem(TOKEN_KEY, pasted);
    } else {
      var response = await fetch("/api/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email: $("email").value.trim(), password: $("password").value }),
      });
      var body = await response.json().catch(function () { return {}; });
      if (!response.ok) return showSignIn(body.detail || "Sign-in failed.");
      sessionStorage.setItem(TOKEN_KEY, body.access_token);
    }
    $("password").value = "";
    $("token").value = "";
    showDashboard();
  }

  function showDashboard() {
    $("signin").hidden = true;
    $("dashboard").hidden = false;
    $("signout").hidden = false;
    load();
  }

  // ---- range
  function isoDate(date) { return date.toISOString().slice(0, 10); }

  function range() {
    var to = new Date($("to").value + "T00:00:00Z");
    return { from: $("from").value + "T00:00:00Z", to: new Date(to.getTime() + DAY).toISOString() };
  }

  function query(extra) {
    var r = range();
    var params = new URLSearchParams({ from: r.from, to: r.to });
    Object.keys(extra || {}).forEach(function (key) { if (extra[key] !== null) params.set(key, extra[key]); });
    return params.toString();
  }

  // ---- formatting
  function percent(value) { return value === null || value === undefined ? "–" : Math.round(value * 100) + " %"; }
  function ms(value) { return value === null || value === undefined ? "–" : Math.round(value) + " ms"; }
  function when(value) { return new Date(value).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }); }
  function day(value) { return new Date(value).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" }); }

  // ---- charts: plain SVG, with the same figures as a table
  function table(headers, rows) {
    var node = el("table");
    var head = node.createTHead().insertRow();
    headers.forEach(function (name) { var th = el("th", null, name); th.scope = "col"; head.appendChild(th); });
    var body = node.createTBody();
    rows.forEach(function (cells) {
      var row = body.insertRow();
      cells.forEach(function (cell) { row.insertCell().textContent = cell; });
    });
    return node;
  }

  function chartFrame(figure, label) {
    var plot = figure.querySelector(".plot");
    plot.replaceChildren();
    var drawing = svg("svg", { viewBox: "0 0 400 180", role: "img", "aria-label": label });
    plot.appendChild(drawing);
    drawing.appendChild(svg("line", { x1: 30, y1: 160, x2: 395, y2: 160, class: "axis" }));
    return drawing;
  }

  function empty(drawing) {
    var text = svg("text", { x: 200, y: 90, "text-anchor": "middle", class: "empty" });
    text.textContent = "No questions in this range";
    drawing.appendChild(text);
  }

  function labels(drawing, series, x) {
    var step = Math.max(1, Math.ceil(series.length / 6));
    series.forEach(function (bucket, i) {
      if (i % step) return;
      var text = svg("text", { x: x(i), y: 174, "text-anchor": "middle" });
      text.textContent = day(bucket.start);
      drawing.appendChild(text);
    });
  }

  function stackedBars(figure, series, keys, label) {
    var drawing = chartFrame(figure, label);
    if (!series.length) return empty(drawing);
    var max = Math.max(1, Math.max.apply(null, series.map(function (b) {
      return keys.reduce(function (sum, key) { return sum + key.value(b); }, 0);
    })));
    var width = 365 / series.length;
    var x = function (i) { return 30 + width * i + width / 2; };
    var top = svg("text", { x: 26, y: 14, "text-anchor": "end" });
    top.textContent = String(max);
    drawing.appendChild(top);
    series.forEach(function (bucket, i) {
      var base = 160;
      keys.forEach(function (key) {
        var height = (key.value(bucket) / max) * 150;
        if (height <= 0) return;
        var rect = svg("rect", {
          x: 30 + width * i + width * 0.12, y: base - height, width: Math.max(1, width * 0.76), height: height,
          class: key.className,
        });
        var tip = svg("title");
        tip.textContent = day(bucket.start) + ": " + key.value(bucket) + " " + key.name;
        rect.appendChild(tip);
        drawing.appendChild(rect);
        base -= height;
      });
    });
    labels(drawing, series, x);
  }

  function shareLine(figure, series) {
    var drawing = chartFrame(figure, "Share of questions answered per interval");
    var judged = series.filter(function (b) { return b.answered_share !== null; });
    if (!judged.length) return empty(drawing);
    var width = 365 / series.length;
    var x = function (i) { return 30 + width * i + width / 2; };
    var y = function (share) { return 160 - share * 150; };
    ["100 %", "50 %"].forEach(function (text, i) {
      var node = svg("text", { x: 26, y: i ? 88 : 14, "text-anchor": "end" });
      node.textContent = text;
      drawing.appendChild(node);
    });
    var points = [];
    series.forEach(function (bucket, i) {
      if (bucket.answered_share === null) return;
      points.push(x(i) + "," + y(bucket.answered_share));
      var dot = svg("circle", { cx: x(i), cy: y(bucket.answered_share), r: 3, class: "dot" });
      var tip = svg("title");
      tip.textContent = day(bucket.start) + ": " + percent(bucket.answered_share);
      dot.appendChild(tip);
      drawing.appendChild(dot);
    });
    drawing.insertBefore(svg("polyline", { points: points.join(" "), class: "share" }), drawing.firstChild.nextSibling);
    labels(drawing, series, x);
  }

  function fallback(figure, headers, rows) {
    figure.querySelector(".fallback").replaceChildren(table(headers, rows));
  }

  // ---- the page's parts
  function renderFigures(summary) {
    var totals = summary.totals;
    var items = [
      [totals.questions, "questions"],
      [percent(totals.answered_share), "answered"],
      [summary.up, "thumbs up"],
      [summary.down, "thumbs down"],
      [ms(totals.first_token_ms.p50) + " / " + ms(totals.first_token_ms.p95), "first token p50 / p95"],
      [ms(totals.full_answer_ms.p50) + " / " + ms(totals.full_answer_ms.p95), "full answer p50 / p95"],
    ];
    $("figures").replaceChildren.apply($("figures"), items.map(function (item) {
      var box = el("div", "figure");
      box.appendChild(el("b", null, item[0]));
      box.appendChild(el("span", null, item[1]));
      return box;
    }));
  }

  function renderSummary(summary) {
    var series = summary.series;
    renderFigures(summary);
    stackedBars($("chart-questions"), series, [
      { name: "answered", className: "answered", value: function (b) { return b.answered; } },
      { name: "not answered", className: "unanswered", value: function (b) { return b.questions - b.answered; } },
    ], "Questions per " + summary.interval + ", answered and not");
    fallback($("chart-questions"), ["Start", "Questions", "Answered"], series.map(function (b) {
      return [day(b.start), b.questions, b.answered];
    }));
    shareLine($("chart-share"), series);
    fallback($("chart-share"), ["Start", "Answered share"], series.map(function (b) {
      return [day(b.start), percent(b.answered_share)];
    }));
    stackedBars($("chart-feedback"), series, [
      { name: "thumbs up", className: "up", value: function (b) { return b.up; } },
      { name: "thumbs down", className: "down", value: function (b) { return b.down; } },
    ], "Thumbs up and down per " + summary.interval);
    fallback($("chart-feedback"), ["Start", "Thumbs up", "Thumbs down"], series.map(function (b) {
      return [day(b.start), b.up, b.down];
    }));
    $("sections-body").replaceChildren.apply($("sections-body"), summary.top_sections.map(function (section) {
      var row = el("tr");
      var cell = row.insertCell();
      var name = section.heading_path.length ? section.heading_path.join(" › ") : section.title;
      if (section.url) {
        var link = el("a", null, name);
        link.href = section.url;
        link.rel = "noopener noreferrer";
        cell.appendChild(link);
      } else cell.textContent = name;
      var count = row.insertCell();
      count.className = "num";
      count.textContent = section.citations;
      return row;
    }));
  }

  function gapRow(gap) {
    var row = el("tr");
    row.className = "gap";
    var asked = row.insertCell();
    asked.className = "num";
    asked.textContent = gap.asked;
    var last = row.insertCell();
    last.className = "num";
    last.textContent = when(gap.last_asked);
    var list = el("ul");
    gap.examples.forEach(function (example) { list.appendChild(el("li", null, example)); });
    row.insertCell().appendChild(list);
    var link = el("a", null, "Ask in the chat");
    link.href = "/?bookchat-ask=" + encodeURIComponent(gap.examples[0] || "");
    link.target = "_blank";
    link.rel = "noopener";
    row.insertCell().appendChild(link);
    return row;
  }

  async function loadGaps(more) {
    var params = { limit: 20, cursor: more ? state.gapsCursor : null };
    var page = await (await api("/api/insights/gaps?" + query(params))).json();
    var body = $("gaps-body");
    if (!more) body.replaceChildren();
    page.items.forEach(function (gap) { body.appendChild(gapRow(gap)); });
    if (!more && !page.items.length) {
      var row = el("tr");
      var cell = row.insertCell();
      cell.colSpan = 4;
      cell.textContent = "No unanswered questions in this range.";
      body.appendChild(row);
    }
    state.gapsCursor = page.next_cursor;
    $("gaps-more").hidden = !page.next_cursor;
    if (!page.complete) $("status").textContent = "Some unanswered questions are still being grouped; refresh to see them.";
  }

  function answerItem(item) {
    var node = el("li");
    node.appendChild(el("div", "q", item.question));
    node.appendChild(el("div", "a", item.answer));
    if (item.comment) node.appendChild(el("blockquote", null, item.comment));
    var meta = el("div", "meta", when(item.rated_at) + " · reader " + item.reader + (item.mode ? " · " + item.mode : ""));
    item.citations.forEach(function (citation) {
      if (!citation.url) return;
      meta.appendChild(document.createTextNode(" · "));
      var link = el("a", null, "[" + citation.index + "] " + citation.title);
      link.href = citation.url;
      link.rel = "noopener noreferrer";
      meta.appendChild(link);
    });
    node.appendChild(meta);
    return node;
  }

  async function loadDisliked(more) {
    var params = new URLSearchParams({ rating: "down", limit: "5" });
    if (more && state.dislikedCursor) params.set("cursor", state.dislikedCursor);
    var page = await (await api("/api/insights/feedback?" + params)).json();
    var list = $("disliked-list");
    if (!more) list.replaceChildren();
    page.items.forEach(function (item) { list.appendChild(answerItem(item)); });
    if (!more && !page.items.length) list.appendChild(el("li", "muted", "No answer was rated down."));
    state.dislikedCursor = page.next_cursor;
    $("disliked-more").hidden = !page.next_cursor;
  }

  async function load(event) {
    if (event) event.preventDefault();
    $("status").textContent = "Loading…";
    try {
      var summary = await (await api("/api/insights/summary?" + query({ interval: $("interval").value }))).json();
      renderSummary(summary);
      $("status").textContent = "";
      await Promise.all([loadGaps(false), loadDisliked(false)]);
      document.body.setAttribute("data-loaded", "true");
    } catch (error) {
      if (error.message !== "signed out") $("status").textContent = error.message;
    }
  }

  async function exportCsv() {
    $("status").textContent = "Preparing the export…";
    try {
      var response = await api("/api/insights/questions.csv?" + query());
      var blob = await response.blob();
      var link = el("a");
      link.href = URL.createObjectURL(blob);
      link.download = "bookchat-questions-" + $("from").value + "-" + $("to").value + ".csv";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
      $("status").textContent = "";
    } catch (error) {
      if (error.message !== "signed out") $("status").textContent = error.message;
    }
  }

  function start() {
    applyTheme(localStorage.getItem(THEME_KEY));
    var today = new Date();
    $("to").value = isoDate(today);
    $("from").value = isoDate(new Date(today.getTime() - 29 * DAY));
    $("theme").addEventListener("click", function () {
      var next = currentTheme() === "dark" ? "light" : "dark";
      localStorage.setItem(THEME_KEY, next);
      applyTheme(next);
    });
    $("signin-form").addEventListener("submit", function (event) {
      signIn(event).catch(function () { showSignIn("The server could not be reached."); });
    });
    $("signout").addEventListener("click", function () { signOut(""); });
    $("filters").addEventListener("submit", load);
    $("export").addEventListener("click", exportCsv);
    $("gaps-more").addEventListener("click", function () { loadGaps(true); });
    $("disliked-more").addEventListener("click", function () { loadDisliked(true); });
    if (token()) showDashboard();
    else showSignIn("");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start, { once: true });
  else start();
})();

/*!
 * bookchat widget — ask a book questions, answers stream in with citations.
 * Embed: <script src="https://chat.example.org/widget.js" data-api="https://chat.example.org"
 *                 data-title="Ask the book" defer></script>
 * No dependencies, no build step, no third-party requests: it talks only to data-api.
 */
(function () {
  "use strict";

  if (window.BookchatWidget) {
    return; // included twice (e.g. a swizzled Root plus a scripts entry): keep the first instance
  }

  // ---------------------------------------------------------------- configuration
  var script =
    document.currentScript || document.querySelector('script[src*="widget.js"][data-api], script[src*="widget.js"]');
  var scriptUrl = new URL((script && script.src) || "widget.js", location.href);
  var data = (script && script.dataset) || {};

  function httpUrl(value, base) {
    // Only http(s) URLs are ever followed or fetched: no javascript:, data:, blob: ...
    try {
      var url = new URL(value, base);
      return url.protocol === "http:" || url.protocol === "https:" ? url : null;
    } catch (e) {
      return null;
    }
  }

  function pageAddress() {
    // The page a selection came from, for the answer's context: origin and path only. The query string and the
    // fragment stay in the browser (they carry tokens, e-mail addresses, campaign ids).
    return location.origin + location.pathname;
  }

  var apiUrl = httpUrl(data.api || scriptUrl.origin, location.href) || httpUrl(scriptUrl.origin);
  var API = (apiUrl ? apiUrl.href : scriptUrl.origin).replace(/\/+$/, "");
  var TITLE = (data.title || "Ask the book").slice(0, 80);
  var CSS_URL = data.css ? httpUrl(data.css, location.href) : new URL("widget.css" + scriptUrl.search, scriptUrl);
  var MAX_QUESTION = 4000;
  var MAX_SELECTION = 8000;
  var DEFAULT_SELECTION_QUESTION = "Explain this passage.";
  var STORE_PREFIX = "bookchat:" + API + ":";
  var uid = 0;

  // ---------------------------------------------------------------- small helpers
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function nextId(name) {
    uid += 1;
    return "bkc-" + name + "-" + uid;
  }

  function svgIcon(pathData) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "20");
    svg.setAttribute("height", "20");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", pathData);
    path.setAttribute("fill", "currentColor");
    svg.appendChild(path);
    return svg;
  }

  var ICONS = {
    chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm3 6a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z",
    close: "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z",
    plus: "M11 5h2v6h6v2h-6v6h-2v-6H5v-2h6z",
    send: "M3 20.5 21 12 3 3.5v6.6L15 12 3 13.9z",
    stop: "M7 7h10v10H7z",
    up: "M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6c-.4.4-.6.9-.6 1.4v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z",
    down: "M22 3h-4v12h4V3zM2 14a2 2 0 0 0 2 2h6.3l-1 4.6v.3c0 .4.2.8.4 1.1l1.1 1 6.6-6.6c.4-.4.6-.9.6-1.4V5a2 2 0 0 0-2-2H7c-.8 0-1.5.5-1.8 1.2l-3 7.1c-.1.2-.2.5-.2.7v2z",
  };

  var storage = {
    get: function (key) {
      try {
        var raw = window.localStorage.getItem(STORE_PREFIX + key);
        return raw === null ? null : JSON.parse(raw);
      } catch (e) {
        return null; // storage disabled (private mode, sandboxed iframe): the widget still works, it just forgets
      }
    },
    set: function (key, value) {
      try {
        if (value === null || value === undefined) window.localStorage.removeItem(STORE_PREFIX + key);
        else window.localStorage.setItem(STORE_PREFIX + key, JSON.stringify(value));
      } catch (e) {
        /* see get() */
      }
    },
  };

  var session = {
    get: function (key) {
      try {
        return window.sessionStorage.getItem(STORE_PREFIX + key);
      } catch (e) {
        return null;
      }
    },
    set: function (key, value) {
      try {
        if (value === null) window.sessionStorage.removeItem(STORE_PREFIX + key);
        else window.sessionStorage.setItem(STORE_PREFIX + key, value);
      } catch (e) {
        /* ignore */
      }
    },
  };

  // ---------------------------------------------------------------- errors in words
  function retryAfterSeconds(response) {
    var value = response && response.headers ? response.headers.get("Retry-After") : null;
    if (!value) return null;
    if (/^\s*\d+\s*$/.test(value)) return parseInt(value, 10);
    var when = Date.parse(value);
    return isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000));
  }

  function inWords(seconds) {
    if (seconds <= 1) return "in a second";
    if (seconds < 90) return "in " + seconds + " seconds";
    var minutes = Math.ceil(seconds / 60);
    if (minutes < 90) return "in " + minutes + " minutes";
    var at = new Date(Date.now() + seconds * 1000);
    return "at " + at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function ChatError(message, status, code) {
    this.message = message;
    this.status = status || 0;
    this.code = code || "";
  }

  async function errorFrom(response) {
    var detail = "";
    var code = "";
    try {
      var body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : "";
      code = typeof body.code === "string" ? body.code : "";
    } catch (e) {
      /* not JSON: the status alone tells the story */
    }
    var status = response.status;
    var wait = retryAfterSeconds(response);
    var message;
    if (status === 429) {
      message =
        "You are sending questions faster than this book allows. " +
        (wait !== null ? "Please try again " + inWords(wait) + "." : "Please wait a moment and try again.");
    } else if (status === 503) {
      message =
        "The answering service is busy right now. " +
        (wait !== null ? "Please try again " + inWords(wait) + "." : "Please try again shortly.");
    } else if (status === 504) {
      message = "The language model took too long to answer. Please try again.";
    } else if (status === 502) {
      message = "The language model could not answer this time. Please try again.";
    } else if (status === 401 || status === 403) {
      message = "This chat could not sign you in" + (detail ? ": " + detail : ".");
    } else if (status === 413) {
      message = "That message is too long to send.";
    } else if (status === 400 || status === 422) {
      message = "The question could not be sent" + (detail ? ": " + detail : ".");
    } else if (status === 404) {
      message = "Not found" + (detail ? ": " + detail : ".");
    } else {
      message = "Something went wrong on the server (HTTP " + status + "). Please try again.";
    }
    return new ChatError(message, status, code);
  }

  function networkError(err) {
    if (err && err.name === "AbortError") return new ChatError("Stopped.", 0, "aborted");
    if (err instanceof ChatError) return err;
    return new ChatError("Cannot reach the chat server. Check your connection and try again.", 0, "network");
  }

  // ---------------------------------------------------------------- authentication (guest token)
  var tokenRequest = null;

  function storedToken() {
    var token = storage.get("token");
    // Renew a little early so a request never races the expiry.
    if (token && typeof token.value === "string" && (!token.expiresAt || token.expiresAt - 30000 > Date.now())) {
      return token.value;
    }
    return null;
  }

  function requestGuest(body) {
    return fetch(API + "/api/auth/guest", {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
    });
  }

  function guestToken() {
    var existing = storedToken();
    if (existing) return Promise.resolve(existing);
    if (!tokenRequest) {
      // One request even when the history load and a question both need a token at once.
      tokenRequest = (async function () {
        // Renewing with the previous (even expired) guest token keeps the same guest, hence the conversations.
        var previous = storage.get("token");
        var body = previous && typeof previous.value === "string" ? { guest_token: previous.value } : {};
        var response = await requestGuest(body);
        if (response.status === 400 && body.guest_token) {
          storage.set("token", null); // too old to renew (or from another server): start as a new guest
          response = await requestGuest({});
        }
        if (!response.ok) throw await errorFrom(response);
        var issued = await response.json();
        if (!issued || typeof issued.access_token !== "string") {
          throw new ChatError("The chat server sent an unexpected sign-in answer.", 0, "bad-token");
        }
        var lifetime = typeof issued.expires_in === "number" ? issued.expires_in : 900;
        storage.set("token", { value: issued.access_token, expiresAt: Date.now() + lifetime * 1000 });
        return issued.access_token;
      })();
      tokenRequest.then(
        function () {
          tokenRequest = null;
        },
        function () {
          tokenRequest = null;
        }
      );
    }
    return tokenRequest;
  }

  async function apiFetch(path, options, isRetry) {
    var token = await guestToken();
    var headers = Object.assign({}, options.headers || {}, { Authorization: "Bearer " + token });
    var response = await fetch(API + path, Object.assign({}, options, { headers: headers, credentials: "omit" }));
    if (response.status === 401 && !isRetry) {
      // The guest token expired early or the server's secret changed: renew it and retry once.
      var stored = storage.get("token");
      if (stored) storage.set("token", { value: stored.value, expiresAt: 1 });
      return apiFetch(path, options, true);
    }
    return response;
  }

  // ---------------------------------------------------------------- safe Markdown
  // Everything is text by default: nodes are built with createElement/textContent, so a passage or answer
  // containing <script> or <img onerror=...> can only ever show up as characters. The whitelist below adds
  // paragraphs, lists, headings-as-bold, block quotes, inline and fenced code, emphasis, http(s) links and [n].
  var INLINE = new RegExp(
    [
      "(`+)([^`]|[^`][\\s\\S]*?[^`])\\1(?!`)", // 1,2 inline code
      "\\*\\*(?=\\S)([\\s\\S]*?\\S)\\*\\*", // 3 strong
      "__(?=\\S)([\\s\\S]*?\\S)__(?![A-Za-z0-9_])", // 4 strong
      "\\*(?=[^\\s*])([\\s\\S]*?[^\\s*])\\*", // 5 emphasis
      "_(?=[^\\s_])([\\s\\S]*?[^\\s_])_(?![A-Za-z0-9_])", // 6 emphasis
      "\\[([^\\[\\]]{1,500})\\]\\((\\S{1,2000}?)\\)", // 7,8 link
      "\\[(\\d{1,3}(?:\\s*[,;]\\s*\\d{1,3})*)\\]", // 9 citation(s)
      "(https?:\\/\\/[^\\s<>()\\[\\]]*[^\\s<>()\\[\\].,;:!?'\"])", // 10 bare URL
    ].join("|"),
    "g"
  );

  function linkTarget(anchor, url) {
    if (url.origin !== location.origin) {
      anchor.target = "_blank";
      anchor.rel = "noopener noreferrer nofollow";
    }
  }

  function citationLabel(citation) {
    var parts = [];
    if (citation.title) parts.push(String(citation.title));
    if (Array.isArray(citation.heading_path)) {
      citation.heading_path.forEach(function (heading) {
        if (heading && parts.indexOf(String(heading)) === -1) parts.push(String(heading));
      });
    }
    return parts.join(" › ") || "Source " + citation.index;
  }

  function citationNode(number, citations) {
    var citation = citations[number];
    if (!citation) return document.createTextNode("[" + number + "]");
    var url = citation.url ? httpUrl(citation.url, location.href) : null;
    var node = el(url ? "a" : "span", "bkc-cite", "[" + number + "]");
    node.title = citationLabel(citation);
    if (url) {
      node.href = url.href;
      linkTarget(node, url);
      node.setAttribute("aria-label", "Source " + number + ": " + citationLabel(citation));
    }
    return node;
  }

  function appendInline(parent, text, citations, plain) {
    var pattern = new RegExp(INLINE.source, "g"); // fresh lastIndex: appendInline recurses
    var last = 0;
    var match;
    while ((match = pattern.exec(text)) !== null) {
      var start = match.index;
      var node = null;
      var underscored = match[4] !== undefined || match[6] !== undefined;
      if (underscored && start > 0 && /[A-Za-z0-9_]/.test(text.charAt(start - 1))) {
        pattern.lastIndex = start + 1; // snake_case_words and __dunder__ inside words are not emphasis
        continue;
      }
      if (match[2] !== undefined) {
        node = el("code", "bkc-code", match[2].replace(/^ (.*) $/, "$1"));
      } else if (match[3] !== undefined || match[4] !== undefined) {
        node = el("strong");
        appendInline(node, match[3] !== undefined ? match[3] : match[4], citations, plain);
      } else if (match[5] !== undefined || match[6] !== undefined) {
        node = el("em");
        appendInline(node, match[5] !== undefined ? match[5] : match[6], citations, plain);
      } else if (match[7] !== undefined) {
        var url = /^https?:\/\//i.test(match[8]) ? httpUrl(match[8]) : null;
        if (url && !plain) {
          node = el("a", "bkc-link");
          node.href = url.href;
          linkTarget(node, url);
          appendInline(node, match[7], citations, true); // no links inside links
        } else {
          node = document.createTextNode(match[0]);
        }
      } else if (match[9] !== undefined) {
        if (plain) {
          node = document.createTextNode(match[0]);
        } else {
          node = document.createDocumentFragment();
          match[9].split(/\s*[,;]\s*/).forEach(function (number) {
            node.appendChild(citationNode(parseInt(number, 10), citations));
          });
        }
      } else if (match[10] !== undefined) {
        var bare = httpUrl(match[10]);
        if (bare && !plain) {
          node = el("a", "bkc-link", match[10]);
          node.href = bare.href;
          linkTarget(node, bare);
        } else {
          node = document.createTextNode(match[0]);
        }
      }
      if (start > last) parent.appendChild(document.createTextNode(text.slice(last, start)));
      parent.appendChild(node);
      last = pattern.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function renderMarkdown(source, citations) {
    var fragment = document.createDocumentFragment();
    var lines = String(source || "").replace(/\r\n?/g, "\n").split("\n");
    var paragraph = [];
    var list = null;
    var quote = null;

    function flushParagraph() {
      if (!paragraph.length) return;
      var p = el("p", "bkc-p");
      paragraph.forEach(function (line, index) {
        if (index) p.appendChild(el("br"));
        appendInline(p, line, citations);
      });
      fragment.appendChild(p);
      paragraph = [];
    }

    function closeBlocks() {
      flushParagraph();
      list = null;
      quote = null;
    }

    for (var i = 0; i < lines.length; i++) {
      var line = lines[i];
      var fence = /^\s{0,3}(`{3,}|~{3,})\s*([\w#+.-]*)/.exec(line);
      if (fence) {
        closeBlocks();
        var code = [];
        var closer = new RegExp("^\\s{0,3}" + fence[1].charAt(0) + "{" + fence[1].length + ",}\\s*$");
        for (i += 1; i < lines.length && !closer.test(lines[i]); i++) code.push(lines[i]);
        var pre = el("pre", "bkc-pre");
        var codeNode = el("code", "", code.join("\n"));
        if (fence[2]) codeNode.setAttribute("data-lang", fence[2]);
        pre.appendChild(codeNode);
        fragment.appendChild(pre);
        continue;
      }
      if (/^\s*$/.test(line)) {
        closeBlocks();
        continue;
      }
      var heading = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
      if (heading) {
        closeBlocks();
        var h = el("p", "bkc-p bkc-heading");
        var strong = el("strong");
        appendInline(strong, heading[1], citations);
        h.appendChild(strong);
        fragment.appendChild(h);
        continue;
      }
      var quoted = /^\s{0,3}>\s?(.*)$/.exec(line);
      if (quoted) {
        flushParagraph();
        list = null;
        if (!quote) {
          quote = el("blockquote", "bkc-quote");
          fragment.appendChild(quote);
        } else {
          quote.appendChild(el("br"));
        }
        appendInline(quote, quoted[1], citations);
        continue;
      }
      var item = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/.exec(line);
      if (item) {
        flushParagraph();
        quote = null;
        var ordered = /\d/.test(item[1]);
        if (!list || list.ordered !== ordered) {
          list = { ordered: ordered, node: el(ordered ? "ol" : "ul", "bkc-list") };
          var first = parseInt(item[1], 10);
          if (ordered && first > 1) list.node.start = first;
          fragment.appendChild(list.node);
        }
        var li = el("li");
        appendInline(li, item[2], citations);
        list.node.appendChild(li);
        continue;
      }
      if (list && /^\s{2,}\S/.test(line)) {
        var lastItem = list.node.lastChild;
        lastItem.appendChild(document.createTextNode(" "));
        appendInline(lastItem, line.trim(), citations);
        continue;
      }
      if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
        closeBlocks();
        continue; // a thematic break carries nothing in a chat bubble
      }
      list = null;
      quote = null;
      paragraph.push(line.trim());
    }
    flushParagraph();
    return fragment;
  }

  // ---------------------------------------------------------------- SSE over fetch
  async function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var eventName = "";
    var dataLines = [];

    function dispatch() {
      if (dataLines.length) {
        var payload = dataLines.join("\n");
        var parsed;
        try {
          parsed = JSON.parse(payload);
        } catch (e) {
          parsed = { text: payload };
        }
        onEvent(eventName || "message", parsed);
      }
      eventName = "";
      dataLines = [];
    }

    function handleLine(line) {
      if (line === "") return dispatch();
      if (line.charAt(0) === ":") return; // comment / keep-alive
      var colon = line.indexOf(":");
      var field = colon === -1 ? line : line.slice(0, colon);
      var value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") eventName = value;
      else if (field === "data") dataLines.push(value);
    }

    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      // Keep a trailing "\r" back: its "\n" may arrive in the next chunk.
      var match;
      var lineBreak = /\r\n|\n|\r(?=[\s\S])/g;
      var consumed = 0;
      while ((match = lineBreak.exec(buffer)) !== null) {
        handleLine(buffer.slice(consumed, match.index));
        consumed = lineBreak.lastIndex;
      }
      buffer = buffer.slice(consumed);
    }
    buffer += decoder.decode();
    if (buffer) handleLine(buffer.replace(/\r$/, ""));
    dispatch();
  }

  // ---------------------------------------------------------------- the widget
  var state = {
    open: false,
    busy: false,
    controller: null,
    conversationId: storage.get("conversation"),
    history: null, // the promise of the history load, so a question waits for it
    selection: null, // {text, pageUrl} attached to the next question
    pendingSelection: null, // what the "Ask about this" button would attach
  };

  var ids = { panel: nextId("panel"), title: nextId("title"), input: nextId("input"), log: nextId("log") };

  var root = el("div", "bkc-root");
  root.setAttribute("data-bookchat", "");

  var launcher = el("button", "bkc-launcher");
  launcher.type = "button";
  launcher.setAttribute("aria-label", TITLE);
  launcher.setAttribute("aria-haspopup", "dialog");
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", ids.panel);
  launcher.appendChild(svgIcon(ICONS.chat));
  launcher.appendChild(el("span", "bkc-launcher-label", TITLE));

  var panel = el("section", "bkc-panel");
  panel.id = ids.panel;
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-labelledby", ids.title);

  var header = el("div", "bkc-header");
  var title = el("h2", "bkc-title", TITLE);
  title.id = ids.title;
  var newButton = el("button", "bkc-icon-button bkc-new");
  newButton.type = "button";
  newButton.setAttribute("aria-label", "New conversation");
  newButton.title = "New conversation";
  newButton.appendChild(svgIcon(ICONS.plus));
  var closeButton = el("button", "bkc-icon-button bkc-close");
  closeButton.type = "button";
  closeButton.setAttribute("aria-label", "Close chat");
  closeButton.title = "Close (Esc)";
  closeButton.appendChild(svgIcon(ICONS.close));
  header.appendChild(title);
  header.appendChild(newButton);
  header.appendChild(closeButton);

  var log = el("div", "bkc-log");
  log.id = ids.log;
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  log.setAttribute("aria-relevant", "additions text");
  log.setAttribute("aria-label", "Conversation");
  log.tabIndex = 0; // scrollable region: reachable and scrollable with the keyboard

  var empty = el("p", "bkc-empty", "Ask a question about this book. Answers cite the sections they come from.");
  log.appendChild(empty);

  var status = el("p", "bkc-sr");
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");

  var form = el("form", "bkc-form");
  form.setAttribute("aria-label", "Ask a question");
  var chip = el("div", "bkc-chip");
  chip.hidden = true;
  var chipText = el("span", "bkc-chip-text");
  var chipRemove = el("button", "bkc-icon-button bkc-chip-remove");
  chipRemove.type = "button";
  chipRemove.setAttribute("aria-label", "Do not attach the selected text");
  chipRemove.appendChild(svgIcon(ICONS.close));
  chip.appendChild(chipText);
  chip.appendChild(chipRemove);
  var label = el("label", "bkc-sr", "Your question");
  label.htmlFor = ids.input;
  var input = el("textarea", "bkc-input");
  input.id = ids.input;
  input.rows = 1;
  input.maxLength = MAX_QUESTION;
  input.placeholder = "Ask a question…";
  input.setAttribute("enterkeyhint", "send");
  var sendButton = el("button", "bkc-send");
  sendButton.type = "submit";
  sendButton.setAttribute("aria-label", "Send");
  sendButton.appendChild(svgIcon(ICONS.send));
  var row = el("div", "bkc-row");
  row.appendChild(input);
  row.appendChild(sendButton);
  form.appendChild(chip);
  form.appendChild(label);
  form.appendChild(row);

  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(status);
  panel.appendChild(form);

  var askSelection = el("button", "bkc-ask-selection", "Ask about this");
  askSelection.type = "button";
  askSelection.hidden = true;

  root.appendChild(panel);
  root.appendChild(launcher);
  root.appendChild(askSelection);

  function announce(text) {
    status.textContent = "";
    // Cleared first and refilled after a tick, so the same words said twice in a row are announced twice.
    window.setTimeout(function () {
      status.textContent = text;
    }, 50);
  }

  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  function scrollToBottom() {
    log.scrollTop = log.scrollHeight;
  }

  function clearEmptyHint() {
    if (empty.parentNode) empty.parentNode.removeChild(empty);
  }

  function truncate(text, length) {
    return text.length > length ? text.slice(0, length - 1) + "…" : text;
  }

  // ---- messages
  function addUserMessage(text, selectedText) {
    clearEmptyHint();
    var node = el("div", "bkc-msg bkc-msg-user");
    var who = el("span", "bkc-sr", "You:");
    node.appendChild(who);
    if (selectedText) {
      var quote = el("blockquote", "bkc-selection-quote", truncate(selectedText, 400));
      node.appendChild(quote);
    }
    node.appendChild(el("p", "bkc-p", text));
    log.appendChild(node);
    scrollToBottom();
    return node;
  }

  function AssistantMessage() {
    clearEmptyHint();
    this.node = el("div", "bkc-msg bkc-msg-assistant");
    this.node.appendChild(el("span", "bkc-sr", TITLE + ":"));
    this.body = el("div", "bkc-body");
    this.sources = el("div", "bkc-sources");
    this.sources.hidden = true;
    this.uncovered = el("div", "bkc-uncovered");
    this.uncovered.hidden = true;
    this.footer = el("div", "bkc-footer");
    this.node.appendChild(this.body);
    this.node.appendChild(this.sources);
    this.node.appendChild(this.uncovered);
    this.node.appendChild(this.footer);
    this.text = "";
    this.citations = {};
    this.answered = true; // false: the book does not cover the question (then closestPages, and no sources)
    this.closestPages = [];
    this.id = null;
    this.frame = 0;
    log.appendChild(this.node);
  }

  AssistantMessage.prototype.setCitations = function (list) {
    var byIndex = {};
    (Array.isArray(list) ? list : []).forEach(function (citation, position) {
      if (citation && typeof citation === "object") {
        var index = typeof citation.index === "number" ? citation.index : position + 1;
        byIndex[index] = citation;
      }
    });
    this.citations = byIndex;
  };

  AssistantMessage.prototype.setCoverage = function (reply) {
    // `answered: false` (JSON reply, SSE `done`, stored answer): the book does not cover the question.
    if (!reply || reply.answered !== false) return;
    this.answered = false;
    this.closestPages = (Array.isArray(reply.closest_pages) ? reply.closest_pages : [])
      .filter(function (page) {
        return page && typeof page === "object" && page.title;
      })
      .slice(0, 3);
  };

  AssistantMessage.prototype.addCitations = function (list) {
    var self = this;
    list.forEach(function (citation) {
      if (citation && typeof citation.index === "number") self.citations[citation.index] = citation;
    });
  };

  AssistantMessage.prototype.thinking = function () {
    this.node.setAttribute("aria-busy", "true");
    var dots = el("span", "bkc-typing");
    dots.setAttribute("aria-label", "Writing an answer");
    dots.appendChild(el("span"));
    dots.appendChild(el("span"));
    dots.appendChild(el("span"));
    this.body.replaceChildren(dots);
  };

  AssistantMessage.prototype.render = function () {
    var stick = nearBottom();
    this.body.replaceChildren(renderMarkdown(this.text, this.citations));
    if (stick) scrollToBottom();
  };

  AssistantMessage.prototype.append = function (text) {
    var self = this;
    this.text += text;
    // Coalesce many small deltas into one re-render per frame.
    if (!this.frame) {
      this.frame = window.requestAnimationFrame(function () {
        self.frame = 0;
        self.render();
      });
    }
  };

  AssistantMessage.prototype.renderSources = function () {
    var self = this;
    var numbers = Object.keys(this.citations)
      .map(Number)
      .sort(function (a, b) {
        return a - b;
      });
    this.sources.replaceChildren();
    if (!numbers.length) {
      this.sources.hidden = true;
      return;
    }
    var heading = el("p", "bkc-sources-title", "Sources");
    var listNode = el("ol", "bkc-sources-list");
    numbers.forEach(function (number) {
      var citation = self.citations[number];
      var item = el("li", "bkc-source");
      item.value = number;
      var url = citation.url ? httpUrl(citation.url, location.href) : null;
      var link = el(url ? "a" : "span", "bkc-source-link");
      link.appendChild(el("span", "bkc-source-number", "[" + number + "] "));
      link.appendChild(document.createTextNode(citationLabel(citation)));
      if (url) {
        link.href = url.href;
        linkTarget(link, url);
      }
      item.appendChild(link);
      listNode.appendChild(item);
    });
    this.sources.appendChild(heading);
    this.sources.appendChild(listNode);
    this.sources.hidden = false;
  };

  AssistantMessage.prototype.renderUncovered = function () {
    // An unanswered reply: a note and the nearest sections to read. They are offered, not cited: no sources.
    this.uncovered.replaceChildren();
    this.node.classList.add("bkc-msg-unanswered");
    this.uncovered.appendChild(el("p", "bkc-uncovered-note", "Not covered by the book."));
    if (this.closestPages.length) {
      var headingId = nextId("closest");
      var heading = el("p", "bkc-closest-title", "Closest pages:");
      heading.id = headingId;
      var listNode = el("ul", "bkc-closest-list");
      listNode.setAttribute("aria-labelledby", headingId);
      this.closestPages.forEach(function (page) {
        var item = el("li", "bkc-closest");
        var url = page.url ? httpUrl(page.url, location.href) : null;
        var link = el(url ? "a" : "span", "bkc-closest-link", page.title);
        if (Array.isArray(page.heading_path) && page.heading_path.length) {
          link.title = page.heading_path.map(String).join(" › ");
        }
        if (url) {
          link.href = url.href;
          linkTarget(link, url);
        }
        item.appendChild(link);
        listNode.appendChild(item);
      });
      this.uncovered.appendChild(heading);
      this.uncovered.appendChild(listNode);
    }
    this.uncovered.hidden = false;
  };

  AssistantMessage.prototype.finish = function (options) {
    if (this.frame) {
      window.cancelAnimationFrame(this.frame);
      this.frame = 0;
    }
    this.node.removeAttribute("aria-busy");
    if (this.text) this.render();
    else this.body.replaceChildren();
    if (this.answered === false) {
      this.citations = {};
      this.renderSources(); // hides the sources block
      this.renderUncovered();
    } else {
      this.renderSources();
    }
    if (options && options.note) this.footer.appendChild(el("p", "bkc-note", options.note));
    if (this.id && this.text) this.addFeedback(options && options.feedback);
  };

  AssistantMessage.prototype.fail = function (error) {
    var alert = el("p", "bkc-error", error.message);
    alert.setAttribute("role", "alert");
    this.finish({});
    this.footer.appendChild(alert);
  };

  AssistantMessage.prototype.addFeedback = function (current) {
    var self = this;
    var group = el("div", "bkc-feedback");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Was this answer helpful?");
    var buttons = [];
    [
      ["up", "Helpful", ICONS.up],
      ["down", "Not helpful", ICONS.down],
    ].forEach(function (spec) {
      var button = el("button", "bkc-icon-button bkc-thumb bkc-thumb-" + spec[0]);
      button.type = "button";
      button.setAttribute("aria-label", spec[1]);
      button.title = spec[1];
      button.setAttribute("aria-pressed", current === spec[0] ? "true" : "false");
      button.appendChild(svgIcon(spec[2]));
      button.addEventListener("click", function () {
        sendFeedback(self.id, spec[0], buttons, button);
      });
      buttons.push(button);
      group.appendChild(button);
    });
    this.footer.appendChild(group);
  };

  async function sendFeedback(messageId, rating, buttons, pressed) {
    buttons.forEach(function (button) {
      button.disabled = true;
    });
    try {
      var response = await apiFetch("/api/messages/" + encodeURIComponent(messageId) + "/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ rating: rating }),
      });
      if (!response.ok) throw await errorFrom(response);
      buttons.forEach(function (button) {
        button.setAttribute("aria-pressed", button === pressed ? "true" : "false");
      });
      announce("Thanks for the feedback.");
    } catch (err) {
      announce("Feedback was not saved: " + networkError(err).message);
    } finally {
      buttons.forEach(function (button) {
        button.disabled = false;
      });
    }
  }

  // ---- conversation
  function setConversation(id) {
    state.conversationId = id || null;
    storage.set("conversation", state.conversationId);
  }

  function resetLog() {
    log.replaceChildren(empty);
  }

  function newConversation() {
    if (state.controller) state.controller.abort();
    setConversation(null);
    state.history = Promise.resolve();
    resetLog();
    announce("Started a new conversation.");
    input.focus();
  }

  function loadHistory() {
    if (!state.history) state.history = fetchHistory();
    return state.history;
  }

  async function fetchHistory() {
    if (!state.conversationId) return;
    var loading = el("p", "bkc-note", "Loading the conversation…");
    log.appendChild(loading);
    try {
      var response = await apiFetch("/api/conversations/" + encodeURIComponent(state.conversationId), {
        method: "GET",
        headers: { Accept: "application/json" },
      });
      if (response.status === 404 || response.status === 403) {
        setConversation(null); // deleted, or it belonged to an earlier guest identity
        return;
      }
      if (!response.ok) throw await errorFrom(response);
      var body = await response.json();
      var messages = Array.isArray(body.messages) ? body.messages : Array.isArray(body.items) ? body.items : [];
      messages.forEach(function (message) {
        if (!message || typeof message.content !== "string") return;
        if (message.role === "user") {
          addUserMessage(message.content, message.selected_text || null);
        } else if (message.role === "assistant") {
          var reply = new AssistantMessage();
          reply.id = message.id || null;
          reply.text = message.content;
          reply.setCitations(message.citations);
          reply.setCoverage(message);
          var note = null;
          if (message.status === "cancelled") note = "Stopped before the answer was complete.";
          else if (message.status === "pending") note = "This answer was still being written when the page closed.";
          var feedback = message.feedback && (message.feedback.rating || message.feedback);
          if (message.status === "error") {
            reply.fail(new ChatError("This answer could not be completed."));
          } else {
            reply.finish({ note: note, feedback: typeof feedback === "string" ? feedback : null });
          }
        }
      });
      scrollToBottom();
    } catch (err) {
      var problem = el("p", "bkc-error", "The earlier conversation could not be loaded. " + networkError(err).message);
      problem.setAttribute("role", "alert");
      log.appendChild(problem);
    } finally {
      if (loading.parentNode) loading.parentNode.removeChild(loading);
    }
  }

  function setBusy(busy) {
    state.busy = busy;
    sendButton.replaceChildren(svgIcon(busy ? ICONS.stop : ICONS.send));
    sendButton.setAttribute("aria-label", busy ? "Stop the answer" : "Send");
    sendButton.classList.toggle("bkc-busy", busy);
  }

  async function ask(question, selection) {
    if (state.busy) return;
    question = String(question || "").trim();
    if (!question && selection) question = DEFAULT_SELECTION_QUESTION;
    if (!question) return;
    question = question.slice(0, MAX_QUESTION);
    await loadHistory();
    addUserMessage(question, selection ? selection.text : null);
    var reply = new AssistantMessage();
    reply.thinking();
    scrollToBottom();
    setBusy(true);
    var controller = new AbortController();
    state.controller = controller;
    var finished = false;
    var note = null;
    try {
      var payload = { message: question, stream: true };
      if (selection) {
        payload.selected_text = selection.text;
        if (selection.pageUrl && /^https?:\/\//.test(selection.pageUrl)) payload.page_url = selection.pageUrl;
      }
      var response = null;
      for (var attempt = 0; attempt < 2; attempt++) {
        if (state.conversationId) payload.conversation_id = state.conversationId;
        else delete payload.conversation_id;
        response = await apiFetch("/api/chat", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify(payload),
          signal: controller.signal,
        });
        if (response.status === 404 && payload.conversation_id) {
          // The stored conversation is gone (deleted, or owned by an expired guest): start a new one.
          setConversation(null);
          note = "The earlier conversation is no longer available, so this one starts afresh.";
          continue;
        }
        break;
      }
      if (!response.ok) throw await errorFrom(response);
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("text/event-stream") === -1) {
        var whole = await response.json();
        if (whole.conversation_id) setConversation(whole.conversation_id);
        reply.id = whole.message_id || null;
        reply.text = String(whole.answer || "");
        reply.setCitations(whole.citations);
        reply.setCoverage(whole);
        finished = true;
      } else {
        var failure = null;
        await readEvents(response, function (name, event) {
          if (name === "meta") {
            if (event.conversation_id) setConversation(event.conversation_id);
            if (event.message_id) reply.id = event.message_id;
          } else if (name === "citations") {
            // The candidate passages, numbered as the model saw them; the answer's [n] are renumbered in order
            // of first use and arrive with the deltas, so these are only kept for a client that sends no more.
            reply.candidates = Array.isArray(event) ? event : event.citations;
          } else if (name === "delta") {
            if (Array.isArray(event.citations) && event.citations.length) reply.addCitations(event.citations);
            if (typeof event.text === "string") reply.append(event.text);
          } else if (name === "done") {
            if (Array.isArray(event.citations)) reply.setCitations(event.citations);
            if (event.message_id) reply.id = event.message_id;
            if (typeof event.answer === "string" && event.answer) reply.text = event.answer;
            reply.setCoverage(event);
            finished = true;
          } else if (name === "error") {
            var text =
              typeof event.message === "string" && event.message
                ? event.message
                : "The answer could not be completed. Please try again.";
            if (typeof event.retry_after === "number" && !/\btry again in\b/i.test(text)) {
              text = text.replace(/\s*$/, "") + " Please try again " + inWords(event.retry_after) + ".";
            }
            failure = new ChatError(text, event.status || 0, event.code);
          }
        });
        if (failure) throw failure;
        if (!finished) throw new ChatError("The connection closed before the answer was complete. Please try again.");
      }
      reply.finish({ note: note });
      announce("Answer ready.");
    } catch (err) {
      var error = networkError(err);
      if (error.code === "aborted") {
        reply.finish({ note: "Stopped." });
      } else {
        reply.fail(error);
        announce(error.message);
      }
    } finally {
      if (state.controller === controller) state.controller = null;
      setBusy(false);
      scrollToBottom();
    }
  }

  // ---- selection chip (the text attached to the next question)
  function attachSelection(selection) {
    state.selection = selection;
    chip.hidden = !selection;
    if (selection) {
      chipText.textContent = "About: “" + truncate(selection.text.replace(/\s+/g, " "), 140) + "”";
      input.placeholder = "Ask about the selected text (Enter: “" + DEFAULT_SELECTION_QUESTION + "”)";
    } else {
      chipText.textContent = "";
      input.placeholder = "Ask a question…";
    }
  }

  // ---- open / close, focus trap
  function focusable() {
    return Array.prototype.filter.call(
      panel.querySelectorAll('a[href], button:not([disabled]), textarea:not([disabled]), [tabindex="0"]'),
      function (node) {
        return !node.hidden && node.getClientRects().length > 0;
      }
    );
  }

  function open(options) {
    if (!state.open) {
      state.open = true;
      panel.hidden = false;
      root.classList.add("bkc-is-open");
      launcher.setAttribute("aria-expanded", "true");
      session.set("open", "1");
      loadHistory();
    }
    if (!options || options.focus !== false) input.focus();
  }

  function close() {
    if (!state.open) return;
    state.open = false;
    panel.hidden = true;
    root.classList.remove("bkc-is-open");
    launcher.setAttribute("aria-expanded", "false");
    session.set("open", null);
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (state.open) close();
    else open();
  });
  closeButton.addEventListener("click", close);
  newButton.addEventListener("click", newConversation);
  chipRemove.addEventListener("click", function () {
    attachSelection(null);
    input.focus();
  });

  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      event.preventDefault();
      close();
      return;
    }
    if (event.key !== "Tab") return;
    var nodes = focusable();
    if (!nodes.length) return;
    var first = nodes[0];
    var last = nodes[nodes.length - 1];
    if (event.shiftKey && (document.activeElement === first || !panel.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });

  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }

  input.addEventListener("input", autosize);
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (state.busy) {
      if (state.controller) state.controller.abort();
      return;
    }
    var question = input.value;
    var selection = state.selection;
    if (!question.trim() && !selection) return;
    input.value = "";
    autosize();
    attachSelection(null);
    ask(question, selection);
  });

  // ---- "Ask about this" on page selections
  function currentSelection() {
    var selection = window.getSelection ? window.getSelection() : null;
    if (!selection || selection.isCollapsed || !selection.rangeCount) return null;
    var range = selection.getRangeAt(0);
    if (root.contains(range.commonAncestorContainer)) return null; // selecting inside the widget itself
    var text = selection.toString().replace(/\s+\n/g, "\n").trim();
    if (text.length < 3) return null;
    var rect = range.getBoundingClientRect();
    if (!rect || (!rect.width && !rect.height)) return null;
    return { text: text.slice(0, MAX_SELECTION), rect: rect };
  }

  var selectionTimer = 0;
  function updateSelectionButton() {
    window.clearTimeout(selectionTimer);
    selectionTimer = window.setTimeout(function () {
      var found = currentSelection();
      if (!found) {
        askSelection.hidden = true;
        state.pendingSelection = null;
        return;
      }
      state.pendingSelection = { text: found.text, pageUrl: pageAddress() };
      askSelection.hidden = false;
      var width = askSelection.offsetWidth || 120;
      var height = askSelection.offsetHeight || 32;
      var top = found.rect.bottom + 8;
      if (top + height > window.innerHeight - 8) top = Math.max(8, found.rect.top - height - 8);
      var left = found.rect.left + found.rect.width / 2 - width / 2;
      left = Math.max(8, Math.min(left, window.innerWidth - width - 8));
      askSelection.style.top = Math.round(top) + "px";
      askSelection.style.left = Math.round(left) + "px";
    }, 120);
  }

  document.addEventListener("selectionchange", updateSelectionButton);
  window.addEventListener("scroll", updateSelectionButton, { passive: true });
  window.addEventListener("resize", updateSelectionButton, { passive: true });
  askSelection.addEventListener("mousedown", function (event) {
    event.preventDefault(); // keep the page selection while the button is pressed
  });
  askSelection.addEventListener("click", function () {
    var pending = state.pendingSelection;
    if (!pending) return;
    askSelection.hidden = true;
    attachSelection(pending);
    open();
    announce("Selected text attached. Type a question, or press Enter to have it explained.");
  });

  // ---------------------------------------------------------------- the chapter's own tools
  // "Personalise for me" and a translation button at the top of the chapter, for signed-in readers. They replace
  // the chapter's content in place, section by section as the server sends them, and "Show original" puts the
  // page's own nodes back. Hidden when the server has no language model (GET /api/features).
  var PAGE_TOOLS = data.pageTools !== "off";
  var CHAPTER_SELECTOR =
    data.chapter || ".theme-doc-markdown, article .markdown, .demo-article, article, main";
  var RTL_FONTS =
    '"Noto Nastaliq Urdu", "Jameel Noori Nastaleeq", "Noto Naskh Arabic", "Noto Sans Arabic", "Segoe UI", Tahoma, "DejaVu Sans", sans-serif';
  var LEVELS = {
    software: [
      ["none", "I have never programmed"],
      ["beginner", "Beginner programmer"],
      ["intermediate", "I program regularly"],
      ["advanced", "Advanced software engineer"],
    ],
    hardware: [
      ["none", "No hardware experience"],
      ["hobbyist", "I build electronics as a hobby"],
      ["professional", "I work with hardware"],
    ],
  };

  var reader = {
    // A signed-in reader's tokens, separate from the chat's guest token: {access, refresh, expiresAt, email}.
    get: function () {
      var value = storage.get("reader");
      return value && typeof value.access === "string" ? value : null;
    },
    set: function (value) {
      storage.set("reader", value);
    },
  };

  function keepTokens(issued, email) {
    var lifetime = typeof issued.expires_in === "number" ? issued.expires_in : 900;
    reader.set({
      access: issued.access_token,
      refresh: issued.refresh_token,
      expiresAt: Date.now() + lifetime * 1000,
      email: email,
    });
  }

  async function readerToken() {
    var current = reader.get();
    if (!current) return null;
    if (current.expiresAt - 30000 > Date.now()) return current.access;
    var response = await fetch(API + "/api/auth/refresh", {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: current.refresh }),
      credentials: "omit",
    });
    if (!response.ok) {
      reader.set(null); // the session ended (signed out elsewhere, or expired): sign in again
      return null;
    }
    keepTokens(await response.json(), current.email);
    return reader.get().access;
  }

  async function readerFetch(path, options) {
    var token = await readerToken();
    if (!token) throw new ChatError("Sign in to use this.", 401, "sign-in-required");
    var headers = Object.assign({}, options.headers || {}, { Authorization: "Bearer " + token });
    return fetch(API + path, Object.assign({}, options, { headers: headers, credentials: "omit" }));
  }

  async function jsonPost(path, body) {
    return fetch(API + path, {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
    });
  }

  async function problemText(response, fallback) {
    try {
      var body = await response.json();
      if (body && typeof body.detail === "string") return body.detail;
      if (body && Array.isArray(body.errors) && body.errors.length) return fallback;
    } catch (e) {
      /* not JSON */
    }
    return fallback;
  }

  async function pageError(response, kind) {
    var what = kind === "translate" ? "translated" : "personalised";
    var wait = retryAfterSeconds(response);
    if (response.status === 429) {
      return new ChatError(
        "You have had many chapters " + what + " recently. " +
          (wait !== null ? "Please try again " + inWords(wait) + "." : "Please try again later."),
        429,
        "rate-limited"
      );
    }
    var fallback = "The chapter could not be " + what + " (HTTP " + response.status + "). Please try again.";
    return new ChatError(await problemText(response, fallback), response.status, "");
  }

  // Server HTML is rendered with raw HTML escaped; it is still rebuilt here from a short list of elements and
  // attributes, so nothing the server sends can run script on the book's page.
  var SAFE_TAGS = /^(P|H[1-6]|UL|OL|LI|PRE|CODE|EM|STRONG|A|IMG|BLOCKQUOTE|TABLE|THEAD|TBODY|TR|TH|TD|BR|HR|DEL|S|SUP|SUB)$/;

  function safeUrl(value) {
    if (!value) return null;
    if (/^#/.test(value)) return value;
    var url = httpUrl(value, location.href);
    if (!url) return null;
    return url.href;
  }

  function sanitize(html) {
    var parsed = new DOMParser().parseFromString("<body>" + html + "</body>", "text/html");
    var out = document.createDocumentFragment();
    function copy(node, parent) {
      if (node.nodeType === 3) {
        parent.appendChild(document.createTextNode(node.nodeValue));
        return;
      }
      if (node.nodeType !== 1) return;
      var target = parent;
      if (SAFE_TAGS.test(node.tagName)) {
        target = document.createElement(node.tagName.toLowerCase());
        if (/^H[1-6]$/.test(node.tagName) && node.id) target.id = node.id;
        if (node.tagName === "A") {
          var href = safeUrl(node.getAttribute("href"));
          if (href) {
            target.setAttribute("href", href);
            if (!/^#/.test(href) && new URL(href).origin !== location.origin) target.rel = "noopener noreferrer";
          }
        }
        if (node.tagName === "IMG") {
          var src = safeUrl(node.getAttribute("src"));
          if (!src) return;
          target.setAttribute("src", src);
          target.setAttribute("alt", node.getAttribute("alt") || "");
          target.setAttribute("loading", "lazy");
        }
        if (node.tagName === "CODE" && /^language-[\w+-]{1,40}$/.test(node.className)) target.className = node.className;
        parent.appendChild(target);
      }
      Array.prototype.forEach.call(node.childNodes, function (child) {
        copy(child, target);
      });
    }
    Array.prototype.forEach.call(parsed.body.childNodes, function (child) {
      copy(child, out);
    });
    return out;
  }

  function languageLabel(tag) {
    if (data.languageLabel) return data.languageLabel.slice(0, 40);
    try {
      var name = new Intl.DisplayNames([tag], { type: "language" }).of(tag);
      if (name) return name;
    } catch (e) {
      /* an old browser: the tag itself */
    }
    return tag;
  }

  function PageTools(container, features) {
    this.container = container;
    this.features = features;
    this.language = (data.language || features.default_language || "ur").slice(0, 35);
    this.original = null; // the chapter's own nodes while ours are shown
    this.rewritten = null; // our wrapper, kept so "Show …" can come back without a new request
    this.showing = "original";
    this.controller = null;
    this.me = null;
    this.build();
  }

  PageTools.prototype.build = function () {
    var self = this;
    var bar = el("div", "bkc-root bkc-pagebar");
    bar.setAttribute("role", "toolbar");
    bar.setAttribute("aria-label", "Chapter tools");
    bar.setAttribute("data-bookchat-pagebar", "");
    function button(label, className) {
      var node = el("button", "bkc-pagebutton " + className, label);
      node.type = "button";
      bar.appendChild(node);
      return node;
    }
    this.personalizeButton = button("Personalise for me", "bkc-personalize");
    this.translateButton = button(languageLabel(this.language), "bkc-translate");
    this.translateButton.lang = this.language;
    this.toggleButton = button("Show original", "bkc-show-original");
    this.toggleButton.hidden = true;
    this.accountButton = button("Sign in", "bkc-account");
    this.status = el("span", "bkc-pagestatus");
    this.status.setAttribute("role", "status");
    this.status.setAttribute("aria-live", "polite");
    bar.appendChild(this.status);
    this.form = el("form", "bkc-pageform");
    this.form.hidden = true;
    bar.appendChild(this.form);
    this.bar = bar;
    if (!this.features.personalize) this.personalizeButton.hidden = true;
    if (!this.features.translate) this.translateButton.hidden = true;
    this.personalizeButton.addEventListener("click", function () {
      if (!self.me || !self.me.background) {
        self.openForm("profile", "Tell the book about your background first; it is asked once.");
        return;
      }
      self.run("personalize");
    });
    this.translateButton.addEventListener("click", function () {
      self.run("translate");
    });
    this.toggleButton.addEventListener("click", function () {
      self.toggle();
    });
    this.accountButton.addEventListener("click", function () {
      if (!self.form.hidden) return self.closeForm();
      self.openForm(reader.get() ? "profile" : "signin");
    });
    this.container.parentNode.insertBefore(bar, this.container);
    this.refreshAccount();
  };

  var SIGN_IN_REASON = "Sign in to personalise or translate this chapter.";

  PageTools.prototype.updateButtons = function () {
    var blocked = !(this.me && this.me.user) && !this.features.guests;
    [this.personalizeButton, this.translateButton].forEach(function (node) {
      node.disabled = blocked;
      node.title = blocked ? SIGN_IN_REASON : "";
    });
    return blocked;
  };

  PageTools.prototype.setSignedIn = function (me) {
    this.me = me;
    var signedIn = !!(me && me.user);
    this.accountButton.textContent = signedIn ? "Profile · " + (me.user.display_name || me.user.email) : "Sign in";
    this.bar.classList.toggle("bkc-signed-out", !signedIn);
    if (this.updateButtons()) this.say(SIGN_IN_REASON);
    else if (this.status.textContent === SIGN_IN_REASON) this.say("");
  };

  PageTools.prototype.refreshAccount = async function () {
    if (!reader.get()) return this.setSignedIn(null);
    try {
      var response = await readerFetch("/api/auth/me", { headers: { Accept: "application/json" } });
      if (!response.ok) {
        if (response.status === 401) reader.set(null);
        return this.setSignedIn(null);
      }
      this.setSignedIn(await response.json());
    } catch (e) {
      this.setSignedIn(null);
    }
  };

  PageTools.prototype.say = function (text, isError) {
    this.status.textContent = text;
    this.status.classList.toggle("bkc-pagestatus-error", !!isError);
  };

  PageTools.prototype.field = function (label, node) {
    var wrap = el("label", "bkc-pagefield");
    wrap.appendChild(el("span", "", label));
    wrap.appendChild(node);
    this.form.appendChild(wrap);
    return node;
  };

  PageTools.prototype.select = function (name, current) {
    var node = el("select");
    node.name = name;
    LEVELS[name].forEach(function (option) {
      var item = el("option", "", option[1]);
      item.value = option[0];
      if (option[0] === current) item.selected = true;
      node.appendChild(item);
    });
    return node;
  };

  PageTools.prototype.openForm = function (mode, message) {
    var self = this;
    var form = this.form;
    form.textContent = "";
    form.hidden = false;
    if (message) form.appendChild(el("p", "bkc-pagehint", message));
    var background = (this.me && this.me.background) || {};
    var email = null;
    var password = null;
    if (mode === "signin") {
      email = this.field("Email", el("input"));
      email.type = "email";
      email.name = "email";
      email.required = true;
      email.maxLength = 320;
      email.autocomplete = "username";
      password = this.field("Password", el("input"));
      password.type = "password";
      password.name = "password";
      password.required = true;
      password.maxLength = 1024;
      password.autocomplete = "current-password";
    }
    var software = this.field("Software experience", this.select("software", background.software));
    var hardware = this.field("Hardware experience", this.select("hardware", background.hardware));
    var interests = this.field("Interests (optional)", el("input"));
    interests.name = "interests";
    interests.maxLength = 300;
    interests.value = background.interests || "";
    var actions = el("div", "bkc-pageactions");
    function action(label, handler, primary) {
      var node = el("button", "bkc-pagebutton" + (primary ? " bkc-primary" : ""), label);
      node.type = primary ? "submit" : "button";
      if (!primary) node.addEventListener("click", handler);
      actions.appendChild(node);
      return node;
    }
    form.appendChild(actions);
    var chosen = { software: software, hardware: hardware, interests: interests };
    form.onsubmit = function (event) {
      event.preventDefault();
      if (mode === "signin") self.signIn(email.value, password.value, chosen, false);
      else self.saveProfile(chosen);
    };
    if (mode === "signin") {
      action("Sign in", null, true);
      action("Create account", function () {
        if (!form.reportValidity()) return;
        self.signIn(email.value, password.value, chosen, true);
      });
    } else {
      action("Save", null, true);
      action("Sign out", function () {
        self.signOut();
      });
    }
    action("Close", function () {
      self.closeForm();
    });
    (email || software).focus();
  };

  PageTools.prototype.closeForm = function () {
    this.form.hidden = true;
    this.form.textContent = "";
  };

  function backgroundOf(chosen) {
    var background = { software: chosen.software.value, hardware: chosen.hardware.value };
    var interests = chosen.interests.value.trim();
    if (interests) background.interests = interests.slice(0, 300);
    return background;
  }

  PageTools.prototype.signIn = async function (email, password, chosen, create) {
    try {
      if (create) {
        var created = await jsonPost("/api/auth/register", {
          email: email,
          password: password,
          background: backgroundOf(chosen),
        });
        if (!created.ok) return this.say(await problemText(created, "The account could not be created."), true);
      }
      var login = await jsonPost("/api/auth/login", { email: email, password: password });
      if (!login.ok) return this.say(await problemText(login, "Signing in failed."), true);
      keepTokens(await login.json(), email);
      this.closeForm();
      await this.refreshAccount();
      this.say(create ? "Account created; you are signed in." : "Signed in.");
    } catch (e) {
      this.say("Cannot reach the server. Check your connection and try again.", true);
    }
  };

  PageTools.prototype.saveProfile = async function (chosen) {
    try {
      var response = await readerFetch("/api/auth/me", {
        method: "PATCH",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify({ background: backgroundOf(chosen) }),
      });
      if (!response.ok) return this.say(await problemText(response, "The profile could not be saved."), true);
      this.setSignedIn(await response.json());
      this.closeForm();
      this.say("Profile saved.");
    } catch (e) {
      this.say(e instanceof ChatError ? e.message : "Cannot reach the server.", true);
    }
  };

  PageTools.prototype.signOut = async function () {
    var current = reader.get();
    reader.set(null);
    this.closeForm();
    this.setSignedIn(null);
    if (current) {
      try {
        await jsonPost("/api/auth/logout", { refresh_token: current.refresh });
      } catch (e) {
        /* the tokens are forgotten here either way */
      }
    }
  };

  PageTools.prototype.toggle = function () {
    if (this.showing === "original" && this.rewritten) {
      this.showRewritten();
    } else {
      this.showOriginal();
    }
  };

  PageTools.prototype.showOriginal = function () {
    if (!this.original) return;
    var container = this.container;
    container.textContent = "";
    this.original.forEach(function (node) {
      container.appendChild(node);
    });
    this.showing = "original";
    this.toggleButton.textContent = this.rewritten ? "Show " + this.rewrittenLabel : "Show original";
  };

  PageTools.prototype.showRewritten = function () {
    if (!this.original) this.original = Array.prototype.slice.call(this.container.childNodes);
    this.container.textContent = "";
    this.container.appendChild(this.rewritten);
    this.showing = "rewritten";
    this.toggleButton.hidden = false;
    this.toggleButton.textContent = "Show original";
  };

  PageTools.prototype.run = async function (kind) {
    var self = this;
    if (this.controller) this.controller.abort();
    var controller = new AbortController();
    this.controller = controller;
    var body = { page: pageAddress(), stream: true };
    if (kind === "translate") body.language = this.language;
    this.say(kind === "translate" ? "Translating…" : "Personalising…");
    [this.personalizeButton, this.translateButton].forEach(function (node) {
      node.disabled = true;
    });
    var wrapper = el("div", "bkc-rewritten");
    wrapper.setAttribute("data-bookchat-kind", kind);
    var slots = [];
    var total = 0;
    var done = 0;
    try {
      var response = await readerFetch("/api/pages/" + kind, {
        method: "POST",
        headers: { Accept: "text/event-stream", "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) throw await pageError(response, kind);
      await readEvents(response, function (name, event) {
        if (name === "meta") {
          total = event.section_count;
          if (event.direction === "rtl") {
            // Inline styles: the widget's stylesheet styles only its own nodes, and this is the book's page.
            wrapper.dir = "rtl";
            wrapper.classList.add("bkc-page-rtl");
            wrapper.style.fontFamily = RTL_FONTS;
            wrapper.style.lineHeight = "2.2"; // Nastaliq's tall letters need more room than Latin text
          }
          if (event.language) wrapper.lang = event.language;
          for (var i = 0; i < total; i += 1) {
            var slot = el("div", "bkc-page-section bkc-pending");
            wrapper.appendChild(slot);
            slots.push(slot);
          }
          self.rewritten = wrapper;
          self.rewrittenLabel = kind === "translate" ? languageLabel(self.language) : "personalised";
          self.showRewritten();
        } else if (name === "delta") {
          var target = slots[event.index];
          if (target && target.classList.contains("bkc-pending")) {
            if (!target.firstChild) {
              var draft = el("p", "bkc-page-draft");
              draft.style.opacity = "0.6";
              draft.style.whiteSpace = "pre-wrap";
              target.appendChild(draft);
            }
            target.firstChild.textContent += event.text;
          }
        } else if (name === "section") {
          var slotNode = slots[event.index];
          if (!slotNode) return;
          slotNode.textContent = "";
          slotNode.classList.remove("bkc-pending");
          slotNode.appendChild(sanitize(event.html));
          if (wrapper.dir === "rtl") {
            // Code reads left to right whatever the language around it.
            Array.prototype.forEach.call(slotNode.querySelectorAll("pre, code"), function (node) {
              node.dir = "ltr";
              if (node.tagName === "PRE") {
                node.style.textAlign = "left";
                node.style.lineHeight = "1.5";
              }
            });
            Array.prototype.forEach.call(slotNode.querySelectorAll("h1, h2, h3, h4, h5, h6"), function (node) {
              node.style.lineHeight = "1.9";
            });
          }
          if (event.note) slotNode.appendChild(el("p", "bkc-page-note", event.note));
          done += 1;
          self.say("Section " + done + " of " + total + (event.cached ? " (saved copy)" : "") + "…");
        } else if (name === "done") {
          self.say(
            (kind === "translate" ? "Translated" : "Personalised") +
              (event.cached ? " (from the saved copy)." : ".") +
              (event.fallbacks ? " " + event.fallbacks + " section(s) shown as written." : "")
          );
        } else if (name === "error") {
          throw new ChatError(event.message || "The language model failed.", 502, event.code);
        }
      });
    } catch (err) {
      var error = networkError(err);
      this.say(error.message, true);
      if (!done && this.original) this.showOriginal();
    } finally {
      if (this.controller === controller) this.controller = null;
      this.updateButtons();
    }
  };

  async function startPageTools() {
    if (!PAGE_TOOLS) return;
    // The selectors in the order given (a selector list would match whichever comes first in the page).
    var container = null;
    CHAPTER_SELECTOR.split(",").some(function (selector) {
      try {
        container = document.querySelector(selector.trim());
      } catch (e) {
        container = null; // not a valid selector: try the next
      }
      return !!container;
    });
    if (!container || !container.parentNode) return;
    try {
      var response = await fetch(API + "/api/features", { headers: { Accept: "application/json" }, credentials: "omit" });
      if (!response.ok) return;
      var features = (await response.json()).pages;
      if (!features || (!features.personalize && !features.translate)) return; // no model: no buttons at all
      window.BookchatWidget.pageTools = new PageTools(container, features);
    } catch (e) {
      /* the server is unreachable: the chat shows that; the chapter stays as it is */
    }
  }

  // ---- start
  // A link to the page with ?bookchat-ask=<question> (the insights dashboard's "Ask" links) opens the chat
  // with the question typed in, for the reader to send; nothing is sent on their behalf.
  var ASK_PARAM = "bookchat-ask";

  function mount() {
    document.body.appendChild(root);
    var asked = new URLSearchParams(window.location.search).get(ASK_PARAM);
    if (asked) {
      input.value = asked.slice(0, MAX_QUESTION);
      open();
    } else if (session.get("open") === "1") open({ focus: false });
  }

  function start() {
    if (!CSS_URL) return mount();
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = CSS_URL.href;
    // Mount only once styled, so the host page never flashes an unstyled panel; mount anyway if CSS fails.
    link.addEventListener("load", mount, { once: true });
    link.addEventListener(
      "error",
      function () {
        root.classList.add("bkc-unstyled");
        mount();
      },
      { once: true }
    );
    document.head.appendChild(link);
  }

  window.BookchatWidget = {
    version: "1",
    open: open,
    close: close,
    newConversation: newConversation,
    ask: function (question, options) {
      open({ focus: false });
      var selectedText = options && options.selectedText ? String(options.selectedText).slice(0, MAX_SELECTION) : "";
      return ask(question, selectedText ? { text: selectedText, pageUrl: pageAddress() } : null);
    },
    renderMarkdown: renderMarkdown, // exposed for tests and for hosts that want the same rendering
    pageTools: null, // the chapter's buttons, once the server says it can personalise and translate
    // A book with its own login hands over the reader's tokens (the reply of POST /api/auth/login), or null.
    signIn: function (tokens, email) {
      if (tokens && typeof tokens.access_token === "string" && typeof tokens.refresh_token === "string") {
        keepTokens(tokens, email ? String(email).slice(0, 320) : "");
      } else {
        reader.set(null);
      }
      var tools = window.BookchatWidget.pageTools;
      return tools ? tools.refreshAccount() : Promise.resolve();
    },
  };

  function startAll() {
    start();
    startPageTools();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startAll, { once: true });
  else startAll();
})();

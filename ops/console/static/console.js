// The console's only script: grid keyboard navigation, confirm/dismiss without a page load,
// and the live decision feed. Pages work without it (plain forms and links).
(function () {
  "use strict";
  var csrf = document.body.getAttribute("data-csrf") || "";

  function cards() {  // the visible ones: hidden reviewed items are skipped by the keys too
    return Array.prototype.slice.call(document.querySelectorAll(".card")).filter(function (c) {
      return c.offsetParent !== null;
    });
  }

  // Progress through a queue page ("3 of 8 labelled") and "hide reviewed", remembered per browser.
  function queueCards() {
    return Array.prototype.slice.call(document.querySelectorAll(".card[data-href]"));
  }
  function progress() {
    var el = document.querySelector(".progress");
    if (!el) return;
    var all = queueCards(), done = all.filter(function (c) { return c.hasAttribute("data-label"); });
    el.textContent = done.length + " of " + all.length + " labelled";
  }
  var hide = document.querySelector(".hide-reviewed");
  if (hide) {
    hide.checked = window.localStorage && localStorage.getItem("sludge.hideReviewed") === "1";
    document.body.classList.toggle("hiding-reviewed", hide.checked);
    hide.addEventListener("change", function () {
      document.body.classList.toggle("hiding-reviewed", hide.checked);
      if (window.localStorage) localStorage.setItem("sludge.hideReviewed", hide.checked ? "1" : "0");
    });
  }
  progress();

  // After a label, the next item still to label takes the focus (the queue flows).
  function advance(card) {
    var list = queueCards(), i = list.indexOf(card);
    for (var n = 1; n <= list.length; n++) {
      var next = list[(i + n) % list.length];
      if (!next.hasAttribute("data-label") && next.offsetParent !== null) {
        next.focus();
        next.scrollIntoView({block: "nearest"});
        return;
      }
    }
  }

  function columns(list) {
    if (list.length < 2) return 1;
    var top = list[0].getBoundingClientRect().top, n = 0;
    for (var i = 0; i < list.length && list[i].getBoundingClientRect().top === top; i++) n++;
    return Math.max(1, n);
  }

  function say(status, ok, text) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("error", !ok);
    status.setAttribute("role", ok ? "status" : "alert");  // a failure is announced at once
  }

  var lastLabelled = null;  // the form of the last label made on this page: `u` undoes it

  function undoButton(form, status) {
    var b = document.createElement("button");
    b.type = "button"; b.className = "undo"; b.textContent = "Undo";
    b.addEventListener("click", function () { undo(form); });
    status.appendChild(document.createTextNode(" "));
    status.appendChild(b);
  }

  function undo(form) {
    var status = form.querySelector(".label-status");
    var data = new FormData(form);
    data.set("verdict", "retract");
    return fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                               headers: {"Accept": "application/json", "X-CSRF-Token": csrf}})
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (res) {
        say(status, res[0], res[0] ? "undone: no label in force" : "undo failed: " + res[1].error.message);
        var card = form.closest(".card");
        if (card && res[0]) { card.removeAttribute("data-label"); progress(); }
        if (res[0] && lastLabelled === form) lastLabelled = null;
      })
      .catch(function (e) { say(status, false, "undo failed: " + e); });
  }

  function sendLabel(form, verdict) {
    var data = new FormData(form);
    data.set("verdict", verdict);
    var status = form.querySelector(".label-status");
    var select = form.querySelector(".policy-select");
    if (select && !select.value) {  // nothing flagged it: never guess the policy
      say(status, false, "choose the policy to label under first");
      select.focus();
      return Promise.resolve();
    }
    return fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                               headers: {"Accept": "application/json", "X-CSRF-Token": csrf}})
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (res) {
        say(status, res[0], res[0] ? (verdict === "confirm" ? "confirmed ✓" : "dismissed ✓") + " under " + data.get("policy")
                                   : "failed: " + res[1].error.message);
        if (res[0] && status) { undoButton(form, status); lastLabelled = form; }
        var card = form.closest(".card");
        if (card && res[0]) {
          card.setAttribute("data-label", verdict);
          progress();
          if (card.contains(document.activeElement) || document.activeElement === card) advance(card);
        }
      })
      .catch(function (e) { say(status, false, "failed: " + e); });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.classList && form.classList.contains("confirm-first") &&
        !window.confirm(form.getAttribute("data-confirm") || "Are you sure?")) {
      ev.preventDefault();
      return;
    }
    if (!form.classList || !form.classList.contains("label-form")) return;
    ev.preventDefault();
    var btn = ev.submitter || document.activeElement;
    sendLabel(form, btn && btn.value ? btn.value : "confirm");
  });

  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var list = cards();
    if (!list.length) return;
    var i = list.indexOf(document.activeElement.closest ? document.activeElement.closest(".card") : null);
    var cols = columns(list), next = null;
    switch (ev.key) {
      case "ArrowRight": case "l": next = i < 0 ? 0 : Math.min(list.length - 1, i + 1); break;
      case "ArrowLeft": case "h": next = i < 0 ? 0 : Math.max(0, i - 1); break;
      case "ArrowDown": case "j": next = i < 0 ? 0 : Math.min(list.length - 1, i + cols); break;
      case "ArrowUp": case "k": next = i < 0 ? 0 : Math.max(0, i - cols); break;
      case "Enter":
        if (i >= 0 && list[i].getAttribute("data-href") && document.activeElement === list[i]) {
          window.location.href = list[i].getAttribute("data-href");
          ev.preventDefault();
        }
        return;
      case "u":
        if (lastLabelled) { undo(lastLabelled); ev.preventDefault(); }
        return;
      case "c": case "d":
        if (i >= 0) {
          var form = list[i].querySelector(".label-form");
          if (form) { sendLabel(form, ev.key === "c" ? "confirm" : "dismiss"); ev.preventDefault(); }
        }
        return;
      default: return;
    }
    ev.preventDefault();
    list[next].focus();
    list[next].scrollIntoView({block: "nearest"});
  });

  // Bank: before saving a threshold, say what it would flip among recent decisions and sweep candidates.
  Array.prototype.forEach.call(document.querySelectorAll("form.policy-form"), function (form) {
    var input = form.querySelector("input[name=threshold]"), out = form.querySelector(".preview"), timer = null;
    if (!input || !out) return;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        fetch(form.getAttribute("data-preview") + "?threshold=" + encodeURIComponent(input.value),
              {credentials: "same-origin", headers: {"Accept": "application/json"}})
          .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
          .then(function (res) {
            if (!res[0]) { out.textContent = res[1].error.message; return; }
            var d = res[1].decisions, c = res[1].candidates;
            out.textContent = "at " + d.new + ": " + d.up + " of " + d.scored + " recent decisions would newly reach it, " +
              d.down + " would fall below; sweep candidates: " + c.up + " up, " + c.down + " down";
          })
          .catch(function () { out.textContent = ""; });
      }, 300);
    });
  });

  // Live decisions: poll the feed and put new rows on top.
  var table = document.getElementById("decisions");
  if (table && table.getAttribute("data-feed")) {  // an older page is not live
    var after = table.getAttribute("data-after") || "";
    var tmpl = document.getElementById("label-template");
    var body = table.querySelector("tbody");
    var cell = function (text) { var td = document.createElement("td"); td.textContent = text == null ? "" : text; return td; };
    var live = document.querySelector(".live");
    var state = function (ok, text) {  // the badge says when the feed is not live, and why
      if (!live) return;
      live.textContent = text;
      live.classList.toggle("error", !ok);
    };
    var timer = setInterval(function () {
      fetch(table.getAttribute("data-feed") + (after ? "?after=" + encodeURIComponent(after) : ""),
            {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) {
          if (r.status === 401 || r.status === 403) {
            clearInterval(timer);
            state(false, "stopped: your session has ended, sign in again to see new decisions");
            return {rows: []};
          }
          if (!r.ok) { state(false, "paused: the server is not answering (retrying)"); return {rows: []}; }
          state(true, "live");
          return r.json();
        })
        .then(function (j) {
          var rows = j.rows || [];
          if (!rows.length) return;
          after = rows[0].entry;
          var empty = body.querySelector(".empty");
          if (empty) empty.remove();
          rows.slice().reverse().forEach(function (r) {
            var tr = document.createElement("tr");
            tr.className = "card decision-" + r.decision;
            tr.tabIndex = 0;
            tr.setAttribute("data-href", "/ui/videos/" + r.video_id);
            var th = document.createElement("td"); th.className = "thumb";
            if (r.thumb) {
              var img = document.createElement("img"); img.src = r.thumb; img.width = 96;
              img.alt = "first sampled frame of " + (r.name || (r.video_id || "").slice(0, 12));
              th.appendChild(img);
            }
            tr.appendChild(th);
            tr.appendChild(cell(r.at_text));
            var a = document.createElement("a"); a.href = "/ui/videos/" + r.video_id;
            a.textContent = (r.video_id || "").slice(0, 12);
            var td = document.createElement("td"); td.appendChild(a); tr.appendChild(td);
            tr.appendChild(cell(r.name));
            var strong = document.createElement("strong"); strong.textContent = r.decision;
            td = document.createElement("td"); td.appendChild(strong); tr.appendChild(td);
            tr.appendChild(cell(r.stage));
            var pol = cell((r.policies || []).join(", ")); pol.className = "policies"; tr.appendChild(pol);
            tr.appendChild(cell(r.layout)); tr.appendChild(cell(r.reason));
            td = document.createElement("td");
            if (tmpl) {
              var frag = tmpl.content.cloneNode(true);
              frag.querySelector("input[name=video_id]").value = r.video_id;
              var sel = frag.querySelector(".policy-select");  // the policy that flagged this row, if any
              if (sel && r.policies && r.policies.length) sel.value = r.policies[0];
              td.appendChild(frag);
            }
            tr.appendChild(td);
            body.insertBefore(tr, body.firstChild);
          });
          progress();
        })
        .catch(function () { state(false, "paused: the server cannot be reached (retrying)"); });
    }, 3000);
  }
})();

// The console's only script: grid keyboard navigation, confirm/dismiss without a page load,
// and the live decision feed. Pages work without it (plain forms and links).
(function () {
  "use strict";
  var csrf = document.body.getAttribute("data-csrf") || "";

  function cards() { return Array.prototype.slice.call(document.querySelectorAll(".card")); }

  function columns(list) {
    if (list.length < 2) return 1;
    var top = list[0].getBoundingClientRect().top, n = 0;
    for (var i = 0; i < list.length && list[i].getBoundingClientRect().top === top; i++) n++;
    return Math.max(1, n);
  }

  function sendLabel(form, verdict) {
    var data = new FormData(form);
    data.set("verdict", verdict);
    var status = form.querySelector(".label-status");
    return fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                               headers: {"Accept": "application/json", "X-CSRF-Token": csrf}})
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (res) {
        if (status) status.textContent = res[0] ? (verdict === "confirm" ? "confirmed ✓" : "dismissed ✓")
                                                : ("failed: " + res[1].error.message);
        var card = form.closest(".card");
        if (card && res[0]) card.setAttribute("data-label", verdict);
      })
      .catch(function (e) { if (status) status.textContent = "failed: " + e; });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
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

  // Live decisions: poll the feed and put new rows on top.
  var table = document.getElementById("decisions");
  if (table) {
    var after = table.getAttribute("data-after") || "";
    var tmpl = document.getElementById("label-template");
    var body = table.querySelector("tbody");
    var cell = function (text) { var td = document.createElement("td"); td.textContent = text == null ? "" : text; return td; };
    setInterval(function () {
      fetch(table.getAttribute("data-feed") + (after ? "?after=" + encodeURIComponent(after) : ""),
            {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.ok ? r.json() : {rows: []}; })
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
            tr.appendChild(cell(r.at_text));
            var a = document.createElement("a"); a.href = "/ui/videos/" + r.video_id;
            a.textContent = (r.video_id || "").slice(0, 12);
            var td = document.createElement("td"); td.appendChild(a); tr.appendChild(td);
            tr.appendChild(cell(r.name));
            var strong = document.createElement("strong"); strong.textContent = r.decision;
            td = document.createElement("td"); td.appendChild(strong); tr.appendChild(td);
            tr.appendChild(cell(r.stage)); tr.appendChild(cell((r.policies || []).join(", ")));
            tr.appendChild(cell(r.layout)); tr.appendChild(cell(r.reason));
            td = document.createElement("td");
            if (tmpl) {
              var frag = tmpl.content.cloneNode(true);
              frag.querySelector("input[name=video_id]").value = r.video_id;
              td.appendChild(frag);
            }
            tr.appendChild(td);
            body.insertBefore(tr, body.firstChild);
          });
        })
        .catch(function () {});
    }, 3000);
  }
})();

// damas dashboard: live updates from the change feed, without a reload.
//
// The page says where it is mounted (data-base) and the feed position it was drawn at
// (data-since). An EventSource on <base>/api/events/?since=N receives `change` events
// ({seq, _id, deleted, element?}); the browser resumes with Last-Event-ID after a
// disconnect. Changed files shown in the table get their cells from <base>/cells (the
// server computes states, so the page and the command line always agree); on the
// sites and folders pages, a change redraws the page's main part from the server.
// A change of a volume (data-volumes: their ids) may start or end a transfer bucket,
// which turns queued cells into transferring ones and back: the queued cells are asked
// for again. Cells shown as transferring are asked for again every minute as well, so
// that the bucket of an agent that died stops showing once its heartbeat is stale.
// Every value is put in the page as text (textContent, setAttribute), never as HTML.
(function () {
  "use strict";
  var body = document.body;
  if (!body || body.dataset.live !== "on" || typeof EventSource === "undefined") {
    return;
  }
  var base = body.dataset.base || "";
  var since = body.dataset.since || "0";
  var status = document.getElementById("live");
  var pending = {};
  var volumes = Object.create(null); // ids as keys, whatever they are ("__proto__" too)
  try {
    JSON.parse(body.dataset.volumes || "[]").forEach(function (id) { volumes[id] = true; });
  } catch (e) {
    volumes = Object.create(null);
  }
  var redraw = false;
  var timer = null;

  function say(text) {
    if (status) {
      status.textContent = "live: " + text;
    }
  }

  function cellsOf(fileId) {
    var out = [];
    var cells = document.querySelectorAll("td.cell[data-file]");
    for (var i = 0; i < cells.length; i++) {
      if (cells[i].getAttribute("data-file") === fileId) {
        out.push(cells[i]);
      }
    }
    return out;
  }

  function setCell(td, st) {
    td.setAttribute("data-state", st.state);
    if (st.detail) {
      td.setAttribute("data-detail", st.detail);
    } else {
      td.removeAttribute("data-detail");
    }
    td.className = "cell s-" + st.state;
    while (td.firstChild) {
      td.removeChild(td.firstChild);
    }
    var icon = document.createElement("span");
    icon.className = "icon";
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = st.icon;
    var word = document.createElement("span");
    word.className = "word";
    word.textContent = st.text;
    if (st.state === "error") {
      var details = document.createElement("details");
      var summary = document.createElement("summary");
      summary.appendChild(icon);
      summary.appendChild(document.createTextNode(" "));
      summary.appendChild(word);
      details.appendChild(summary);
      var more = document.createElement("span");
      more.className = "more";
      more.textContent = st.more || "";
      details.appendChild(more);
      td.appendChild(details);
    } else {
      td.appendChild(icon);
      td.appendChild(document.createTextNode(" "));
      td.appendChild(word);
    }
  }

  function setLock(fileId, holder) {
    var rows = document.querySelectorAll("tr[data-file]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-file") !== fileId) {
        continue;
      }
      var td = rows[i].querySelector("td.lock");
      if (!td || td.getAttribute("data-lock") === (holder || "")) {
        continue;
      }
      td.setAttribute("data-lock", holder || "");
      td.textContent = holder ? "🔒 " + holder : "";
    }
  }

  // the files of the cells matching a selector (queued ones, transferring ones)
  function askAgain(selector) {
    var cells = document.querySelectorAll(selector);
    for (var i = 0; i < cells.length; i++) {
      pending[cells[i].getAttribute("data-file")] = true;
    }
    return cells.length > 0;
  }

  function refreshCells(ids) {
    var query = ids.map(function (id) { return "id=" + encodeURIComponent(id); }).join("&");
    return fetch(base + "/cells?" + query, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) {
          throw new Error("cells: " + r.status);
        }
        return r.json();
      }, function (e) {
        // not lost: asked for again with the next change, or in a few seconds
        ids.forEach(function (id) { pending[id] = true; });
        window.setTimeout(schedule, 3000);
        throw e;
      })
      .then(function (rows) {
        ids.forEach(function (id) {
          var row = rows[id];
          if (!row) {
            return;
          }
          cellsOf(id).forEach(function (td) {
            var st = row.states[td.getAttribute("data-site")];
            if (st) {
              setCell(td, st);
            }
          });
          setLock(id, row.lock);
        });
      });
  }

  function redrawMain() {
    return fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        var main = document.getElementById("main");
        // keep what the user is typing: redraw only when no field has focus
        if (fresh && main && !main.contains(document.activeElement)) {
          main.replaceWith(fresh);
        }
      });
  }

  var busy = false;
  var cost = 0; // how long the last update took, in ms

  function flush() {
    timer = null;
    if (busy) { // one update at a time: this one goes after it
      schedule();
      return;
    }
    var ids = Object.keys(pending);
    pending = {};
    var work = [];
    if (redraw) {
      redraw = false;
      work.push(redrawMain());
    } else if (ids.length) {
      for (var i = 0; i < ids.length; i += 200) {
        work.push(refreshCells(ids.slice(i, i + 200)));
      }
    }
    busy = true;
    var started = Date.now();
    Promise.all(work).then(function () {
      if (feed.readyState === EventSource.OPEN) {
        say("on");
      }
    }, function () { say("update failed; retrying"); }).then(function () {
      busy = false;
      cost = Date.now() - started;
    });
  }

  function schedule() {
    if (timer === null) {
      // a page slow to draw (the sites page of a large store reads every file) is
      // asked for less often, so an open page keeps the server busy a fifth of the time
      timer = window.setTimeout(flush, Math.max(250, 4 * cost));
    }
  }

  // pages of counts are redrawn whole; pages of cells get the changed cells only; a
  // file's page is redrawn when that file changes (its lock, its keys, its states)
  var redrawn = document.getElementById("completion") || document.querySelector("table.folders");
  var page = redrawn ? "redraw" : "cells";
  var heading = document.querySelector("[data-file-page]");
  var filePage = heading ? heading.getAttribute("data-file-page") : null;

  var feed = new EventSource(base + "/api/events/?since=" + encodeURIComponent(since));
  feed.addEventListener("open", function () { say("on"); });
  feed.addEventListener("error", function () {
    say(feed.readyState === EventSource.CLOSED ? "off" : "reconnecting");
  });
  feed.addEventListener("change", function (event) {
    var change;
    try {
      change = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    body.dataset.seq = String(change.seq);
    if (page === "redraw" || change._id === filePage) {
      redraw = true;
    } else if (typeof change._id === "string" && cellsOf(change._id).length) {
      pending[change._id] = true;
    } else if (volumes[change._id] === true) {
      askAgain('td.cell[data-file][data-state="queued"]');
    }
    schedule();
  });
  window.setInterval(function () {
    if (askAgain('td.cell[data-file][data-detail="transferring"]')) {
      schedule();
    }
  }, 60000);
})();

// Stepwell dev UI: progressive enhancement only. Every page works without this script;
// with it, live regions refresh in place, times show in local time, JSON fields validate.
(function () {
  "use strict";

  // --- times: the server writes UTC; show the viewer's local time ---
  var fmtDay = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  var fmtTime = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  function localize(root) {
    var today = new Date().toDateString();
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var ms = String(d.getMilliseconds()).padStart(3, "0");
      var t = fmtTime.format(d) + "." + ms;
      el.textContent = d.toDateString() === today ? t : fmtDay.format(d) + ", " + t;
      el.title = d.toString();
    });
  }

  // --- live regions: poll the page's own URL for its fragment and swap it in ---
  function withFragment(url) {
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + "fragment=1";
  }
  function indicator(ok) {
    document.querySelectorAll("[data-live-indicator]").forEach(function (el) {
      el.classList.toggle("stale", !ok);
      el.textContent = ok ? "live" : "reconnecting…";
    });
  }
  function busy(region) {
    // Never swap a region under the user's hands (an open select, a field being typed in).
    var active = document.activeElement;
    return active && active !== document.body && region.contains(active) &&
      /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }
  function swap(region, html) {
    var open = {};
    region.querySelectorAll("details[open][data-key]").forEach(function (d) { open[d.dataset.key] = true; });
    region.innerHTML = html;
    region.querySelectorAll("details[data-key]").forEach(function (d) {
      if (open[d.dataset.key]) d.open = true;
    });
    localize(region);
  }
  function live(region) {
    var url = region.getAttribute("data-live");
    var every = parseInt(region.getAttribute("data-interval") || "2000", 10);
    function tick() {
      if (document.hidden || busy(region)) { setTimeout(tick, every); return; }
      fetch(withFragment(url), { headers: { "Accept": "text/html" }, cache: "no-store" })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.text();
        })
        .then(function (html) {
          indicator(true);
          swap(region, html);
          if (!region.querySelector("[data-live-stop]")) setTimeout(tick, every);
        })
        .catch(function () { indicator(false); setTimeout(tick, every * 2); });
    }
    setTimeout(tick, every);
  }

  // --- JSON editors: validate as you type; the submit stays disabled while invalid ---
  function checkJson(area) {
    var status = area.parentElement.querySelector("[data-json-status]");
    if (status && status.dataset.help === undefined) status.dataset.help = status.textContent;
    var text = area.value.trim(), message = "";
    if (text) {
      try {
        var v = JSON.parse(text);
        if (v === null || typeof v !== "object" || Array.isArray(v)) message = "Must be a JSON object: { … }";
      } catch (e) { message = "Invalid JSON: " + e.message; }
    }
    area.classList.toggle("invalid", !!message);
    if (status) {
      status.textContent = message || status.dataset.help;
      status.classList.toggle("invalid", !!message);
    }
    var form = area.form;
    if (form) {
      var bad = form.querySelectorAll("textarea[data-json].invalid").length > 0;
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = bad; });
    }
    return !message;
  }

  document.addEventListener("input", function (e) {
    if (e.target.matches && e.target.matches("textarea[data-json]")) checkJson(e.target);
  });
  document.addEventListener("keydown", function (e) {
    // Tab indents inside a JSON editor instead of leaving it.
    var t = e.target;
    if (e.key === "Tab" && !e.shiftKey && t.matches && t.matches("textarea[data-json]")) {
      e.preventDefault();
      t.setRangeText("  ", t.selectionStart, t.selectionEnd, "end");
      checkJson(t);
    }
  });
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (!t.closest) return;
    var fmt = t.closest("[data-json-format]");
    if (fmt) {
      fmt.form.querySelectorAll("textarea[data-json]").forEach(function (area) {
        try { area.value = JSON.stringify(JSON.parse(area.value || "{}"), null, 2); } catch (err) { /* shown by checkJson */ }
        checkJson(area);
      });
    }
    var copy = t.closest("[data-copy]");
    if (copy) {
      var pre = copy.parentElement.querySelector("pre");
      if (pre && navigator.clipboard) {
        navigator.clipboard.writeText(pre.textContent).then(function () {
          copy.textContent = "Copied";
          setTimeout(function () { copy.textContent = "Copy"; }, 1200);
        });
      }
    }
  });
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { e.preventDefault(); return; }
    var invalid = Array.prototype.some.call(form.querySelectorAll("textarea[data-json]"), function (a) { return !checkJson(a); });
    if (invalid) { e.preventDefault(); return; }
    if (form.method.toLowerCase() === "post") {
      // One click, one action: no double cancel or double send.
      setTimeout(function () { form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; }); }, 0);
    }
  });
  document.addEventListener("change", function (e) {
    var t = e.target;
    var form = t.form;
    if (!form) return;
    if (t.name === "range") {
      var custom = form.querySelector("[data-custom-range]");
      if (custom) custom.hidden = t.value !== "custom";
      if (t.value === "custom") return; // wait for the dates
    }
    if (form.hasAttribute("data-autosubmit") || t.hasAttribute("data-autosubmit-change")) {
      form.querySelectorAll("input[name=after]").forEach(function (i) { i.remove(); });
      form.submit();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    document.querySelectorAll("textarea[data-json]").forEach(checkJson);
    document.querySelectorAll("[data-live]").forEach(function (region) {
      if (!region.hasAttribute("data-live-off") && !region.querySelector("[data-live-stop]")) live(region);
    });
  });
})();

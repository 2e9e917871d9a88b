// trademl dashboard: draws each chart from the JSON beside it, and keeps the Live page's
// prediction stream open (reconnecting with a growing delay when it drops).
(function () {
  "use strict";

  function drawCharts() {
    if (typeof window.Plotly === "undefined") return;
    document.querySelectorAll("[data-chart]").forEach(function (box) {
      var source = document.getElementById(box.getAttribute("data-chart"));
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(box, figure.data, figure.layout, {
        displaylogo: false,
        responsive: true,
      });
    });
  }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text; // never innerHTML: message fields are data
    row.appendChild(td);
  }

  function startLive(status) {
    var table = document.getElementById("live-table");
    var body = table.querySelector("tbody");
    var horizons = table.getAttribute("data-horizons").split(",");
    var locale = table.getAttribute("data-locale");
    var number = new Intl.NumberFormat(locale, {minimumFractionDigits: 2, maximumFractionDigits: 2});
    var share = new Intl.NumberFormat(locale, {style: "percent", maximumFractionDigits: 1});
    var when = new Intl.DateTimeFormat(locale, {dateStyle: "medium", timeStyle: "short", timeZone: "UTC"});
    var fmt = function (value, format) { return value === null || value === undefined ? "-" : format.format(value); };
    var delay = 1;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + window.location.host + status.getAttribute("data-stream");

    function show(message) {
      var bar = new Date(message.bar_timestamp).toISOString();
      var row = body.querySelector('tr[data-bar="' + CSS.escape(bar) + '"]');
      if (!row) {
        row = document.createElement("tr");
        row.setAttribute("data-bar", bar);
        body.insertBefore(row, body.firstChild);
      }
      row.textContent = "";
      cell(row, when.format(new Date(bar)));
      cell(row, fmt(message.close, number));
      cell(row, message.model.name + " v" + message.model.version);
      horizons.forEach(function (name) {
        var h = message.horizons[name] || {};
        cell(row, fmt(h.low, number));
        cell(row, fmt(h.high, number));
        cell(row, fmt(h.p_up, share));
      });
      row.classList.add("fresh");
    }

    function connect() {
      status.textContent = status.getAttribute("data-connecting");
      status.className = "status";
      var socket = new WebSocket(url, ["trademl"]);
      socket.onopen = function () {
        delay = 1;
        status.textContent = status.getAttribute("data-live");
        status.className = "status ok";
      };
      socket.onmessage = function (event) {
        var message = JSON.parse(event.data);
        if (message.type === "prediction") show(message);
        if (message.type === "error") {
          status.textContent = status.getAttribute("data-error") + " " + message.error.message;
          status.className = "status problem";
        }
      };
      socket.onclose = function () {
        status.textContent = status.getAttribute("data-reconnecting").replace("%(seconds)s", String(delay));
        status.className = "status problem";
        window.setTimeout(connect, delay * 1000);
        delay = Math.min(delay * 2, 30);
      };
    }
    connect();
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts();
    var status = document.getElementById("live-status");
    if (status) startLive(status);
  });
})();

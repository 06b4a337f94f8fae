// The admin mail dashboard: draws the figures the page carries as JSON (no inline script: the CSP forbids it).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var source = document.getElementById("mail-dashboard-data");
  if (!source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var scales = { y: { beginAtZero: true, ticks: { precision: 0 } } };
  new Chart(document.getElementById("traffic-chart"), {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: "received", data: data.received, backgroundColor: "#417690" },
        { label: "sent", data: data.sent, backgroundColor: "#f5dd5d" },
      ],
    },
    options: { scales: scales, animation: false },
  });
  new Chart(document.getElementById("queue-chart"), {
    type: "line",
    data: { labels: data.labels, datasets: [{ label: "waiting", data: data.queue, borderColor: "#ba2121", fill: false }] },
    options: { scales: scales, animation: false },
  });
});

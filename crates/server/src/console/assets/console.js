// Redeploy console: the only script. Pages work without it; it just reloads pages whose <main>
// asks for it (an action still in flight) so the timeline moves on by itself.
(function () {
  var main = document.querySelector("main[data-refresh]");
  if (!main) return;
  var seconds = parseInt(main.getAttribute("data-refresh"), 10);
  if (!(seconds > 0)) return;
  setTimeout(function () {
    // Do not reload under someone who is typing in a form.
    var active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA")) return;
    window.location.reload();
  }, seconds * 1000);
})();

// Progressive enhancement only: every page works without this file.
// While an execution runs, refresh its change page every two seconds.
(function () {
  var live = document.querySelector('[data-live-execution]');
  if (live) {
    setTimeout(function () { window.location.reload(); }, 2000);
  }
})();

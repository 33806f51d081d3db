// Progressive enhancement only: every page works without this file.
// While an execution runs, refresh its change page every two seconds.
(function () {
  var live = document.querySelector('[data-live-execution]');
  if (live) {
    setTimeout(function () { window.location.reload(); }, 2000);
  }
})();

// New change: count the pasted IDs and flag lines that cannot be IDs of the operation's
// kind while typing. The server's resolution stays the authority (it also knows kinds).
(function () {
  var op = document.getElementById('operation');
  var ids = document.getElementById('ids');
  var hint = document.getElementById('ids-hint');
  if (!op || !ids || !hint) return;
  function check() {
    var opt = op.options[op.selectedIndex];
    var src = opt && opt.getAttribute('data-pattern');
    var re = null;
    try { re = src ? new RegExp(src) : null; } catch (e) { re = null; }
    var lines = ids.value.split('\n');
    var n = 0, bad = [];
    for (var i = 0; i < lines.length; i++) {
      var l = lines[i].trim();
      if (!l) continue;
      n++;
      if (l.indexOf(':') > 0) continue; // kind:id lines are checked by the server
      if (re && !re.test(l) && bad.length < 3) bad.push(i + 1);
    }
    var text = n ? n + (n === 1 ? ' ID' : ' IDs') : '';
    if (bad.length && opt) {
      text += ' — line' + (bad.length > 1 ? 's ' : ' ') + bad.join(', ') +
        (bad.length > 1 ? ' do' : ' does') + ' not look like ' + opt.getAttribute('data-kind') + ' IDs';
    }
    hint.textContent = text;
  }
  ids.addEventListener('input', check);
  op.addEventListener('change', check);
  check();
})();

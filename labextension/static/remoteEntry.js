/* sslteach-rise-widgets: a federated JupyterLab "extension" with no plugin of its own.
 *
 * jupyterlab-rise 0.43's slideshow app (/rise/...) builds its own, smaller JupyterLab: it shares no
 * @jupyterlab/console. The ipywidgets manager (@jupyter-widgets/jupyterlab-manager, ipywidgets 8) asks its host for
 * that package, only for an *optional* token (IConsoleTracker), and fails to load when the host has none — so every
 * widget on the slides shows as its text repr (jupyterlab-contrib/rise#119, #126). When the page's share scope has
 * no @jupyterlab/console, this container puts a stand-in there that exports an IConsoleTracker token nobody
 * provides (the manager then runs without consoles, as it does where there are none). In JupyterLab itself the real
 * package is in the share scope before any extension starts, and this file does nothing.
 */
(function () {
  var NAME = "sslteach-rise-widgets";
  var registry = (window._JUPYTERLAB = window._JUPYTERLAB || {});
  function newest(versions) {
    var keys = Object.keys(versions || {});
    keys.sort(function (a, b) {
      var x = a.split(/[.-]/).map(Number), y = b.split(/[.-]/).map(Number);
      for (var i = 0; i < 3; i++) { if ((x[i] || 0) !== (y[i] || 0)) return (x[i] || 0) - (y[i] || 0); }
      return 0;
    });
    return keys.length ? versions[keys[keys.length - 1]] : null;
  }
  registry[NAME] = {
    init: function (scope) {
      if (!scope || scope["@jupyterlab/console"]) return;  // JupyterLab: the real package is there
      var coreutils = newest(scope["@lumino/coreutils"]);
      if (!coreutils) return;
      scope["@jupyterlab/console"] = {
        "4.0.0": {
          from: NAME,
          eager: false,
          get: function () {
            return Promise.resolve(coreutils.get()).then(function (factory) {
              var Token = factory().Token;
              var tracker = new Token("@jupyterlab/console:IConsoleTracker",
                                      "stand-in of sslteach-rise-widgets: the RISE slideshow has no consoles");
              return function () { return { IConsoleTracker: tracker }; };
            });
          }
        }
      };
    },
    get: function (module) {
      return Promise.reject(new Error(NAME + " has no module " + module));
    }
  };
})();

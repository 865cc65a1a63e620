// Mounts GraphiQL with the config the server put into #graphiql-config (see server/graphiql.py).
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var config = JSON.parse(document.getElementById("graphiql-config").textContent);

  if (!window.React || !window.ReactDOM || !window.GraphiQL) {
    root.id = "graphiql-error";
    root.textContent =
      "GraphiQL assets failed to load from this server. Run the setup command: " + config.setupCommand;
    return;
  }

  function absolute(path, websocket) {
    var url = new URL(path, window.location.href);
    if (websocket) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  var base = window.GraphiQL.createFetcher({
    url: absolute(config.endpoint, false),
    subscriptionUrl: config.subscriptionEndpoint ? absolute(config.subscriptionEndpoint, true) : undefined,
  });

  // The headers editor starts with an example Authorization header; sending that placeholder would
  // turn anonymous queries (and schema introspection) into failed logins, so it is dropped here.
  function fetcher(params, opts) {
    var headers = Object.assign({}, opts && opts.headers);
    Object.keys(headers).forEach(function (name) {
      if (name.toLowerCase() === "authorization" && headers[name] === config.authPlaceholder) {
        delete headers[name];
      }
    });
    return base(params, Object.assign({}, opts, { headers: headers }));
  }

  window.ReactDOM.createRoot(root).render(
    window.React.createElement(window.GraphiQL, {
      fetcher: fetcher,
      defaultTabs: config.tabs,
      defaultHeaders: config.defaultHeaders,
      isHeadersEditorEnabled: true,
      // Tokens typed into the editor stay in memory, not in localStorage.
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: "headers",
    })
  );
})();
